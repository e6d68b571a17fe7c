"""Degenerate inputs follow the documented behaviour instead of crashing (no golden data needed)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import torch

from captum_clip.mutual.matching import class_descriptors, match_descriptors, sinkhorn
from captum_clip.mutual.parts import concept_pixel_masks, concept_visit_order, kmeans_parts, pca_parts
from captum_clip.mutual.prompts import fit_concept_ellipses, fit_ellipse, render_visual_prompts
from captum_clip.mutual.foreground import keep_largest_components, prominent_patches, upsample_patch_map
from captum_clip.mutual.information import mutual_information_dynamics


def _blob_features(b=3, g=8, c=16, seed=0):
    """Patch features with one square object per image on a shared background direction."""
    rng = np.random.default_rng(seed)
    fg_dir, bg_dir = rng.normal(size=c), rng.normal(size=c)
    feats = np.empty((b, g, g, c), dtype=np.float32)
    for i in range(b):
        obj = np.zeros((g, g), bool)
        r0, c0 = 1 + i % 3, 2
        obj[r0 : r0 + 4, c0 : c0 + 4] = True
        feats[i] = np.where(obj[..., None], fg_dir + 0.5 * rng.normal(size=(g, g, c)),
                            bg_dir + 0.5 * rng.normal(size=(g, g, c)))
    return torch.from_numpy(feats.reshape(b, g * g, c))


# ------------------------------------------------------------------------------------------ no foreground


def test_no_foreground_cleanup_is_empty_mask():
    cands = torch.zeros(2, 6, 6, dtype=torch.bool)
    cands[1, 2:4, 2:4] = True
    res = keep_largest_components(cands)
    assert not res.mask[0].any() and not res.first_component[0].any()
    assert res.second_size.tolist() == [0, 0] and not res.second_kept.any()
    assert res.mask[1].sum() == 4
    none = keep_largest_components(torch.zeros(3, 5, 5, dtype=torch.bool))
    assert none.mask.shape == (3, 5, 5) and not none.mask.any()


@pytest.mark.parametrize("parts_fn", [pca_parts, kmeans_parts])
def test_no_foreground_image_has_no_concepts(parts_fn):
    feats = _blob_features()
    fg = prominent_patches(feats).mask.clone()
    assert fg[1:].any()
    fg[0] = False  # one image without foreground inside a batch
    parts = parts_fn(feats, fg)
    assert parts.n_concepts[0] == 0 and torch.all(parts.concept_order[0] == -1)
    assert torch.all(parts.labels[0] == -1)
    assert torch.all(parts.n_concepts[1:] >= 1)
    masks = concept_pixel_masks(parts.labels, parts.concept_order, 32)
    assert not masks[0].any()
    ellipses = fit_concept_ellipses(masks)
    assert np.isnan(ellipses[0]).all()
    # Whole batch without foreground: nothing to fit, no crash.
    empty = parts_fn(feats, torch.zeros_like(fg))
    assert torch.all(empty.n_concepts == 0) and torch.all(empty.labels == -1)


def test_no_concepts_gives_empty_dv_and_zero_mi():
    scores = torch.randn(2, 5, 40)
    relevance = torch.rand(2, 40)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[1, :2] = True
    m = match_descriptors(scores, relevance, concept_mask=mask, k=10)
    assert not m.candidates[0].any() and torch.isnan(m.threshold[0])
    assert m.dv_lengths[0] == 0 and torch.all(m.dv_ids[0] == -1) and torch.isnan(m.dv_scores[0]).all()
    assert torch.all(m.plan[0] == 0)
    dyn = mutual_information_dynamics(m.dv_ids, torch.arange(10)[None].repeat(2, 1))
    assert dyn.lengths[0] == 1 and dyn.mi[0] == 0 and dyn.auc[0] == 0


def test_empty_mask_prompts_are_untouched_images():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 8:20, 10:24] = True
    ellipses = fit_concept_ellipses(masks)
    assert np.isfinite(ellipses[0]).all() and np.isnan(ellipses[1]).all()
    p = render_visual_prompts(img, ellipses)
    for arr in p:
        assert arr.shape == (2, 32, 32, 3)
        np.testing.assert_array_equal(arr[1], img)
        assert (arr[0] != img).any()


# ------------------------------------------------------------------------------------------ single concept


def test_single_concept_uses_scores_for_picks():
    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(1, 1, 300, generator=gen)
    relevance = torch.rand(1, 300, generator=gen)
    m = match_descriptors(scores, relevance, k=100)
    filt = torch.nonzero(m.filtered[0]).flatten()
    assert torch.all(m.plan[0, 0, filt] == 1)  # uniform plan: OT is a no-op
    want = filt[scores[0, 0, filt].argsort(descending=True)[:3]]
    assert m.selected[0, 0].tolist() == want.tolist()
    assert m.dv_lengths[0] == 3
    assert set(m.dv_ids[0, :3].tolist()) == set(want.tolist())
    # Ordered by image relevance.
    dv_scores = m.dv_scores[0, :3]
    assert torch.all(dv_scores[:-1] >= dv_scores[1:])


def test_sinkhorn_ignores_padding_and_keeps_columns_normalised():
    gen = torch.Generator().manual_seed(2)
    cost = torch.rand(1, 3, 6, generator=gen, dtype=torch.float64) * 2.5
    mask = torch.ones(1, 3, 6, dtype=torch.bool)
    padded_cost = torch.nn.functional.pad(cost, (0, 2, 0, 1), value=7.0)
    padded_mask = torch.nn.functional.pad(mask, (0, 2, 0, 1), value=False)
    ref = sinkhorn(cost, mask, iters=200)
    out = sinkhorn(padded_cost, padded_mask, iters=200)
    torch.testing.assert_close(out[:, :3, :6], ref, rtol=1e-12, atol=0)
    assert torch.all(out[:, 3:] == 0) and torch.all(out[:, :, 6:] == 0)
    torch.testing.assert_close(ref.sum(dim=1), torch.ones(1, 6, dtype=torch.float64))
    # Plain (unstabilised) formulation, written out: exp then alternate normalisations.
    p = torch.exp(cost[0])
    for _ in range(200):
        p = p / p.sum(1, keepdim=True)
        p = p / p.sum(0, keepdim=True)
    torch.testing.assert_close(ref[0], p, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------ fewer than 3 candidates


def test_fewer_than_three_filtered_candidates():
    d = 20
    scores = torch.zeros(1, 3, d)
    scores[:, :, :4] = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 4.0, 3.0, 2.0], [2.0, 1.0, 4.0, 3.0]])
    relevance = torch.zeros(1, d)
    relevance[0, :4] = torch.tensor([0.9, 0.0, 0.0, 0.8])  # mean 0.425 -> threshold 0.405 keeps ids 0 and 3
    m = match_descriptors(scores, relevance, k=4)
    assert torch.nonzero(m.candidates[0]).flatten().tolist() == [0, 1, 2, 3]
    assert torch.nonzero(m.filtered[0]).flatten().tolist() == [0, 3]
    assert m.threshold[0].item() == pytest.approx(0.425 - 0.02, abs=1e-6)
    sel = m.selected[0]
    assert torch.all(sel[:, 2] == -1)
    assert all(sorted(row) == [0, 3] for row in sel[:, :2].tolist())
    assert m.dv_ids[0].tolist()[:3] == [0, 3, -1] and m.dv_lengths[0] == 2
    np.testing.assert_allclose(m.dv_scores[0, :2].numpy(), [2.25, 2.0], rtol=1e-6)


def test_empty_candidate_set():
    # Disjoint top-k sets: no descriptor is in the top-2 of both concepts.
    scores = torch.tensor([[[5.0, 4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 5.0, 4.0, 0.0]]])
    m = match_descriptors(scores, torch.rand(1, 5), k=2)
    assert not m.candidates.any() and not m.filtered.any() and torch.isnan(m.threshold[0])
    assert torch.all(m.selected == -1) and m.dv_lengths[0] == 0


# --------------------------------------------------------------------------------- bank smaller than k


def test_bank_smaller_than_k():
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(2, 4, 30, generator=gen)
    relevance = torch.rand(2, 30, generator=gen)
    m = match_descriptors(scores, relevance, k=500)
    assert torch.all(m.candidates)  # k clipped to D: every descriptor is in every top-k
    expected_thr = relevance.mean(dim=1) - 0.02
    torch.testing.assert_close(m.threshold, expected_thr)
    assert torch.all(m.filtered == (relevance > expected_thr[:, None]))
    assert torch.all((m.selected >= 0).sum(-1) == 3)
    assert class_descriptors(torch.rand(5, 30, generator=gen), torch.tensor([0, 4]), u=50).shape == (2, 30)


# ------------------------------------------------------------------------------------------ small parts


def test_tiny_foreground_parts():
    feats = _blob_features(b=1, g=6)
    fg = torch.zeros(1, 6, 6, dtype=torch.bool)
    fg[0, 2, 2] = True
    one = pca_parts(feats, fg)
    assert one.labels[0, 2, 2] == 0 and one.n_concepts.tolist() == [1]
    fg[0, 2, 3] = fg[0, 3, 3] = True
    three = pca_parts(feats, fg)  # 3 rows < 5 parts: fewer components, fewer parts
    assert 1 <= three.n_concepts.item() <= 3
    assert set(three.labels[fg].tolist()) <= {0, 1, 2}
    km = kmeans_parts(feats, fg)
    assert 1 <= km.n_concepts.item() <= 3
    # Identical foreground features: no variance to split, everything is one part (no crash, no warning).
    same = torch.ones(2, 16, 8)
    all_fg = torch.ones(2, 4, 4, dtype=torch.bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pca_parts(same, all_fg).n_concepts.tolist() == [1, 1]
        assert kmeans_parts(same, all_fg).n_concepts.tolist() == [1, 1]


def test_kmeans_is_seeded():
    feats = _blob_features(b=4, g=8, c=16, seed=5)
    fg = prominent_patches(feats).mask
    a = kmeans_parts(feats, fg, random_state=7)
    b = kmeans_parts(feats, fg, random_state=7)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.labels >= 0, fg)


def test_visit_order_follows_display_colours():
    labels = torch.tensor([[[0, 1, 2], [3, 4, -1]], [[4, 4, 0], [-1, -1, -1]]])
    order, n = concept_visit_order(labels, 5)
    assert order.tolist() == [[2, 1, 0, 4, 3], [0, 4, -1, -1, -1]]
    assert n.tolist() == [5, 2]


def test_small_and_collinear_contours_get_deterministic_ellipses():
    np.testing.assert_allclose(fit_ellipse(np.array([[5, 7]])), [5, 7, 1, 1, 0])
    np.testing.assert_allclose(fit_ellipse(np.array([[0, 0], [1, 0], [1, 1], [0, 1]])), [0.5, 0.5, 2, 2, 0])
    np.testing.assert_allclose(fit_ellipse(np.array([[3, 4], [4, 4], [5, 4]])), [4, 4, 1, 3, 90])
    np.testing.assert_allclose(fit_ellipse(np.array([[3, 4], [3, 5], [3, 6]])), [3, 5, 1, 3, 0])
    diag = fit_ellipse(np.array([[0, 0], [1, 1], [2, 2], [1, 1]]))
    np.testing.assert_allclose(diag, [1, 1, 1, 1 + 2 * np.sqrt(2), 135], atol=1e-9)
    # A 1-pixel line has >= 5 contour points, all collinear: cv2.fitEllipse is RNG-dependent there.
    masks = np.zeros((1, 16, 16), bool)
    masks[0, 3, 3:9] = True
    runs = [fit_concept_ellipses(masks) for _ in range(5)]
    for r in runs:
        np.testing.assert_array_equal(r, runs[0])
    np.testing.assert_allclose(runs[0][0], [5.5, 3, 1, 6, 90])


def test_upsample_matches_cv2_nearest():
    labels = torch.randint(-1, 5, (2, 7, 7))
    up = upsample_patch_map(labels, 50)
    for i in range(2):
        ref = cv2.resize(labels[i].numpy().astype(np.float32), (50, 50), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(up[i].numpy(), ref.astype(np.int64))
    mask = labels >= 2
    assert torch.equal(upsample_patch_map(mask, 14), mask.repeat_interleave(2, 1).repeat_interleave(2, 2))


def test_spatial_feature_maps_are_accepted():
    feats = _blob_features(b=2, g=8)
    as_map = feats.reshape(2, 8, 8, -1).permute(0, 3, 1, 2)
    a = prominent_patches(feats)
    b = prominent_patches(as_map)
    assert torch.equal(a.mask, b.mask)
