"""Captum-style behaviour of every method: target formats, batch = loop, shapes, NoiseTunnel, model unchanged."""

import pytest
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerGradCam, NoiseTunnel

from captum_clip import CLIPGradCAM, CLIPIntegratedGradients, RawCLIPSimilarity, SurgeryCAM

from .conftest import assert_unchanged, images_for, snapshot

METHODS = {
    "surgery": lambda c: SurgeryCAM(c),
    "surgery_empty": lambda c: SurgeryCAM(c, redundancy="empty"),
    "raw": RawCLIPSimilarity,
    "gradcam": CLIPGradCAM,
    "ig": lambda c: CLIPIntegratedGradients(c),
}
TOWERS = ["vit", "resnet"]


def run(method, images, target, **kwargs):
    if isinstance(method, CLIPIntegratedGradients):
        kwargs.setdefault("n_steps", 4)
    return method.attribute(images, target=target, **kwargs)


@pytest.mark.parametrize("tower", TOWERS)
@pytest.mark.parametrize("name", METHODS)
def test_target_formats_agree_and_batch_equals_loop(tiny_classifiers, tiny_bundles, name, tower):
    classifier = tiny_classifiers[tower]
    method = METHODS[name](classifier)
    images = images_for(tiny_bundles[tower], n=3)
    per_image = [1, 3, 0]
    batched = run(method, images, per_image)
    assert batched.shape == (3, 1, *images.shape[-2:]) and batched.dtype == torch.float32
    assert torch.isfinite(batched).all()
    for form in (torch.tensor(per_image), [classifier.classnames[i] for i in per_image], tuple(per_image)[:0] or per_image):
        assert torch.allclose(run(method, images, form), batched, atol=1e-4)
    loop = torch.cat([run(method, images[i:i + 1], per_image[i]) for i in range(3)])
    assert torch.allclose(loop, batched, atol=1e-4)
    # A single int or name applies to every image.
    same = run(method, images, 2)
    assert torch.allclose(same, run(method, images, [2, 2, 2]), atol=1e-4)
    assert torch.allclose(same, run(method, images, classifier.classnames[2]), atol=1e-4)
    assert torch.allclose(same, run(method, images, torch.tensor(2)), atol=1e-4)
    # None = the predicted class.
    predicted = classifier(images).argmax(-1)
    assert torch.allclose(run(method, images, None), run(method, images, predicted), atol=1e-4)


@pytest.mark.parametrize("name", ["surgery", "raw", "gradcam", "ig"])
def test_tuple_inputs_return_tuples(tiny_classifiers, tiny_bundles, name):
    method = METHODS[name](tiny_classifiers["vit"])
    images = images_for(tiny_bundles["vit"], n=2)
    out = run(method, (images,), 0)
    assert isinstance(out, tuple) and len(out) == 1
    assert torch.allclose(out[0], run(method, images, 0))


@pytest.mark.parametrize("tower", TOWERS)
@pytest.mark.parametrize("size", [(96, 96), (80, 112), (70, 90)])
@pytest.mark.parametrize("name", ["surgery", "raw", "gradcam", "ig"])
def test_any_input_size(tiny_classifiers, tiny_bundles, tower, size, name):
    method = METHODS[name](tiny_classifiers[tower])
    images = images_for(tiny_bundles[tower], n=2, size=size)
    # ReLU may zero a Grad-CAM map of a random model; the signed map must still be informative.
    maps = run(method, images, 0, **({"relu_attributions": False} if name == "gradcam" else {}))
    assert maps.shape == (2, 1, *size)
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0


@pytest.mark.parametrize("tower", TOWERS)
def test_grid_output_and_all_classes(tiny_classifiers, tiny_bundles, tower):
    classifier = tiny_classifiers[tower]
    images = images_for(tiny_bundles[tower], n=2, size=96)
    grid = classifier.tower.grid_shape((96, 96))
    cam = SurgeryCAM(classifier)
    assert cam.attribute(images, target=0, interpolate=False).shape == (2, 1, *grid)
    assert CLIPGradCAM(classifier).attribute(images, target=0, interpolate=False).shape == (2, 1, *grid)
    all_maps = cam.attribute_all(images)
    assert all_maps.shape == (2, classifier.num_classes, 96, 96)
    for k in range(classifier.num_classes):
        assert torch.allclose(all_maps[:, k:k + 1], cam.attribute(images, target=k), atol=1e-6)
    grids = cam.attribute_all(images, interpolate=False)
    assert grids.amin(dim=(-2, -1)).eq(0).all() and grids.amax(dim=(-2, -1)).eq(1).all()


def test_free_text_and_combined_queries(tiny_classifiers, tiny_bundles):
    classifier = tiny_classifiers["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    cam = SurgeryCAM(classifier, redundancy="empty")
    star, ring = cam.attribute(images, target="a green triangle"), cam.attribute(images, target="a yellow cross")
    combined = cam.attribute(images, target="a green triangle+a yellow cross")
    assert not torch.allclose(star, ring)
    # The combination averages the min-maxed part maps, then rescales to [0, 1].
    mean = (cam.attribute(images, target="a green triangle", interpolate=False)
            + cam.attribute(images, target="a yellow cross", interpolate=False)) / 2
    low, high = mean.amin(dim=(-2, -1), keepdim=True), mean.amax(dim=(-2, -1), keepdim=True)
    expected = (mean - low) / (high - low)
    assert torch.allclose(cam.attribute(images, target="a green triangle+a yellow cross", interpolate=False),
                          expected, atol=1e-6)
    assert combined.shape == (2, 1, *images.shape[-2:])
    # Per-image texts mixed with class names in one batch equal the per-image calls.
    mixed = cam.attribute(images, target=["a green triangle", "cat"])
    assert torch.allclose(mixed[1:], cam.attribute(images[1:], target="cat"), atol=1e-6)
    assert torch.allclose(mixed[:1], cam.attribute(images[:1], target="a green triangle"), atol=1e-6)
    # Label-set mode accepts combined queries and class names, not lone free text.
    labelset = SurgeryCAM(classifier)
    assert labelset.attribute(images, target="cat+dog").shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="not one of the classifier's classes"):
        labelset.attribute(images, target="a green triangle")
    # Gradient methods score free text through a classifier over those texts.
    assert CLIPGradCAM(classifier).attribute(images, target="a green triangle").shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name", ["surgery", "raw", "gradcam"])
def test_noise_tunnel_wraps(tiny_classifiers, tiny_bundles, name):
    method = METHODS[name](tiny_classifiers["vit"])
    images = images_for(tiny_bundles["vit"], n=2)
    smooth = NoiseTunnel(method).attribute(images, nt_type="smoothgrad", nt_samples=3, stdevs=0.1, target=[0, 1])
    assert smooth.shape == (2, 1, 64, 64) and torch.isfinite(smooth).all()
    assert not torch.allclose(smooth, run(method, images, [0, 1]))


def test_noise_tunnel_wraps_integrated_gradients(tiny_classifiers, tiny_bundles):
    method = CLIPIntegratedGradients(tiny_classifiers["vit"])
    images = images_for(tiny_bundles["vit"], n=1)
    smooth = NoiseTunnel(method).attribute(images, nt_type="smoothgrad", nt_samples=2, stdevs=0.1, target=0, n_steps=3)
    assert smooth.shape == (1, 1, 64, 64)


def test_vit_gradcam_is_not_degenerate(tiny_classifiers, tiny_bundles):
    classifier = tiny_classifiers["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    maps = CLIPGradCAM(classifier).attribute(images, target=[0, 1], relu_attributions=False)
    assert maps.abs().amax(dim=(-2, -1)).gt(0).all()
    # The failures being avoided: on the last block's output the patch tokens get no gradient
    # (only CLS is pooled), and LayerGradCam on (N, L, D) tokens returns a meaningless (N, 1, D).
    last_block = classifier.tower.blocks[-1]
    gradients, _ = compute_layer_gradients_and_eval(classifier, last_block, images, 0)
    assert gradients[0][:, 1:].abs().max() == 0 and gradients[0][:, 0].abs().max() > 0
    assert LayerGradCam(classifier, last_block).attribute(images, target=0).shape == (2, 1, 64)


def test_integrated_gradients_completeness(tiny_classifiers, tiny_bundles):
    classifier = tiny_classifiers["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    maps = CLIPIntegratedGradients(classifier, channel_reduction="sum").attribute(images, target=[0, 2], n_steps=64)
    logits = classifier(images)[torch.arange(2), torch.tensor([0, 2])]
    baseline = classifier(torch.zeros_like(images))[torch.arange(2), torch.tensor([0, 2])]
    assert torch.allclose(maps.sum(dim=(1, 2, 3)), (logits - baseline).detach(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("tower", TOWERS)
@pytest.mark.parametrize("name", METHODS)
def test_model_left_unchanged(tiny_classifiers, tiny_bundles, tower, name):
    model = tiny_bundles[tower].model
    before = snapshot(model)
    method = METHODS[name](tiny_classifiers[tower])
    run(method, images_for(tiny_bundles[tower], n=2, size=96), [0, 1])
    assert_unchanged(model, before)


@pytest.mark.parametrize("tower", TOWERS)
@pytest.mark.parametrize("name", METHODS)
def test_model_left_unchanged_when_attribute_raises(tiny_classifiers, tiny_bundles, tower, name, monkeypatch):
    model = tiny_bundles[tower].model
    before = snapshot(model)
    method = METHODS[name](tiny_classifiers[tower])
    images = images_for(tiny_bundles[tower], n=2, size=96)
    with pytest.raises(ValueError):
        run(method, images, 99)
    assert_unchanged(model, before)

    # Fail inside the model's forward, after Captum has registered its hooks.
    def explode(*args, **kwargs):
        raise RuntimeError("boom")
    layer = tiny_classifiers[tower].tower.gradcam_layer
    handle = layer.register_forward_pre_hook(explode)
    before = snapshot(model)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            run(method, images, [0, 1])
        assert_unchanged(model, before)
    finally:
        handle.remove()
