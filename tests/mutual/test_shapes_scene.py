"""With the shipped scene model, a red star and a blue ring give concepts on the objects, named from the bank."""

from __future__ import annotations

import pytest
import torch

from captum_clip.loading import BUILTIN_MODELS
from captum_clip.mutual.scene_example import RED_STAR_BLUE_RING_SEED, explain_scene, object_patch_fraction

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
    # Concepts are whole 8x8 cells: nearly all their mass is on cells that touch an object...
    fractions = object_patch_fraction(e, scene, cell=8)
    mass = torch.tensor([float(m.sum()) for m in masks])
    assert float((torch.tensor(fractions) * mass).sum() / mass.sum()) >= 0.8
    # ...and each object is covered by the concepts.
    covered = masks.any(0)
    for name, object_mask in zip(scene.objects, scene.masks):
        assert float(covered[torch.from_numpy(object_mask)].float().mean()) >= 0.5, name


def test_descriptors_come_from_the_scene_bank_and_make_sense(result):
    e, bank = result.explanation, set(result.method.bank.descriptors)
    assert e.visual_descriptors and {d for d, _ in e.visual_descriptors} <= bank
    assert set(e.text_descriptors) <= bank and len(e.text_descriptors) == 8
    assert e.target_name in ("red star", "blue ring")
    # The language side of the predicted class names its colour or shape...
    colour, shape = e.target_name.split()
    assert any(colour in d or shape in d for d in e.text_descriptors)
    # ...and the vision side names both objects.
    visual = [d for d, _ in e.visual_descriptors]
    assert any("red" in d or "star" in d for d in visual) and any("blue" in d or "ring" in d for d in visual)
    assert e.mi >= 0 and e.mi_curve[-1] == 0
