"""The contract every registered method keeps: root imports, registry = constructor, Captum metrics, clear errors.

Captum's metrics and the non-finite checks run on every method of the registry on the shipped scene model (where
ConVis and Mutual Knowledge get their scene presets); the argument checks run on the tiny models.
"""

from __future__ import annotations


import pytest
import torch

import captum_clip
from captum_clip import (
    CLIPGradCAM,
    CLIPIntegratedGradients,
    RawCLIPSimilarity,
    SurgeryCAM,
    ZeroShotClassifier,
    build_method,
    load_clip,
)
from captum_clip.shipped.scenes import make_scenes, single_object_classnames, to_tensor
from captum_clip.evaluation import expand_to_inputs

from ..conftest import TEMPLATES, images_for

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
                "METHODS", "build_method", "WeightsUnavailableError", "CheckpointError", "WordNetNotFoundError",
                "NonFiniteError", "DegenerateMapWarning"}
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


def test_expand_to_inputs_refuses_maps_that_do_not_fit():
    images = torch.zeros(2, 3, 8, 8)
    assert expand_to_inputs((torch.ones(2, 1, 8, 8),), (images,))[0].shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"expected \(2, 1, 8, 8\)"):
        expand_to_inputs(torch.ones(2, 1, 4, 4), images)


@pytest.mark.parametrize("package, most", [("captum_clip.attr", 4), ("captum_clip.convis", 12),
                                           ("captum_clip.mutual", 13), ("captum_clip.core", 3),
                                           ("captum_clip.evaluation", 5)])
def test_each_subpackage_names_its_method_results_and_stages_only(package, most):
    import importlib

    module = importlib.import_module(package)
    assert len(module.__all__) <= most and not any(name.startswith("_") for name in module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_mutual_and_convis_constructors_equal_the_registry_on_the_shipped_model(shipped):
    from captum_clip import ConVisAttribution, MutualConceptAttribution

    classifier, images, targets = shipped
    mutual_direct, mutual_registry = MutualConceptAttribution(classifier), build_method("mutual", classifier)
    assert mutual_direct.u == mutual_registry.u == 8 and mutual_direct.bank.source == "scenes"
    assert torch.equal(mutual_direct.attribute(images, target=targets), mutual_registry.attribute(images, target=targets))
    _needs_wordnet("convis")
    convis_direct, convis_registry = ConVisAttribution(classifier), build_method("convis", classifier)
    assert convis_direct.text_source == convis_registry.text_source == "lemmas"
    assert torch.equal(convis_direct.attribute(images, target=targets),
                       convis_registry.attribute(images, target=targets))


def test_no_method_module_tests_the_model_name():
    from pathlib import Path

    package = Path(captum_clip.__file__).parent
    for folder in ("attr", "convis", "mutual", "base"):
        for path in (package / folder).glob("*.py"):
            text = path.read_text()
            assert "bundle.name" not in text and '"shapes"' not in text, path
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


def test_integrated_gradients_bounds_its_batch_for_any_number_of_images(tiny_classifiers, tiny_bundles):
    """Captum's internal batching keeps all N inputs in every chunk; more images than internal_batch_size are
    grouped, so the bound holds (and Captum does not fall back with a warning)."""
    import warnings

    method = CLIPIntegratedGradients(tiny_classifiers["vit"])
    images = images_for(tiny_bundles["vit"], 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        grouped, delta = method.attribute(images, target=1, n_steps=4, internal_batch_size=2,
                                          return_convergence_delta=True)
    whole, whole_delta = method.attribute(images, target=1, n_steps=4, internal_batch_size=None,
                                          return_convergence_delta=True)
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(delta, whole_delta, atol=1e-4, rtol=1e-4)
