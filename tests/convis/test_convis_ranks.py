"""Rank and aggregation arithmetic on hand-made cases, then on the golden embeddings and r_min."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_clip.convis import ranks as ranks_module
from captum_clip.convis.aggregation import WindowCoverage, aggregate_ranks, normalise_maps
from captum_clip.convis.ranks import (
    similarity_ranks,
    subtree_min,
    subtree_min_ranks,
    window_similarities,
)
from captum_clip.convis.windows import WindowConfig, window_grid

# ------------------------------------------------------------------------------------------------ hand-made


def test_similarity_ranks_by_hand():
    # Synsets on the unit circle at 0°, 90°, 180° and 45°.
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.7071068, 0.7071068]])
    angle = torch.deg2rad(torch.tensor([10.0, 100.0]))
    windows = torch.cat([torch.stack([angle.cos(), angle.sin()], 1), torch.tensor([[3.0, 3.0]])])
    ranks = similarity_ranks(windows, text)
    # 10°: cosines 0.98 (0°), 0.17 (90°), -0.98 (180°), 0.82 (45°) → order 0°, 45°, 90°, 180°.
    assert ranks[0].tolist() == [0, 2, 3, 1]
    # 100°: cosines -0.17 (0°), 0.98 (90°), 0.17 (180°), 0.57 (45°) → order 90°, 45°, 180°, 0°.
    assert ranks[1].tolist() == [3, 0, 2, 1]
    # 45° (unnormalised): 45° first; 0° and 90° tie exactly and keep row order; 180° last.
    assert ranks[2].tolist() == [1, 2, 3, 0]
    assert torch.equal(ranks.sort(1).values, torch.arange(4).expand(3, 4))
    # Window embeddings are normalised; text rows are used as given.
    z = window_similarities(windows, text)
    assert torch.allclose(z[2], torch.tensor([0.7071068, 0.7071068, -0.7071068, 1.0]), atol=1e-6)


def test_subtree_min_ranks_by_hand():
    ranks = torch.tensor([[4, 0, 3, 1, 2], [0, 4, 1, 3, 2], [2, 3, 4, 0, 1]])
    subtrees = [[2], [1, 3], [0, 2, 4]]
    assert subtree_min_ranks(ranks, subtrees).tolist() == [[3, 0, 2], [1, 3, 0], [4, 0, 1]]


def test_subtree_min_chunks_agree_with_a_loop(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(7, 50, generator=generator)
    subtrees = [torch.randperm(50, generator=generator)[: k + 1].tolist() for k in range(12)]
    expected = torch.stack([values[:, rows].min(1).values for rows in subtrees], 1)
    assert torch.equal(subtree_min(values, subtrees, pad_value=float("inf")), expected)
    monkeypatch.setattr(ranks_module, "_GATHER_BUDGET", 20)  # forces one concept per chunk
    assert torch.equal(subtree_min(values, subtrees, pad_value=float("inf")), expected)
    with pytest.raises(ValueError):
        subtree_min(values, [[]], pad_value=0)


def test_quadrant_windows_by_hand():
    # A 4×4 image, no padding, 2×2 windows at stride 2: four quadrant windows, each pixel covered once.
    config = WindowConfig(image_size=4, sizes=(2,), stride=2, pad=0)
    grid = window_grid(config)
    assert grid.boxes.tolist() == [[0, 0, 2], [2, 0, 2], [0, 2, 2], [2, 2, 2]]
    coverage = WindowCoverage(grid.boxes, origin=0, size=4)
    # T = 3 synsets; the concept's subtree is {0, 1}.
    ranks = torch.tensor([[2, 1, 0], [0, 2, 1], [1, 2, 0], [2, 0, 1]])
    result = aggregate_ranks(ranks, [[0, 1]], coverage)
    assert result.r_min.tolist() == [[1], [0], [1], [0]]
    assert result.coverage.tolist() == [[1] * 4] * 4
    expected_sum = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=torch.float64)
    assert torch.equal(result.rank_sum[0], expected_sum)
    # Best rank (0) → 1; worst (1) → 0.
    assert torch.equal(result.maps[0], 1 - expected_sum)


def test_overlapping_windows_by_hand_with_both_orders():
    # A 2×2 image; window A covers all of it, window B only its top-right pixel. Synset 0 is best in A,
    # synset 1 in B, and the concept's subtree holds both.
    boxes = torch.tensor([[0, 0, 2], [1, 0, 1]])
    coverage = WindowCoverage(boxes, origin=0, size=2)
    assert coverage.pixel_count().tolist() == [[1, 2], [1, 1]]
    ranks = torch.tensor([[0, 10], [10, 0]])
    subtree = [[0, 1]]
    canonical = aggregate_ranks(ranks, subtree, coverage, "max_then_mean")
    # r_min = 0 in both windows: every pixel's mean best rank is 0, a flat map → zeros.
    assert canonical.mean_rank[0].tolist() == [[0, 0], [0, 0]]
    assert canonical.maps.abs().sum() == 0
    webapp = aggregate_ranks(ranks, subtree, coverage, "mean_then_max")
    # Per synset (0, 1): pixels seen only by A have mean ranks (0, 10); the top-right pixel (5, 5).
    assert webapp.mean_rank[0].tolist() == [[0, 5], [0, 0]]
    assert webapp.rank_sum[0].tolist() == [[0, 10], [0, 0]]
    assert webapp.maps[0].tolist() == [[1, 0], [1, 1]]
    assert webapp.r_min is None
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_ranks(ranks, subtree, coverage, "mean")


def test_mean_not_sum_where_coverage_varies():
    # Window A covers the whole 2×2 image, window B only its top-right pixel, both with r_min 3. The sums
    # differ (3 vs 6) but every mean is 3, so the map must be flat.
    boxes = torch.tensor([[0, 0, 2], [1, 0, 1]])
    coverage = WindowCoverage(boxes, origin=0, size=2)
    result = aggregate_ranks(torch.tensor([[3], [3]]), [[0]], coverage)
    assert result.rank_sum[0].tolist() == [[3, 6], [3, 3]]
    assert result.maps.abs().sum() == 0


def test_normalise_maps():
    mean_rank = torch.tensor([[[4.0, 2.0], [0.0, 1.0]], [[7.0, 7.0], [7.0, 7.0]]])
    maps = normalise_maps(mean_rank)
    assert maps[0].tolist() == [[0.0, 0.5], [1.0, 0.75]]
    assert maps[1].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert maps.dtype == torch.float64


def _brute_force_rank_sum(boxes, values, origin, size, canvas):
    """The reference's loop: add each window's value to its b×b square on the canvas, then crop the image."""
    total = np.zeros((values.shape[1], canvas, canvas))
    count = np.zeros((canvas, canvas))
    for (x, y, b), v in zip(boxes.tolist(), values.numpy(), strict=True):
        total[:, y : y + b, x : x + b] += v[:, None, None]
        count[y : y + b, x : x + b] += 1
    window = slice(origin, origin + size)
    return total[:, window, window], count[window, window]


@pytest.mark.parametrize(
    "config",
    [WindowConfig(), WindowConfig(image_size=40, sizes=(24, 8), stride=8, pad=8),
     WindowConfig(image_size=30, sizes=(12, 9), stride=5, pad=0)],
)
def test_coverage_matches_the_reference_scatter_loop(config):
    grid = window_grid(config)
    boxes = grid.boxes[grid.overlaps_image]
    coverage = WindowCoverage(boxes, config.pad, config.image_size)
    values = torch.randint(0, 1000, (len(boxes), 2), generator=torch.Generator().manual_seed(1))
    expected, count = _brute_force_rank_sum(boxes, values, config.pad, config.image_size, config.canvas_size)
    got = coverage.to_pixels(coverage.cell_sums(values))
    assert np.array_equal(got.numpy(), expected)
    assert np.array_equal(coverage.pixel_count().numpy(), count)
    if config == WindowConfig():
        assert (coverage.pixel_count() == 80).all()  # 64 large + 16 small windows on every pixel


# ------------------------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("image", ["chelsea", "coffee"])
def test_golden_r_min_from_stored_embeddings(image, golden_case, reference_vocabulary, convis_golden_dir):
    case = golden_case(image)
    text = torch.from_numpy(np.load(convis_golden_dir / "text_bank_tiny-vit.npz")["D"])
    ranks = similarity_ranks(torch.from_numpy(case["window_embeddings"]), text)
    subtrees = [reference_vocabulary.subtree(c) for c in case["concepts"]]
    r_min = subtree_min_ranks(ranks, subtrees).T.numpy()
    gold, gap = case["r_min"], case["r_min_gap"]
    # README rule: exact wherever the best synset is not within 1e-6 of its neighbours, else off by at most 1.
    assert np.array_equal(r_min[gap >= 1e-6], gold[gap >= 1e-6])
    assert np.abs(r_min - gold).max() <= 1
    assert (r_min != gold).sum() <= 2


@pytest.mark.parametrize("image", ["chelsea", "coffee"])
def test_golden_rank_sum_and_map_from_stored_r_min(image, golden_case):
    case = golden_case(image)
    grid = window_grid()
    coverage = WindowCoverage(grid.boxes, origin=128, size=224)  # all 1,800 windows, as the reference
    r_min = torch.from_numpy(case["r_min"].T.astype(np.int64))
    rank_sum = coverage.to_pixels(coverage.cell_sums(r_min))
    assert np.array_equal(rank_sum.numpy(), case["rank_sum"])
    maps = normalise_maps(rank_sum / coverage.pixel_count())
    np.testing.assert_allclose(maps.numpy(), case["map"], rtol=0, atol=1e-12)
    # The 1,070 windows that miss the image contribute nothing.
    inside = WindowCoverage(grid.boxes[grid.overlaps_image], origin=128, size=224)
    assert torch.equal(inside.to_pixels(inside.cell_sums(r_min[grid.overlaps_image])), rank_sum)
