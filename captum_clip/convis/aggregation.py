"""From per-window ranks to per-pixel concept maps (ConVis spec §1d, Algorithm 1, and the webapp variant §1e).

Two aggregation orders:

* ``"max_then_mean"`` (canonical, ``grid_heatmap``): per window take r_min = the best rank in Sub(c), then average
  over the windows covering each pixel. The reference sums instead of averaging; with its geometry every image
  pixel is covered by the same 80 windows, so both give the same map.
* ``"mean_then_max"`` (the authors' webapp): average each synset's rank over the covering windows, then take the
  best synset of Sub(c) per pixel.

Either way the map is ``1 − minmax(mean rank)`` over the image, so 1 marks where the concept ranks best; a
constant map is returned as zeros.

Windows lie on a grid, so the set of windows covering a pixel is constant on the rectangular cells cut out by
the window edges (16×16 px by default). :class:`WindowCoverage` sums per cell with one matrix product and then
broadcasts to pixels, which is exact and avoids scattering |T|-long vectors onto every pixel. The coverage can be
moved to the model's device (:meth:`WindowCoverage.to`), so that ranks, sums and maps stay there; every concept of
a call is aggregated in the same matrix product.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .ranks import subtree_min, subtree_min_ranks

__all__ = ["AGGREGATIONS", "WindowCoverage", "AggregatedMaps", "aggregate_ranks", "aggregate_r_min", "normalise_maps"]

AGGREGATIONS = ("max_then_mean", "mean_then_max")


def _axis_cells(starts: torch.Tensor, ends: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells along one axis: which windows span each cell, and the cell of each pixel."""
    edges = torch.unique(torch.cat([starts, ends, torch.tensor([0, size])]))
    lo, hi = edges[:-1], edges[1:]
    covers = (starts[:, None] <= lo[None, :]) & (ends[:, None] >= hi[None, :])
    pixel_cell = torch.searchsorted(edges, torch.arange(size), right=True) - 1
    return covers, pixel_cell


class WindowCoverage:
    """Which windows cover which pixels of the image.

    Args:
        boxes: ``(P, 3)`` windows ``(x, y, b)`` in canvas pixels; each is credited on its full b×b square.
        origin: canvas coordinate of the image's top-left pixel (the padding).
        size: image side in pixels.
    """

    def __init__(self, boxes: torch.Tensor, origin: int, size: int) -> None:
        x, y, b = (v.long() for v in boxes.unbind(1))
        cols, self.col_cell = _axis_cells((x - origin).clamp(0, size), (x + b - origin).clamp(0, size), size)
        rows, self.row_cell = _axis_cells((y - origin).clamp(0, size), (y + b - origin).clamp(0, size), size)
        self.size = size
        self.grid_shape = (rows.shape[1], cols.shape[1])
        #: ``(P, n_cells)`` float64 0/1: window p covers cell c. float64 keeps integer rank sums exact.
        self.matrix = (rows[:, :, None] & cols[:, None, :]).reshape(len(boxes), -1).double()
        #: ``(n_cells,)`` number of windows covering each cell.
        self.cell_count = self.matrix.sum(0)

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    def to(self, device: torch.device | str | None) -> "WindowCoverage":
        """This coverage with its tensors on *device* (self when already there)."""
        device = torch.device(device or "cpu")
        if device == self.device:
            return self
        moved = copy.copy(self)
        for name in ("matrix", "cell_count", "row_cell", "col_cell"):
            setattr(moved, name, getattr(self, name).to(device))
        return moved

    def cell_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Sum per-window values over the windows covering each cell.

        Args:
            values: ``(P, K)``.

        Returns:
            ``(K, n_cells)`` float64.
        """
        return values.to(self.matrix.device, torch.float64).T @ self.matrix

    def to_pixels(self, cell_values: torch.Tensor) -> torch.Tensor:
        """Broadcast per-cell values to the image's pixels.

        Args:
            cell_values: ``(K, n_cells)``.

        Returns:
            ``(K, size, size)``.
        """
        grid = cell_values.reshape(cell_values.shape[0], *self.grid_shape)
        rows, cols = self.row_cell.to(grid.device), self.col_cell.to(grid.device)
        return grid[:, rows][:, :, cols]

    def pixel_count(self) -> torch.Tensor:
        """``(size, size)`` int64: windows covering each pixel (80 everywhere with the default geometry)."""
        return self.to_pixels(self.cell_count[None]).squeeze(0).round().long()


@dataclass(frozen=True)
class AggregatedMaps:
    """Concept maps and the quantities behind them, in image pixels.

    Attributes:
        maps: ``(K, H, W)`` float64 in [0, 1]; 1 = where the concept ranks best.
        mean_rank: ``(K, H, W)`` float64: the mean r_min over the covering windows (``max_then_mean``), or the
            best mean rank over Sub(c) (``mean_then_max``); lower = better.
        rank_sum: ``(K, H, W)`` float64: ``mean_rank × coverage``; for ``max_then_mean`` this is the reference's
            integer rank sum S.
        coverage: ``(H, W)`` int64 windows per pixel.
        r_min: ``(P, K)`` int64 per-window best rank (``max_then_mean`` only, else None).
    """

    maps: torch.Tensor
    mean_rank: torch.Tensor
    rank_sum: torch.Tensor
    coverage: torch.Tensor
    r_min: torch.Tensor | None


def normalise_maps(mean_rank: torch.Tensor) -> torch.Tensor:
    """``1 − minmax`` per concept over the pixels; a constant map becomes zeros (the reference gives NaN).

    Args:
        mean_rank: ``(K, H, W)``, lower = better.

    Returns:
        ``(K, H, W)`` float64 in [0, 1].
    """
    flat = mean_rank.double().flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = hi - lo
    maps = 1.0 - (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    maps = torch.where(span > 0, maps, torch.zeros_like(maps))
    return maps.view_as(mean_rank)


def aggregate_r_min(r_min: torch.Tensor, coverage: WindowCoverage) -> AggregatedMaps:
    """K concept maps from per-window best ranks (``max_then_mean``), on the coverage's device.

    Args:
        r_min: ``(P, K)`` best rank in Sub(c) per window (:func:`~.ranks.subtree_min_ranks`).
        coverage: the windows' pixel coverage (same P windows, same order).

    Returns:
        :class:`AggregatedMaps` with ``r_min`` set.
    """
    if r_min.shape[0] != coverage.matrix.shape[0]:
        raise ValueError(f"{r_min.shape[0]} rank rows for {coverage.matrix.shape[0]} windows")
    count = coverage.cell_count.clamp_min(1)  # cells no window covers (impossible with a valid WindowConfig)
    cell_sum = coverage.cell_sums(r_min)
    return _maps(coverage, cell_sum / count, cell_sum, r_min)


def _maps(coverage: WindowCoverage, cell_mean: torch.Tensor, cell_sum: torch.Tensor,
          r_min: torch.Tensor | None) -> AggregatedMaps:
    mean_rank = coverage.to_pixels(cell_mean)
    return AggregatedMaps(
        maps=normalise_maps(mean_rank),
        mean_rank=mean_rank,
        rank_sum=coverage.to_pixels(cell_sum),
        coverage=coverage.pixel_count(),
        r_min=r_min,
    )


def aggregate_ranks(
    ranks: torch.Tensor,
    subtrees: Sequence[Sequence[int]],
    coverage: WindowCoverage,
    order: str = "max_then_mean",
) -> AggregatedMaps:
    """Turn one image's window ranks into K concept maps (all K at once, on the coverage's device).

    Args:
        ranks: ``(P, T)`` rank of each synset in each window (:func:`~.ranks.similarity_ranks`).
        subtrees: K lists of vocabulary rows, Sub(c) per concept.
        coverage: the windows' pixel coverage (same P windows, same order as *ranks*).
        order: ``"max_then_mean"`` or ``"mean_then_max"``.

    Returns:
        :class:`AggregatedMaps`.
    """
    if order not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {order!r}")
    if ranks.shape[0] != coverage.matrix.shape[0]:
        raise ValueError(f"{ranks.shape[0]} rank rows for {coverage.matrix.shape[0]} windows")
    if order == "max_then_mean":
        return aggregate_r_min(subtree_min_ranks(ranks, subtrees), coverage)
    count = coverage.cell_count.clamp_min(1)
    # Only the synsets of some Sub(c) are ever needed: sum those columns, then min within each subtree.
    used = sorted({row for rows in subtrees for row in rows})
    column = {row: j for j, row in enumerate(used)}
    per_synset = coverage.cell_sums(ranks[:, torch.tensor(used, device=ranks.device)]) / count
    cell_mean = subtree_min(
        per_synset.T, [[column[row] for row in rows] for rows in subtrees], pad_value=float("inf")
    ).T
    return _maps(coverage, cell_mean, cell_mean * count, None)
