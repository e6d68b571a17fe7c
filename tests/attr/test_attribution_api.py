"""Captum-style behaviour of every method: target formats, batch = loop, shapes, NoiseTunnel, model unchanged."""

import pytest
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerGradCam

from captum_clip import CLIPGradCAM, CLIPIntegratedGradients, RawCLIPSimilarity, SurgeryCAM

from ..conftest import images_for

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


