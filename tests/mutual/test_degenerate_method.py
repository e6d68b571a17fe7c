"""Degenerate inputs of the whole method: no foreground, one concept, < 3 candidates, a bank smaller than k."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from captum_clip.mutual import MutualConceptAttribution

from ..conftest import images_for
from ..conftest import TINY_BANK


def test_image_without_foreground_has_no_concepts(mutual_methods, tiny_bundles):
    method = mutual_methods["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    concepts = method.visual_concepts(images)
    # Image 1 gets no prominent patch (e.g. all its patches fell on the background side of the joint fit).
    empty = dataclasses.replace(
        concepts,
        masks=concepts.masks.clone().index_fill_(0, torch.tensor([1]), False),
        part_ids=concepts.part_ids.clone().index_fill_(0, torch.tensor([1]), -1),
        n_concepts=concepts.n_concepts.clone().index_fill_(0, torch.tensor([1]), 0),
        foreground=concepts.foreground.clone().index_fill_(0, torch.tensor([1]), False),
    )
    full, blank = method.explain_concepts(images, empty)
    assert blank.n_concepts == 0 and blank.masks.shape == (0, 64, 64)
    assert blank.concept_descriptors == [] and blank.visual_descriptors == [] and blank.mutual == []
    assert blank.mi == 0 and blank.auc == 0 and blank.mi_curve.tolist() == [0.0]
    assert len(blank.text_descriptors) > 0  # the language side does not need concepts
    assert torch.equal(blank.attribution_map(), torch.zeros(64, 64))
    # The other image is explained as before.
    reference = method.explain_concepts(images, concepts)[0]
    assert full.concept_descriptors == reference.concept_descriptors and full.mi == reference.mi


def test_constant_images_do_not_crash(mutual_methods, tiny_bundles):
    for tower in ("vit", "resnet"):
        images = torch.zeros(1, 3, *images_for(tiny_bundles[tower], n=1).shape[-2:])
        maps = mutual_methods[tower].attribute(images)
        assert torch.isfinite(maps).all()


def test_single_concept(tiny_classifiers, tiny_bundles, mutual_cache):
    method = MutualConceptAttribution(tiny_classifiers["vit"], TINY_BANK, n_parts=1, cache_dir=mutual_cache)
    images = images_for(tiny_bundles["vit"], n=1)
    for e in method.explain(images):
        assert e.n_concepts == 1 and e.part_ids == [0]
        # One row makes the transport plan uniform: the picks are the concept's top-3 scores.
        assert len(e.concept_descriptors[0]) == 3 and len(e.visual_descriptors) == 3


def test_fewer_than_three_candidate_descriptors(tiny_classifiers, tiny_bundles, mutual_cache):
    method = MutualConceptAttribution(tiny_classifiers["vit"], ["furry", "round"], cache_dir=mutual_cache)
    for e in method.explain(images_for(tiny_bundles["vit"], n=1)):
        # Every concept takes all surviving candidates (at most 2) instead of failing at the top-3 step.
        assert all(1 <= len(d) <= 2 for d in e.concept_descriptors)
        assert 1 <= len(e.visual_descriptors) <= 2
        assert sorted(e.text_descriptors) == ["furry", "round"]


def test_bank_smaller_than_k_and_u(tiny_classifiers, tiny_bundles, mutual_cache):
    bank = [f"descriptor {i}" for i in range(10)]
    method = MutualConceptAttribution(tiny_classifiers["resnet"], bank, k=500, u=50, cache_dir=mutual_cache)
    for e in method.explain(images_for(tiny_bundles["resnet"], n=1)):
        assert len(e.text_descriptors) == 10  # u is clipped to D
        assert e.mutual == [d for d, _ in e.visual_descriptors]  # so every visual descriptor is mutual
        assert e.mi == pytest.approx(float(e.mi_curve[0])) and e.mi_curve[-1] == 0


def test_one_descriptor_bank(tiny_classifiers, tiny_bundles, mutual_cache):
    method = MutualConceptAttribution(tiny_classifiers["vit"], ["round"], cache_dir=mutual_cache)
    for e in method.explain(images_for(tiny_bundles["vit"], n=1)):
        assert all(d == ["round"] for d in e.concept_descriptors) and e.mutual == ["round"]
        assert e.mi == pytest.approx(0.0, abs=1e-8)  # log 1 + log 1 + log 1
