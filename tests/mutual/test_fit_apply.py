"""Fit on one set, apply to another: the path the attribution uses reproduces the golden joint fit, image by image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from captum_clip.mutual.concepts import apply_concept_basis, fit_concept_basis
from captum_clip.mutual.parts import assign_parts, fit_part_model, pca_parts
from captum_clip.mutual.foreground import fit_prominent_projection, prominent_patches, project_prominent_scores
from captum_clip.mutual.prompts import render_visual_prompts

from .test_golden_stages import CONCEPT_FILES, FG_VARIANTS


@pytest.mark.parametrize("variant", list(FG_VARIANTS))
@pytest.mark.parametrize("name", CONCEPT_FILES)
def test_projection_reproduces_golden_foreground_per_image(load_golden, name, variant):
    g = load_golden(name)
    method, by_negative, mask_key = FG_VARIANTS[variant]
    features = torch.from_numpy(g["features"])
    grid = tuple(int(v) for v in g["grid_hw"])
    projection = fit_prominent_projection(features, method=method, minmax=not by_negative)
    col = 1 if method == "svd" else 0
    key = {"svd": "svd_e", "svd_minmax": "svd_minmax_e", "pca": "pca_e", "pca_minmax": "pca_minmax_e"}[variant]
    scores = project_prominent_scores(projection, features)
    np.testing.assert_allclose(scores[:, col].numpy(), g[key], atol=1e-4 if variant == "pca" else 1e-5, rtol=0)
    for b in range(features.shape[0]):
        # One image at a time against the batch's fit: exactly its masks in the joint run.
        single = prominent_patches(features[b:b + 1], grid, projection=projection)
        np.testing.assert_array_equal(single.mask[0].numpy(), g[mask_key][b])


@pytest.mark.parametrize("name", CONCEPT_FILES)
def test_part_model_reproduces_golden_labels_per_image(load_golden, name):
    g = load_golden(name)
    features, fg = torch.from_numpy(g["features"]), torch.from_numpy(g["fg_masks"])
    model = fit_part_model(features, fg, "pca", int(g["n_parts"]))
    for b in range(features.shape[0]):
        parts = assign_parts(model, features[b:b + 1], fg[b:b + 1])
        np.testing.assert_array_equal(parts.labels[0].numpy(), g["parts_labels"][b])
        np.testing.assert_array_equal(parts.concept_order[0].numpy(), g["parts_concept_order"][b])


@pytest.mark.parametrize("name", CONCEPT_FILES[:1])
def test_concept_basis_end_to_end_on_golden_features(load_golden, name):
    g = load_golden(name)
    features = torch.from_numpy(g["features"])
    grid = tuple(int(v) for v in g["grid_hw"])
    basis = fit_concept_basis(features, grid, n_parts=int(g["n_parts"]))
    embeddings = F.normalize(torch.ones(features.shape[0], 4), dim=-1)
    cell = (16, 16)
    concepts = apply_concept_basis(basis, features, embeddings, grid, (grid[0] * 16, grid[1] * 16), cell)
    np.testing.assert_array_equal(concepts.foreground.numpy(), g["fg_masks"])
    np.testing.assert_array_equal(concepts.labels.numpy(), g["parts_labels"])
    np.testing.assert_array_equal(concepts.part_ids.numpy(), g["parts_concept_order"])
    # Pixel mask j of image b = part part_ids[b, j], upsampled x16.
    b, j = 0, 0
    part = int(concepts.part_ids[b, j])
    expected = np.kron(g["parts_labels"][b] == part, np.ones((16, 16), dtype=bool))
    np.testing.assert_array_equal(concepts.masks[b, j].numpy(), expected)


def test_kmeans_model_assigns_like_the_joint_fit():
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(3, 36, 8)).astype(np.float32))
    fg = torch.from_numpy(rng.random((3, 6, 6)) > 0.3)
    model = fit_part_model(features, fg, "kmeans", 4)
    joint = assign_parts(model, features, fg)
    for b in range(3):
        np.testing.assert_array_equal(assign_parts(model, features[b:b + 1], fg[b:b + 1]).labels[0].numpy(),
                                      joint.labels[b].numpy())
    # The legacy one-call helper is the same fit.
    from captum_clip.mutual.parts import kmeans_parts

    np.testing.assert_array_equal(kmeans_parts(features, fg, 4).labels.numpy(), joint.labels.numpy())
    assert torch.equal(pca_parts(features, fg, 4).labels,
                       assign_parts(fit_part_model(features, fg, "pca", 4), features, fg).labels)


def test_prompts_with_a_single_concept_slot():
    image = np.full((1, 32, 32, 3), 120, dtype=np.uint8)
    prompts = render_visual_prompts(image, np.array([[[16.0, 16.0, 10.0, 14.0, 30.0]]]))
    assert prompts.red.shape == (1, 1, 32, 32, 3) and (prompts.red[..., 0] == 255).any()
