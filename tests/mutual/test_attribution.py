"""MutualConceptAttribution on tiny models: structure, Captum behaviour, batch = loop, model left unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from captum.attr import Attribution

from captum_clip.methods import DISPLAY_NAMES, build_method
from captum_clip.mutual import ConceptBasis, MutualConceptAttribution, aggregate_explanations
from captum_clip.mutual.information import aggregate_curves, mutual_information

from ..conftest import images_for
from ..conftest import TINY_BANK

TOWERS = ["vit", "resnet"]


def _same(a, b):
    """Two explanations of one image agree (up to float rounding in the scores)."""
    assert torch.equal(a.masks, b.masks)
    assert a.part_ids == b.part_ids
    assert a.concept_descriptors == b.concept_descriptors
    assert [d for d, _ in a.visual_descriptors] == [d for d, _ in b.visual_descriptors]
    assert np.allclose([s for _, s in a.visual_descriptors], [s for _, s in b.visual_descriptors], atol=1e-5)
    assert a.text_descriptors == b.text_descriptors and a.mutual == b.mutual
    assert a.mi == pytest.approx(b.mi) and a.auc == pytest.approx(b.auc)
    assert torch.allclose(a.mi_curve, b.mi_curve)
    assert torch.allclose(a.importance, b.importance, atol=1e-5)


@pytest.mark.parametrize("tower", TOWERS)
def test_explanation_structure(mutual_methods, explained, tower):
    method = mutual_methods[tower]
    images, results = explained[tower]
    predicted = method.classifier(images).argmax(-1).tolist()
    bank = set(method.bank.descriptors)
    assert len(results) == 3
    for e, cls in zip(results, predicted):
        assert e.target == cls and e.target_name == method.classifier.classnames[cls]
        assert 1 <= e.n_concepts <= method.n_parts
        assert e.masks.shape == (e.n_concepts, *images.shape[-2:]) and e.masks.dtype == torch.bool
        assert e.masks.sum(0).max() <= 1 and e.masks.flatten(1).any(1).all()  # disjoint, non-empty
        assert len(set(e.part_ids)) == e.n_concepts
        assert len(e.concept_descriptors) == e.n_concepts and all(1 <= len(d) <= 3 for d in e.concept_descriptors)
        dv = [d for d, _ in e.visual_descriptors]
        assert set(dv) == {d for ds in e.concept_descriptors for d in ds} and len(dv) == len(set(dv))
        scores = [s for _, s in e.visual_descriptors]
        assert scores == sorted(scores, reverse=True) and set(dv) <= bank
        # The bank (21 unique strings) is smaller than u = 50, so D_ŷ is the whole bank.
        assert sorted(e.text_descriptors) == sorted(bank)
        assert e.mutual == [d for d in dv if d in e.text_descriptors]
        x = torch.tensor([e.visual_ids]), torch.tensor([e.text_ids])
        assert e.mi == pytest.approx(float(mutual_information(*x)[0]))
        assert e.mi == pytest.approx(math.log(len(dv)) + math.log(len(bank)) + math.log(len(e.mutual)), abs=1e-6)
        assert e.mi_curve.shape == (len(dv) + 1,) and e.mi_curve[0] == e.mi and e.mi_curve[-1] == 0
        assert e.auc == pytest.approx(float(e.mi_curve.mean()))
        assert torch.equal(e.importance, e.importance.sort(descending=True).values)
        assert e.ellipses.shape == (e.n_concepts, 5) and np.isfinite(e.ellipses).all()


@pytest.mark.parametrize("tower", TOWERS)
def test_attribute_is_the_importance_weighted_concept_map(mutual_methods, explained, tower):
    method = mutual_methods[tower]
    images, results = explained[tower]
    out = method.attribute((images,))
    assert isinstance(method, Attribution) and isinstance(out, tuple) and len(out) == 1
    maps = out[0]
    assert maps.shape == (3, 1, *images.shape[-2:]) and maps.dtype == torch.float32
    for e, m in zip(results, maps[:, 0]):
        assert torch.allclose(m, e.attribution_map(), atol=1e-6)
        for mask, weight in zip(e.masks, e.importance):
            assert torch.allclose(m[mask], weight.expand(int(mask.sum())), atol=1e-6)
        assert (m[~e.masks.any(0)] == 0).all()


@pytest.mark.parametrize("tower", TOWERS)
def test_batch_equals_loop_against_the_same_fit(mutual_methods, explained, tower):
    method = mutual_methods[tower]
    images, batched = explained[tower]
    basis = method.fit_concepts(images)
    assert isinstance(basis, ConceptBasis) and basis.n_images == 3
    for i in (0, 2):
        _same(method.explain(images[i:i + 1], target=batched[i].target, reference_images=basis)[0], batched[i])
    # Reference images fit the concepts there and apply them here.
    loop = method.attribute(images[1:2], reference_images=images)
    assert torch.allclose(loop[0, 0], batched[1].attribution_map(), atol=1e-5)


def _first(concepts):
    return type(concepts)(*(getattr(concepts, f)[:1] for f in concepts.__dataclass_fields__))


def test_targets(mutual_methods, tiny_bundles):
    method = mutual_methods["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    names = method.classifier.classnames
    concepts = method.visual_concepts(images)
    by_index = method.explain_concepts(images, concepts, target=[2, 3])
    by_name = method.explain_concepts(images, concepts, target=[names[2], names[3]])
    assert [e.text_descriptors for e in by_name] == [e.text_descriptors for e in by_index]
    assert [e.target for e in by_name] == [2, 3] and by_index[0].target_name == names[2]
    # The target changes the language side only.
    predicted = method.explain_concepts(images, concepts)
    assert [e.target for e in predicted] == method.classifier(images).argmax(-1).tolist()
    for a, b in zip(predicted, by_index):
        assert torch.equal(a.masks, b.masks) and a.concept_descriptors == b.concept_descriptors
    free = method.explain_concepts(images[:1], _first(concepts), target="a round blue thing")
    assert free[0].target is None and free[0].target_name == "a round blue thing"
    for bad in (7, [0, 1, 2], torch.tensor([0.5])):
        with pytest.raises(ValueError):
            method.explain(images, target=bad)


@pytest.mark.parametrize("options", [
    {"facet": "keys"},
    {"foreground_method": "pca", "part_method": "kmeans"},
])
@pytest.mark.parametrize("tower", TOWERS)
def test_variants_run(tiny_classifiers, tiny_bundles, mutual_cache, tower, options):
    method = MutualConceptAttribution(tiny_classifiers[tower], TINY_BANK, cache_dir=mutual_cache, **options)
    results = method.explain(images_for(tiny_bundles[tower], n=2))
    assert all(e.n_concepts <= 5 and e.mi >= 0 for e in results) and results[0].n_concepts >= 1


def test_any_input_size(mutual_methods, tiny_bundles):
    method = mutual_methods["vit"]
    images = images_for(tiny_bundles["vit"], n=2, size=(70, 50))
    maps = method.attribute(images)
    assert maps.shape == (2, 1, 70, 50) and maps.abs().sum() > 0
    # A 16-px grid covers 64 x 48 pixels; the rest belongs to no concept.
    assert (maps[..., 64:, :] == 0).all() and (maps[..., 48:] == 0).all()


@pytest.mark.parametrize("options,match", [
    ({"facet": "values"}, "facet"),
    ({"foreground_method": "crf"}, "foreground_method"),
    ({"part_method": "gmm"}, "part_method"),
    ({"n_parts": 0}, "n_parts"),
    ({"k": 0}, "k must"),
    ({"u": 2.5}, "u must"),
    ({"top": -1}, "top"),
    ({"blur_ksize": 10}, "blur_ksize"),
    ({"tau": 0}, "tau"),
    ({"descriptors": []}, "empty"),
    ({"descriptors": {"cat": "furry"}}, "list of strings"),
    ({"descriptors": ["furry", ""]}, "non-empty strings"),
])
def test_bad_options_raise(tiny_classifiers, mutual_cache, options, match):
    options = {"descriptors": TINY_BANK, **options}
    with pytest.raises(ValueError, match=match):
        MutualConceptAttribution(tiny_classifiers["vit"], cache_dir=mutual_cache, **options)


def test_bad_inputs_raise(mutual_methods, tiny_bundles):
    method = mutual_methods["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        method.explain(images[0])
    with pytest.raises(ValueError, match="reference_images"):
        method.explain(images, reference_images=[images])
    keys = MutualConceptAttribution(method.classifier, TINY_BANK, facet="keys", use_cache=False)
    with pytest.raises(ValueError, match="fitted on 'tokens'"):
        keys.explain(images, reference_images=method.fit_concepts(images))
    with pytest.raises(TypeError, match="ZeroShotClassifier"):
        MutualConceptAttribution(method.classifier.model, TINY_BANK)


def test_registry_builds_the_method(tiny_classifiers, mutual_cache):
    method = build_method("mutual", tiny_classifiers["vit"], descriptors=TINY_BANK, cache_dir=mutual_cache, u=5)
    assert isinstance(method, MutualConceptAttribution) and method.u == 5
    assert DISPLAY_NAMES["mutual"] == "Mutual Knowledge"


def test_dataset_aggregation(explained):
    results = explained["vit"][1]
    stats = aggregate_explanations(results)
    longest = max(e.mi_curve.numel() for e in results)
    curves = torch.full((3, longest), float("nan"), dtype=torch.float64)
    for i, e in enumerate(results):
        curves[i, : e.mi_curve.numel()] = e.mi_curve
    curve, auc = aggregate_curves(curves)
    assert torch.equal(stats.curve, curve) and stats.auc == auc and stats.n_images == 3
    assert stats.mi == pytest.approx(np.mean([e.mi for e in results]))
    with pytest.raises(ValueError):
        aggregate_explanations([])
