"""With the shipped scene model, a red star and a blue ring give concepts on the objects, named from the bank."""

from __future__ import annotations

import pytest
import torch

from captum_clip.core.loading import BUILTIN_MODELS
from captum_clip.shipped.mutual_example import (RED_STAR_BLUE_RING_SEED, concept_mass_on_objects, explain_scene,
                                              object_cell_share)

pytestmark = pytest.mark.skipif(not BUILTIN_MODELS["shapes"][1].is_file(), reason="shipped scene model not built")


@pytest.fixture(scope="module")
def result():
    return explain_scene(RED_STAR_BLUE_RING_SEED)


def test_scene_is_a_red_star_and_a_blue_ring(result):
    assert sorted(result.scene.objects) == ["blue ring", "red star"]


def test_concepts_fall_on_the_objects(result):
    e, scene = result.explanation, result.scene
    assert e.n_concepts >= 2
    masks = e.masks
    # Concepts are whole 8x8 cells: nearly all their mass is on cells that touch an object (1.00 with the shipped
    # model, docs/mutual.md), over twice the object cells' share of the image (0.34)...
    on_objects = concept_mass_on_objects(e, scene, cell=8)
    assert on_objects >= 0.9 and on_objects >= 2 * object_cell_share(scene, cell=8)
    # ...the predicted object is mostly covered by them, and the other one is touched (the shipped model covers
    # all of the ring and 0.13 of the star's pixels, docs/mutual.md).
    covered = masks.any(0)
    for name, object_mask in zip(scene.objects, scene.masks):
        share = float(covered[torch.from_numpy(object_mask)].float().mean())
        assert share >= (0.5 if name == e.target_name else 0.1), name


def test_descriptors_come_from_the_scene_bank_and_make_sense(result):
    e, bank = result.explanation, set(result.method.bank.descriptors)
    assert e.visual_descriptors and {d for d, _ in e.visual_descriptors} <= bank
    assert set(e.text_descriptors) <= bank and len(e.text_descriptors) == 8
    assert e.target_name in ("red star", "blue ring")
    # The language side of the predicted class names its colour or shape...
    colour, shape = e.target_name.split()
    assert any(colour in d or shape in d for d in e.text_descriptors)
    # ...and so does the vision side (with the shipped model it names both objects: docs/mutual.md).
    visual = [d for d, _ in e.visual_descriptors]
    assert any(colour in d or shape in d for d in visual)
    assert set(e.mutual) <= {d for d, _ in e.visual_descriptors} & set(e.text_descriptors)
    assert e.mi >= 0 and e.mi_curve[-1] == 0


def test_survey_seeds_hold_a_red_star_and_a_blue_ring():
    from captum_clip.shipped.mutual_example import RED_STAR_BLUE_RING_SEEDS, find_scene_seeds

    assert find_scene_seeds(("red star", "blue ring"), 3880, 3890) == [3888]
    assert RED_STAR_BLUE_RING_SEED in RED_STAR_BLUE_RING_SEEDS and len(set(RED_STAR_BLUE_RING_SEEDS)) == 16
    from captum_clip.shipped import generate_scene

    for seed in RED_STAR_BLUE_RING_SEEDS:
        assert sorted(generate_scene(seed, image_size=64, n_objects=2).objects) == ["blue ring", "red star"]


def test_concepts_fall_on_the_objects_across_red_star_blue_ring_scenes():
    """Over 16 such scenes, each explained alone, the concepts lie on the objects more than chance.

    Measured with the shipped model (docs/mutual.md): 0.93 of the concept mass on object cells against their
    0.41 share of the image, and more than half on object cells in all 16 scenes.
    """
    from captum_clip.shipped.mutual_example import survey_scenes

    survey = survey_scenes()
    n = len(survey.seeds)
    on_objects, chance = sum(survey.on_objects) / n, sum(survey.chance) / n
    assert on_objects >= chance + 0.4, (on_objects, chance)
    assert sum(v > 0.5 for v in survey.on_objects) >= 15, survey.on_objects
