"""The vectorised Mutual Knowledge steps against their per-item references.

* Tensor ellipse masks / prompts vs one ``cv2`` call per (image, concept): equal pixel for pixel, on random
  ellipses that cross the border, lie outside it, are thin or degenerate, or sit on rounding ties.
* Sinkhorn with its stopping rule vs the fixed 1000 iterations, and stopping early on easy inputs.
* ``explain`` on a batch vs one image at a time against the same reference images, and the two renderers.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from captum_clip.mutual.matching import match_descriptors, sinkhorn
from captum_clip.mutual.prompts import (
    EllipseMasks,
    VisualPromptStack,
    compose_visual_prompts,
    ellipse_fill_masks,
    ellipse_masks,
    gaussian_blur_uint8,
    gaussian_kernel_q8,
    gray_uint8,
    prompt_layers,
    render_visual_prompts,
)

from ..conftest import images_for

# The tensor renderer reproduces OpenCV 5's drawing (the golden data's OpenCV); OpenCV 4 draws thin outlines
# with its older fixed-point line and greys with other coefficients.
OPENCV5 = int(cv2.__version__.split(".")[0]) >= 5
needs_opencv5 = pytest.mark.skipif(not OPENCV5, reason=f"pixel equality is with OpenCV 5 (have {cv2.__version__})")


def _cv_masks(ellipses: np.ndarray, hw, thickness: int = 1):
    fill = np.zeros((len(ellipses), *hw), np.uint8)
    line = np.zeros((len(ellipses), *hw), np.uint8)
    for i, e in enumerate(ellipses):
        if np.isfinite(e).all():
            box = ((float(e[0]), float(e[1])), (float(e[2]), float(e[3])), float(e[4]))
            cv2.ellipse(fill[i], box, 1, thickness=-1)
            cv2.ellipse(line[i], box, 1, thickness=thickness)
    return fill.astype(bool), line.astype(bool)


def _random_ellipses(rng, n: int, h: int, w: int) -> np.ndarray:
    e = np.stack([rng.uniform(-0.2 * w, 1.2 * w, n), rng.uniform(-0.2 * h, 1.2 * h, n),
                  rng.uniform(0, 1.5 * w, n), rng.uniform(0, 1.5 * h, n), rng.uniform(0, 180, n)], axis=1)
    kind = np.arange(n) % 7
    e[kind == 1, 2] = rng.choice([0.0, 0.4, 1.0, 1.5, 2.0], (kind == 1).sum())  # thin
    e[kind == 2, 2:4] = rng.uniform(0, 4, ((kind == 2).sum(), 2))  # a few pixels or less
    ties = kind == 3  # centres and angles on cvRound's half-way points
    e[ties, :2] = np.round(e[ties, :2] * 2) / 2
    e[ties, 4] = np.round(e[ties, 4]) + 0.5
    axis = kind == 4  # whole numbers, axis-aligned and diagonal
    e[axis, :4] = np.round(e[axis, :4])
    e[axis, 4] = rng.choice([0.0, 45.0, 90.0, 135.0, 180.0], axis.sum())
    e[kind == 5, 2:4] = rng.uniform(4, 32, ((kind == 5).sum(), 2))  # the 18 and 30 degree polygons
    touching = kind == 6  # tangent to or just over an edge
    e[touching, 0] = rng.choice([0.0, w - 1.0, 0.5, w - 0.5], touching.sum())
    return e


@needs_opencv5
@pytest.mark.parametrize("hw", [(224, 224), (64, 64), (50, 70), (7, 9)])
def test_ellipse_masks_equal_opencv(hw):
    rng = np.random.default_rng(sum(hw))
    e = _random_ellipses(rng, 350, *hw)
    e[5] = np.nan  # no ellipse
    e[6] = [hw[1] / 2, hw[0] / 2, 40000.0, 30.0, 10.0]  # huge: drawn by OpenCV
    e[7] = [-500.0, -500.0, 20.0, 10.0, 30.0]  # far outside
    masks = ellipse_masks(e, hw)
    fill, line = _cv_masks(e, hw)
    assert masks.fill.dtype == torch.bool and masks.fill.shape == (len(e), *hw)
    np.testing.assert_array_equal(masks.fill.numpy(), fill)
    np.testing.assert_array_equal(masks.outline.numpy(), line)
    assert not masks.fill[5].any() and not masks.outline[5].any()
    # Batched shapes and the numpy helper.
    np.testing.assert_array_equal(ellipse_fill_masks(e[:12].reshape(3, 4, 5), hw), fill[:12].reshape(3, 4, *hw))
    np.testing.assert_array_equal(ellipse_fill_masks(e[:12], hw, renderer="opencv"), fill[:12])


@needs_opencv5
def test_thick_outlines_match_opencv():
    rng = np.random.default_rng(3)
    e = _random_ellipses(rng, 40, 64, 64)
    for thickness in (2, 3):
        masks = ellipse_masks(e, 64, thickness=thickness)
        fill, line = _cv_masks(e, (64, 64), thickness)
        np.testing.assert_array_equal(masks.fill.numpy(), fill)
        np.testing.assert_array_equal(masks.outline.numpy(), line)


@needs_opencv5
def test_gray_equals_cvtcolor():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    img[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 1, 1], [254, 254, 254],
                  [128, 128, 128]]
    np.testing.assert_array_equal(gray_uint8(torch.from_numpy(img)).numpy(), cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))


@pytest.mark.parametrize("ksize", [1, 3, 5, 7, 9, 11, 15])
@pytest.mark.parametrize("hw", [(64, 64), (31, 17), (5, 3), (1, 1), (11, 4)])
def test_blur_equals_gaussianblur(hw, ksize):
    rng = np.random.default_rng(ksize)
    imgs = rng.integers(0, 256, (3, *hw, 3), dtype=np.uint8)
    imgs[0] = 255  # saturation
    ref = np.stack([cv2.GaussianBlur(im, (ksize, ksize), 0) for im in imgs])
    np.testing.assert_array_equal(gaussian_blur_uint8(torch.from_numpy(imgs), ksize).numpy(), ref)


def test_blur_kernel_is_opencvs_sigma_rule():
    taps = np.array(gaussian_kernel_q8(11))
    assert taps.sum() == 256 and np.array_equal(taps, taps[::-1])
    sigma = 0.3 * ((11 - 1) * 0.5 - 1) + 0.8
    assert sigma == pytest.approx(2.0)
    float_kernel = cv2.getGaussianKernel(11, 0).ravel()
    np.testing.assert_allclose(taps / 256, float_kernel, atol=1 / 256)
    with pytest.raises(ValueError):
        gaussian_kernel_q8(4)


@needs_opencv5
@pytest.mark.parametrize("thickness,ksize", [(1, 11), (2, 11), (1, 5)])
def test_prompts_equal_the_opencv_loop(thickness, ksize):
    rng = np.random.default_rng(thickness * 10 + ksize)
    b, l, h, w = 3, 5, 48, 40
    imgs = rng.integers(0, 256, (b, h, w, 3), dtype=np.uint8)
    e = _random_ellipses(rng, b * l, h, w).reshape(b, l, 5)
    e[1, 2] = np.nan
    fast = render_visual_prompts(imgs, e, thickness=thickness, blur_ksize=ksize)
    loop = render_visual_prompts(imgs, e, thickness=thickness, blur_ksize=ksize, renderer="opencv")
    for a, r in zip(fast, loop):
        assert a.shape == (b, l, h, w, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, r)
    for p in fast:  # no ellipse: the image untouched
        np.testing.assert_array_equal(p[1, 2], imgs[1])
    # Unbatched input.
    single = render_visual_prompts(imgs[0], e[0], thickness=thickness, blur_ksize=ksize)
    np.testing.assert_array_equal(single.gray, loop.gray[0])
    with pytest.raises(ValueError, match="renderer"):
        render_visual_prompts(imgs, e, renderer="pil")


def test_prompt_stack_slices_compose_the_same_prompts():
    rng = np.random.default_rng(1)
    imgs = torch.from_numpy(rng.integers(0, 256, (2, 20, 24, 3), dtype=np.uint8))
    e = torch.tensor([[10.0, 9.0, 12.0, 8.0, 30.0], [3.0, 4.0, 5.0, 9.0, 100.0], [20.0, 18.0, 30.0, 6.0, 5.0]],
                     dtype=torch.float64)
    index = torch.tensor([0, 1, 1])
    masks = ellipse_masks(e, (20, 24))
    layers = prompt_layers(imgs, 11)
    full = compose_visual_prompts(layers, index, masks).flatten(0, 1)
    stack = VisualPromptStack(layers, index, masks)
    assert len(stack) == 9 and stack.shape == (9, 20, 24, 3)
    for start, stop in [(0, 9), (0, 4), (2, 7), (5, 6), (8, 20), (4, 4)]:
        assert torch.equal(stack[start:stop], full[start:stop])
    # Red outline over everything; grey and blur only outside the filled ellipse.
    assert (full[0][masks.outline[0]] == torch.tensor([255, 0, 0], dtype=torch.uint8)).all()
    inside = masks.fill[0] & ~masks.outline[0]
    assert torch.equal(full[1][inside], imgs[0][inside]) and torch.equal(full[2][inside], imgs[0][inside])
    outside = ~masks.fill[0] & ~masks.outline[0]
    assert outside.any() and torch.equal(full[1][outside], layers.gray[0].movedim(0, -1)[outside])
    assert torch.equal(full[2][outside], layers.blur[0].movedim(0, -1)[outside])
    assert isinstance(masks, EllipseMasks)


# -------------------------------------------------------------------------------------------------- Sinkhorn


def _plain_sinkhorn(cost: torch.Tensor, iters: int) -> torch.Tensor:
    p = torch.exp(cost - cost.max(dim=-1, keepdim=True).values)
    for _ in range(iters):
        p = p / p.sum(-1, keepdim=True)
        p = p / p.sum(-2, keepdim=True)
    return p


def _cliplike(gen, b: int, l: int, m: int) -> torch.Tensor:
    return 2.5 * (0.25 + 0.035 * torch.randn(b, l, m, generator=gen, dtype=torch.float64))


def test_sinkhorn_stops_early_and_matches_1000_iterations():
    gen = torch.Generator().manual_seed(0)
    cost = _cliplike(gen, 4, 5, 300)
    mask = torch.ones_like(cost, dtype=torch.bool)
    plan, used = sinkhorn(cost, mask, return_iters=True)
    assert used.max() < 30  # CLIP-like scores: a handful of iterations, not 1000
    ref = _plain_sinkhorn(cost, 1000)
    torch.testing.assert_close(plan, ref, rtol=1e-10, atol=0)
    full, used_full = sinkhorn(cost, mask, tol=None, return_iters=True)
    assert torch.all(used_full == 1000)
    torch.testing.assert_close(plan, full, rtol=1e-10, atol=0)
    torch.testing.assert_close(full, ref, rtol=1e-12, atol=0)
    # The converged plan: columns sum to 1, rows to M / L.
    torch.testing.assert_close(plan.sum(1), torch.ones(4, 300, dtype=torch.float64))
    torch.testing.assert_close(plan.sum(2), torch.full((4, 5), 60.0, dtype=torch.float64), rtol=1e-11, atol=0)


def test_sinkhorn_hard_inputs_still_match_the_fixed_iterations():
    # A low temperature with spread scores converges slowly: it stops late or runs all iterations.
    gen = torch.Generator().manual_seed(1)
    cost = torch.randn(3, 4, 40, generator=gen, dtype=torch.float64) * 3
    mask = torch.ones_like(cost, dtype=torch.bool)
    plan, used = sinkhorn(cost, mask, tau=0.05, return_iters=True)
    ref = sinkhorn(cost, mask, tau=0.05, tol=None)
    assert used.max() > 30
    torch.testing.assert_close(plan, ref, rtol=1e-9, atol=1e-300)
    # float32 stops only where its rounding lands within 1e-12, and agrees with the fixed count to its precision.
    c32, m = cost[:1].float() / 10, mask[:1]
    p32 = sinkhorn(c32, m)
    torch.testing.assert_close(p32, sinkhorn(c32, m, tol=None), rtol=1e-5, atol=0)


def test_sinkhorn_batch_equals_each_image_alone():
    gen = torch.Generator().manual_seed(2)
    b, l, m = 5, 5, 120
    cost = _cliplike(gen, b, l, m)
    cost[3] *= 8  # a slower image in the batch
    mask = torch.ones(b, l, m, dtype=torch.bool)
    mask[1, 3:] = False  # two concepts only
    mask[2, :, 50:] = False  # fewer candidates
    mask[4, 1:] = False  # a single concept: all ones after one iteration
    plan, used = sinkhorn(cost, mask, return_iters=True)
    assert len(set(used.tolist())) > 1 and used[4] == 1
    assert torch.all(plan[4, 0] == 1) and torch.all(plan[4, 1:] == 0)
    for i in range(b):
        rows, cols = mask[i].any(1), mask[i].any(0)
        alone, used_alone = sinkhorn(cost[i:i + 1, rows][:, :, cols], mask[i:i + 1, rows][:, :, cols],
                                     return_iters=True)
        assert used_alone.item() == used[i].item()
        torch.testing.assert_close(plan[i][rows][:, cols], alone[0], rtol=1e-13, atol=0)
        assert torch.all(plan[i][~mask[i]] == 0)
    # Nothing active: the all-zero plan, stopped at once.
    empty, used_empty = sinkhorn(cost[:1], torch.zeros_like(mask[:1]), return_iters=True)
    assert torch.all(empty == 0) and used_empty.item() <= 1
    with pytest.raises(ValueError):
        sinkhorn(cost, mask, check_every=0)


def test_match_descriptors_reports_iterations_and_equals_the_fixed_count():
    gen = torch.Generator().manual_seed(3)
    scores = 0.25 + 0.035 * torch.randn(3, 5, 800, generator=gen)
    relevance = 0.25 + 0.035 * torch.randn(3, 800, generator=gen)
    fast = match_descriptors(scores, relevance, k=300)
    slow = match_descriptors(scores, relevance, k=300, sinkhorn_tol=None)
    assert fast.sinkhorn_iters.shape == (3,) and fast.sinkhorn_iters.max() < 50
    assert torch.all(slow.sinkhorn_iters == 1000)
    for a, b in zip(fast[:8], slow[:8]):
        if a.dtype.is_floating_point:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=0, equal_nan=True)
        else:
            assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------- the method


def _same(a, b):
    assert torch.equal(a.masks, b.masks) and a.part_ids == b.part_ids
    assert a.concept_descriptors == b.concept_descriptors
    assert [d for d, _ in a.visual_descriptors] == [d for d, _ in b.visual_descriptors]
    assert np.allclose([s for _, s in a.visual_descriptors], [s for _, s in b.visual_descriptors], atol=1e-5)
    assert a.text_descriptors == b.text_descriptors and a.mutual == b.mutual
    assert a.mi == pytest.approx(b.mi) and a.auc == pytest.approx(b.auc)
    assert torch.allclose(a.importance, b.importance, atol=1e-5)
    np.testing.assert_array_equal(a.ellipses, b.ellipses)


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_explain_batch_equals_loop_with_the_same_reference(mutual_methods, tiny_bundles, tower):
    method = mutual_methods[tower]
    images = images_for(tiny_bundles[tower], n=4, seed=7)
    basis = method.fit_concepts(images)
    batched = method.explain(images, reference_images=basis)
    loop = [method.explain(images[i:i + 1], reference_images=basis)[0] for i in range(images.shape[0])]
    for a, b in zip(batched, loop):
        _same(a, b)


@needs_opencv5
def test_concept_embeddings_renderers_agree(mutual_methods, tiny_bundles):
    method = mutual_methods["vit"]
    images = images_for(tiny_bundles["vit"], n=3, seed=4)
    concepts = method.visual_concepts(images)
    z, valid, ellipses = method.concept_embeddings(images, concepts)
    z_cv, valid_cv, ellipses_cv = method.concept_embeddings(images, concepts, renderer="opencv")
    assert valid.any() and torch.equal(valid, valid_cv)
    np.testing.assert_array_equal(ellipses, ellipses_cv)
    assert torch.equal(z, z_cv)  # the same pixels, encoded in the same batches
    with pytest.raises(ValueError, match="renderer"):
        method.concept_embeddings(images, concepts, renderer="pil")


def test_prompt_batches_of_any_size(mutual_methods, tiny_bundles):
    method = mutual_methods["vit"]
    images = images_for(tiny_bundles["vit"], n=2, seed=5)
    concepts = method.visual_concepts(images)
    z, _, _ = method.concept_embeddings(images, concepts)
    saved = method.prompt_batch_size
    try:
        method.prompt_batch_size = 4  # chunks that split a concept's three prompts
        z_small, _, _ = method.concept_embeddings(images, concepts)
    finally:
        method.prompt_batch_size = saved
    torch.testing.assert_close(z_small, z, rtol=1e-5, atol=1e-6)


def test_default_prompt_passes_are_equal_and_fit_the_towers_pass_size(mutual_methods, tiny_bundles, monkeypatch):
    method = mutual_methods["vit"]
    assert method.prompt_batch_size is None
    images = images_for(tiny_bundles["vit"], n=3, seed=6)
    concepts = method.visual_concepts(images)
    tower, sizes = method.tower, []
    encode = tower.encode

    def recording(batch):
        sizes.append(len(batch))
        return encode(batch)

    monkeypatch.setattr(tower, "images_per_pass", lambda image_hw, device: 5)
    monkeypatch.setattr(tower, "encode", recording)
    z, valid, _ = method.concept_embeddings(images, concepts)
    n_prompts = 3 * int(valid.sum())
    assert n_prompts > 5 and sum(sizes) == n_prompts
    assert max(sizes) <= 5 and max(sizes) - min(sizes) <= 1
