"""Tests for the procedural shape scenes and the shipped shapes CLIP model."""

import json
import re
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from safetensors.torch import load_file

from captum_clip.shipped import (
    CLIP_MEAN,
    CLIP_STD,
    COLORS,
    PALETTE,
    SHAPES,
    ShapesDataset,
    collate_scene_items,
    generate_scene,
    make_scenes,
    masks_for,
    single_object_classnames,
    to_tensor,
)
from captum_clip.shipped.zero_shot import HELD_OUT_SEED_START, VALIDATION_SEED_START, evaluate_zero_shot
from captum_clip.shipped.training import (
    MAX_RUN_SEED,
    MODEL_CONFIG,
    TRAIN_SEED_STRIDE,
    CLASS_GROUP_SIZES,
    caption_truth,
    class_group_loss,
    class_mentions,
    model_config,
    multi_positive_clip_loss,
    training_scene_seed,
)

ASSETS = Path(__file__).resolve().parents[2] / "captum_clip" / "assets"
SHAPES_CONFIG = ASSETS / "shapes.json"
SHAPES_WEIGHTS = ASSETS / "shapes.safetensors"


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(60, seed=123)


def _nearest_palette_color(rgb: np.ndarray) -> str:
    distances = {name: np.linalg.norm(rgb - np.asarray(value)) for name, value in PALETTE.items()}
    return min(distances, key=distances.get)


# --------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------


def test_same_seed_gives_identical_scene():
    first, second = generate_scene(7), generate_scene(7)
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.masks, second.masks)
    assert (first.caption, first.shapes, first.colors) == (second.caption, second.shapes, second.colors)


def test_different_seeds_give_different_scenes():
    images = [generate_scene(seed).image for seed in range(5)]
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[j])


def test_image_and_mask_layout(scenes):
    for scene in scenes:
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert scene.masks.dtype == bool
        assert scene.masks.shape == (len(scene.shapes), 64, 64)
        assert len(scene.shapes) == len(scene.colors) == len(scene.objects)
    assert generate_scene(0, image_size=96).image.shape == (96, 96, 3)


def test_object_counts_cover_one_to_three(scenes):
    assert {len(scene.shapes) for scene in scenes} == {1, 2, 3}
    for n in (1, 2, 3):
        assert all(len(generate_scene(seed, n_objects=n).shapes) == n for seed in range(10))


def test_masks_are_non_empty_and_disjoint(scenes):
    for scene in scenes:
        assert scene.masks.reshape(len(scene.masks), -1).sum(axis=1).min() >= 40
        assert scene.masks.sum(axis=0).max() == 1


def test_pixels_under_each_mask_have_the_named_colour(scenes):
    for scene in scenes:
        for mask, color in zip(scene.masks, scene.colors):
            mean_rgb = scene.image[mask].astype(float).mean(axis=0)
            assert _nearest_palette_color(mean_rgb) == color


def test_objects_in_a_scene_have_distinct_shapes_and_colours(scenes):
    for scene in scenes:
        assert len(set(scene.shapes)) == len(scene.shapes)
        assert len(set(scene.colors)) == len(scene.colors)


def test_caption_names_exactly_the_objects(scenes):
    for scene in scenes:
        named = re.findall(rf"\b({'|'.join(COLORS)}) ({'|'.join(SHAPES)})\b", scene.caption)
        assert named == list(zip(scene.colors, scene.shapes))
    assert generate_scene(5, n_objects=2).caption.count(" and ") == 1


def test_caption_grammar():
    caption = generate_scene(2, n_objects=3).caption
    assert re.fullmatch(r"an? \w+ \w+, an? \w+ \w+ and an? \w+ \w+", caption)
    assert re.fullmatch(r"an? \w+ \w+", generate_scene(2, n_objects=1).caption)


def test_masks_for_selects_the_queried_object():
    scene = generate_scene(11, n_objects=3)
    color, shape = scene.colors[1], scene.shapes[1]
    for query in (f"{color} {shape}", shape, color, f"a photo of a {color} {shape}."):
        np.testing.assert_array_equal(masks_for(scene, query), scene.masks[1])
    absent_color = next(c for c in COLORS if c not in scene.colors)
    assert not masks_for(scene, f"{absent_color} {shape}").any()
    with pytest.raises(ValueError):
        masks_for(scene, "a photo of something")


def test_single_object_classnames():
    names = single_object_classnames()
    assert len(names) == len(set(names)) == len(SHAPES) * len(COLORS)
    assert "red star" in names and len(SHAPES) >= 6 and len(COLORS) >= 6


# --------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------


def test_to_tensor_shape_and_normalisation():
    mean_image = np.broadcast_to(np.rint(np.asarray(CLIP_MEAN) * 255), (8, 8, 3)).astype(np.uint8)
    tensor = to_tensor(mean_image)
    assert tensor.shape == (1, 3, 8, 8) and tensor.dtype == torch.float32
    assert tensor.abs().max() < 0.01  # the mean colour normalises to ~0

    images = np.stack([generate_scene(s).image for s in range(3)])
    batch = to_tensor(images)
    assert batch.shape == (3, 3, 64, 64)
    restored = batch * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    expected = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(restored, expected)


def test_dataset_items_and_collate():
    dataset = ShapesDataset(4, seed=5, image_size=64)
    item = dataset[2]
    scene = generate_scene(7)
    assert len(dataset) == 4
    assert item.image.shape == (3, 64, 64) and item.image.dtype == torch.float32
    torch.testing.assert_close(item.image, to_tensor(scene.image)[0])
    assert item.masks.shape == (len(scene.shapes), 1, 64, 64) and item.masks.dtype == torch.float32
    assert set(item.masks.unique().tolist()) <= {0.0, 1.0}
    assert item.caption == scene.caption and item.objects == scene.objects

    batch = collate_scene_items([dataset[i] for i in range(4)])
    assert batch.image.shape == (4, 3, 64, 64)
    assert len(batch.masks) == len(batch.caption) == 4
    with pytest.raises(IndexError):
        dataset[4]
    assert all(len(ShapesDataset(3, n_objects=2).scene(i).shapes) == 2 for i in range(3))


# --------------------------------------------------------------------------
# Training pieces
# --------------------------------------------------------------------------


def test_training_seeds_stay_below_the_held_out_range():
    assert training_scene_seed(MAX_RUN_SEED, TRAIN_SEED_STRIDE - 1) < HELD_OUT_SEED_START
    with pytest.raises(ValueError):
        training_scene_seed(0, TRAIN_SEED_STRIDE)
    # Progress checks while training read their own range, far above the reported held-out scenes.
    assert VALIDATION_SEED_START >= HELD_OUT_SEED_START + 100_000_000


@pytest.mark.parametrize("kwargs, key, value, shipped", [
    ({"pool_type": "avg"}, "pool_type", "avg", "tok"),
    ({"vision_layers": 8}, "layers", 8, 6),
])
def test_model_config_sets_one_option_without_touching_the_shipped_config(kwargs, key, value, shipped):
    changed = model_config(**kwargs)
    assert changed["vision_cfg"][key] == value and MODEL_CONFIG["vision_cfg"][key] == shipped
    assert {k: v for k, v in changed["vision_cfg"].items() if k != key} == \
        {k: v for k, v in MODEL_CONFIG["vision_cfg"].items() if k != key}


def test_model_config_defaults_are_the_shipped_config():
    # The shipped weights come from the training defaults (SHAPES_MODEL.md); shapes.json == MODEL_CONFIG is
    # checked with the shipped model below.
    assert model_config() == MODEL_CONFIG


def test_caption_truth_accepts_partial_captions():
    scenes = [generate_scene(0, n_objects=2), generate_scene(1, n_objects=1)]
    full = list(zip(scenes[0].colors, scenes[0].shapes))
    mentions = [full, [(None, scenes[0].shapes[0])], [(scenes[1].colors[0], scenes[1].shapes[0])]]
    truth = caption_truth(scenes, mentions)
    assert truth[0, 0] and truth[0, 1] and not truth[1, 0]
    assert truth[1, 2]  # each scene's own full caption is true of it
    assert truth[1, 1] == (scenes[0].shapes[0] in scenes[1].shapes)


def test_multi_positive_loss_equals_clip_loss_for_unique_captions():
    torch.manual_seed(0)
    image_features = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    text_features = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(10.0)
    expected = open_clip.ClipLoss()(image_features, text_features, scale)
    actual = multi_positive_clip_loss(image_features, text_features, scale, torch.eye(6, dtype=torch.bool))
    torch.testing.assert_close(actual, expected)


def test_class_group_loss_is_cross_entropy_within_each_group():
    """Each group (colour+shape, shape, colour) is its own softmax over that group's class captions."""
    assert sum(CLASS_GROUP_SIZES) == len(class_mentions())
    torch.manual_seed(0)
    groups = (3, 2)
    image_features = torch.nn.functional.normalize(torch.randn(2, 4), dim=-1)
    class_features = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    truth = torch.tensor([[1, 0, 0, 0, 1], [0, 1, 1, 1, 0]], dtype=torch.bool)  # image 1: two true in group 1
    scale = torch.tensor(5.0)
    logits = scale * image_features @ class_features.T
    first = torch.nn.functional.cross_entropy(logits[:, :3], torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5]]))
    second = torch.nn.functional.cross_entropy(logits[:, 3:], torch.tensor([1, 0]))
    actual = class_group_loss(image_features, class_features, scale, truth, groups)
    torch.testing.assert_close(actual, (first + second) / 2)
    # Captions of other groups do not compete: changing one leaves the other group's term alone.
    moved = class_features.clone()
    moved[4] = -moved[4]
    changed = class_group_loss(image_features, moved, scale, truth, groups)
    assert changed != actual
    torch.testing.assert_close(class_group_loss(image_features, moved, scale, truth, (3,) + (2,))
                               - torch.nn.functional.cross_entropy((scale * image_features @ moved.T)[:, 3:],
                                                                  torch.tensor([1, 0])) / 2, first / 2)


# --------------------------------------------------------------------------
# Shipped model
# --------------------------------------------------------------------------


def test_shipped_config_matches_the_training_config():
    config = json.loads(SHAPES_CONFIG.read_text())
    assert config == MODEL_CONFIG
    assert config["vision_cfg"]["layers"] >= 6
    assert config["vision_cfg"]["image_size"] // config["vision_cfg"]["patch_size"] >= 8
    assert SHAPES_WEIGHTS.stat().st_size <= 15 * 2**20


@pytest.fixture(scope="module")
def shapes_model():
    model = open_clip.CLIP(**json.loads(SHAPES_CONFIG.read_text()))
    model.load_state_dict(load_file(str(SHAPES_WEIGHTS)), strict=True)
    return model.eval()


def test_shipped_weights_load_strictly_as_float32(shapes_model):
    assert all(p.dtype == torch.float32 for p in shapes_model.parameters())
    fresh = open_clip.CLIP(**json.loads(SHAPES_CONFIG.read_text()))
    open_clip.load_checkpoint(fresh, str(SHAPES_WEIGHTS), strict=True)
    for (name, expected), (_, actual) in zip(shapes_model.state_dict().items(), fresh.state_dict().items()):
        torch.testing.assert_close(actual, expected, msg=name)


def test_shipped_model_zero_shot_accuracy(shapes_model):
    context_length = MODEL_CONFIG["text_cfg"]["context_length"]
    tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=context_length)
    accuracy = evaluate_zero_shot(shapes_model, tokenizer, n=100, seed=HELD_OUT_SEED_START + 50_000)
    # Issue 3's target (0.90). The shipped model measures 0.960 shape+colour on the 1,000 held-out scenes of
    # captum_clip/assets/SHAPES_MODEL.md and 0.94 on these 100 other held-out scenes.
    assert accuracy["shape_color"] >= 0.90, accuracy
    assert accuracy["color"] >= 0.98, accuracy
