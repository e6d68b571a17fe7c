"""The contract every registered method keeps: root imports, registry = constructor, Captum metrics, clear errors.

Captum's metrics and the non-finite checks run on every method of the registry on the shipped scene model (where
ConVis and Mutual Knowledge get their scene presets); the argument checks run on the tiny models.
"""

from __future__ import annotations

import copy

import pytest
import torch
from captum.metrics import infidelity, sensitivity_max

import captum_clip
from captum_clip import (
    METHODS,
    CLIPGradCAM,
    CLIPIntegratedGradients,
    NonFiniteError,
    RawCLIPSimilarity,
    SurgeryCAM,
    ZeroShotClassifier,
    build_method,
    load_clip,
)
from captum_clip.shipped.scenes import make_scenes, single_object_classnames, to_tensor
from captum_clip.evaluation import expand_to_inputs

from .conftest import TEMPLATES, assert_unchanged, images_for, snapshot

#: Keyword arguments that keep the slow methods to seconds on the scene model.
FAST = {"ig": {"n_steps": 4}}


def _needs_wordnet(name: str) -> None:
    if name == "convis":
        from captum_clip.wordnet import WordNetNotFoundError, load_wordnet

        try:
            load_wordnet()
        except WordNetNotFoundError as error:
            pytest.skip(f"ConVis needs WordNet: {error}")


@pytest.fixture(scope="module")
def shipped():
    bundle = load_clip("shapes")
    classifier = ZeroShotClassifier(bundle, single_object_classnames())
    scenes = make_scenes(2, seed=11)
    images = to_tensor([s.image for s in scenes], *bundle.image_mean_std)
    targets = torch.tensor([classifier.class_index(s.objects[0]) for s in scenes])
    return classifier, images, targets


def test_the_public_face_is_flat_and_small():
    expected = {"load_clip", "ClipBundle", "ZeroShotClassifier", "SurgeryCAM", "ConVisAttribution",
                "MutualConceptAttribution", "RawCLIPSimilarity", "CLIPGradCAM", "CLIPIntegratedGradients",
                "METHODS", "build_method", "WeightsUnavailableError", "CheckpointError", "WordNetNotFoundError", "NonFiniteError"}
    assert set(captum_clip.__all__) == expected
    from captum_clip import ConVisAttribution
    from captum_clip.convis.attribution import ConVisAttribution as defined

    assert ConVisAttribution is defined

    for name in expected:
        assert getattr(captum_clip, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        captum_clip.nothing_here


@pytest.mark.parametrize("n_classes", [1, 4])
@pytest.mark.parametrize("name", ["surgery", "clip", "gradcam", "ig"])
def test_constructor_and_registry_explain_alike(tiny_bundles, name, n_classes):
    classifier = ZeroShotClassifier(tiny_bundles["vit"], ["cat", "dog", "red star", "blue ring"][:n_classes],
                                    TEMPLATES)
    images = images_for(tiny_bundles["vit"], 2)
    direct = {"surgery": SurgeryCAM, "clip": RawCLIPSimilarity, "gradcam": CLIPGradCAM,
              "ig": CLIPIntegratedGradients}[name](classifier)
    kwargs = FAST.get(name, {})
    torch.testing.assert_close(direct.attribute(images, target=0, **kwargs),
                               build_method(name, classifier).attribute(images, target=0, **kwargs))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_captum_infidelity_and_sensitivity_run_on_every_method(shipped, name):
    _needs_wordnet(name)
    classifier, images, targets = shipped
    method = build_method(name, classifier)
    maps = method.attribute(images, target=targets, **FAST.get(name, {}))
    assert maps.shape == (2, 1, *images.shape[-2:])

    def perturb(inputs):
        noise = 0.05 * torch.randn(inputs.shape, generator=torch.Generator().manual_seed(0))
        return noise, inputs - noise

    with torch.no_grad():
        scores = infidelity(classifier, perturb, images, expand_to_inputs(maps, images), target=targets,
                            n_perturb_samples=2)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    if name in ("surgery", "clip", "gradcam"):  # sensitivity re-explains every perturbed input: cheap ones only
        sensitivity = sensitivity_max(method.attribute, images, target=targets, n_perturb_samples=2)
        assert sensitivity.shape == (2,) and torch.isfinite(sensitivity).all()


def test_expand_to_inputs_refuses_maps_that_do_not_fit():
    images = torch.zeros(2, 3, 8, 8)
    assert expand_to_inputs((torch.ones(2, 1, 8, 8),), (images,))[0].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"expected \(2, 1, 8, 8\)"):
        expand_to_inputs(torch.ones(2, 1, 4, 4), images)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_nan_weight_names_the_stage_and_leaves_the_model_as_it_was(shipped, name):
    _needs_wordnet(name)
    classifier, images, targets = shipped
    broken = copy.deepcopy(classifier.bundle)
    with torch.no_grad():
        broken.model.visual.conv1.weight[0, 0, 0, 0] = float("nan")
    # The classifier's text side is healthy, so only the vision stages can go non-finite.
    broken_classifier = ZeroShotClassifier(broken, classifier.classnames)
    before = snapshot(broken.model)
    with pytest.raises(NonFiniteError, match=r"became non-finite \(NaN") as error:
        build_method(name, broken_classifier).attribute(images, target=targets, **FAST.get(name, {}))
    assert any(stage in str(error.value) for stage in ("image tokens", "image embedding", "layer", "attributions",
                                                         "window embeddings", "last-block features"))
    assert_unchanged(broken.model, before)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_huge_inputs_raise_instead_of_returning_a_blank_map(shipped, name):
    _needs_wordnet(name)
    classifier, images, targets = shipped
    if name == "convis":
        pytest.skip("ConVis explains pixels: it un-normalises and clips its inputs to [0, 255] first, so a huge "
                    "input is a saturated image, not a non-finite computation")
    with pytest.raises(NonFiniteError, match="became non-finite"):
        build_method(name, classifier).attribute(images * 1e30, target=targets, **FAST.get(name, {}))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_additional_forward_args_are_refused_with_a_reason(shipped, name):
    _needs_wordnet(name)
    classifier, images, targets = shipped
    with pytest.raises(ValueError, match="does not take additional_forward_args: the ZeroShotClassifier's forward"):
        build_method(name, classifier).attribute(images, target=targets, additional_forward_args=(images,))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_inputs_smaller_than_one_cell_get_the_same_error(shipped, name):
    _needs_wordnet(name)
    classifier, images, targets = shipped
    with pytest.raises(ValueError, match="smaller than one token cell"):
        build_method(name, classifier).attribute(images[..., :4, :4], target=targets, **FAST.get(name, {}))


def test_classifier_refuses_what_it_cannot_use(tiny_bundles):
    bundle = tiny_bundles["vit"]
    with pytest.raises(TypeError, match="not bundle.model"):
        ZeroShotClassifier(bundle.model, ["cat"])
    with pytest.raises(ValueError, match=r"does not format with one class name \(IndexError"):
        ZeroShotClassifier(bundle, ["cat"], templates=["{} and {}"])
    with pytest.raises(ValueError, match=r"does not format with one class name \(KeyError"):
        ZeroShotClassifier(bundle, ["cat"], templates=["a {name} and {}"])
    with pytest.raises(ValueError, match="got None in"):
        ZeroShotClassifier(bundle, ["cat", None])
    for scale in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match="logit_scale must be a finite positive number"):
            ZeroShotClassifier(bundle, ["cat"], TEMPLATES, logit_scale=scale)


def test_free_text_queries_do_not_grow_the_cache_without_bound(tiny_classifiers, monkeypatch):
    import captum_clip.core.classifier as classifier_module

    monkeypatch.setattr(classifier_module, "FREE_TEXT_CACHE", 3)
    classifier = tiny_classifiers["vit"].with_classes(["cat", "dog"])
    first = classifier.encode_text(["query 0"])
    for i in range(10):
        classifier.encode_text([f"query {i}", "cat"])
    assert set(classifier._text_cache) == {"cat", "dog", "query 7", "query 8", "query 9"}
    torch.testing.assert_close(classifier.encode_text(["query 0"]), first)  # re-encoded alike once evicted
    # One call with more texts than the cache holds still answers all of them.
    assert classifier.encode_text([f"many {i}" for i in range(8)]).shape == (8, classifier.text_features.shape[1])


@pytest.mark.parametrize("method_class", [CLIPGradCAM, CLIPIntegratedGradients])
def test_gradient_methods_under_inference_mode(tiny_classifiers, tiny_bundles, method_class):
    method = method_class(tiny_classifiers["vit"])
    with torch.inference_mode():
        images = images_for(tiny_bundles["vit"], 1)
        with pytest.raises(RuntimeError, match=r"needs gradients, and torch.inference_mode\(\) disables them"):
            method.attribute(images, target=0)
    # Images made under inference_mode are fine once outside it, and so is torch.no_grad().
    kwargs = {"n_steps": 4} if method_class is CLIPIntegratedGradients else {}
    expected = method.attribute(images.clone(), target=0, **kwargs)
    with torch.no_grad():
        torch.testing.assert_close(method.attribute(images, target=0, **kwargs), expected)


def test_integrated_gradients_is_captums(tiny_classifiers, tiny_bundles):
    method = CLIPIntegratedGradients(tiny_classifiers["vit"], channel_reduction="sum")
    images = images_for(tiny_bundles["vit"], 2)
    assert method.has_convergence_delta() and method.multiplies_by_inputs
    maps, delta = method.attribute(images, target=[0, 1], n_steps=32, return_convergence_delta=True)
    assert maps.shape == (2, 1, 64, 64) and delta.shape == (2,)
    with torch.no_grad():
        logits = tiny_classifiers["vit"](torch.cat([images, torch.zeros_like(images)]))
    gap = logits[:2, 0:2].diagonal() - logits[2:, 0:2].diagonal()
    torch.testing.assert_close(maps.sum(dim=(1, 2, 3)) - gap, delta, atol=1e-4, rtol=1e-4)
    # The bounded default batch gives Captum's all-at-once result.
    torch.testing.assert_close(method.attribute(images, target=[0, 1], n_steps=8),
                               method.attribute(images, target=[0, 1], n_steps=8, internal_batch_size=None),
                               atol=1e-5, rtol=1e-4)


def test_integrated_gradients_refuses_bad_arguments(tiny_classifiers, tiny_bundles):
    method = CLIPIntegratedGradients(tiny_classifiers["vit"])
    images = images_for(tiny_bundles["vit"], 2)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_steps must be a positive integer"):
            method.attribute(images, target=0, n_steps=steps)
    with pytest.raises(ValueError, match="internal_batch_size must be a positive integer or None"):
        method.attribute(images, target=0, internal_batch_size=0)
    with pytest.raises(ValueError, match=r"baselines of shape \(3, 3, 64, 64\) do not fit inputs"):
        method.attribute(images, target=0, baselines=torch.zeros(3, 3, 64, 64))
    with pytest.raises(ValueError, match=r"baselines of shape \(1, 3, 32, 32\) do not fit"):
        method.attribute(images, target=0, baselines=torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="finite floating-point tensor"):
        method.attribute(images, target=0, baselines=torch.full((3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="baselines must be None, a number or a tensor"):
        method.attribute(images, target=0, baselines="zeros")
    one = method.attribute(images, target=0, baselines=torch.zeros(3, 64, 64), n_steps=4)
    torch.testing.assert_close(one, method.attribute(images, target=0, baselines=0.0, n_steps=4))
