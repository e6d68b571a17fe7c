"""Figures of ConVis results: scene queries with their maps, ground-truth and predicted boxes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .convis_wsol import largest_component_box

__all__ = ["save_localisation_figure"]


def _draw_box(axis, box, colour: str) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    axis.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=colour,
                             linewidth=1.5))


def save_localisation_figure(
    path: str | os.PathLike,
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    gt_boxes: Sequence[np.ndarray],
    threshold: float,
    suptitle: str = "",
) -> Path:
    """One column per query: the image with its ground-truth box (green) and the map with the box predicted at
    *threshold* (largest component, white).

    Args:
        path: output file (.png, .pdf, .svg).
        images: ``(H, W, 3)`` uint8 images.
        maps: ``(H, W)`` maps in [0, 1].
        titles: one per column (e.g. the queried synset).
        gt_boxes: ``(M, 4)`` inclusive boxes per column.
        threshold: the map threshold whose box is drawn (e.g. MaxBoxAcc's best).
        suptitle: figure title.

    Returns:
        The written path.
    """
    n = len(maps)
    figure = Figure(figsize=(2.0 * n, 4.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, n, squeeze=False)
    for k in range(n):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(images[k])
        for box in np.asarray(gt_boxes[k]).reshape(-1, 4):
            _draw_box(top, box, "lime")
        top.set_title(titles[k], fontsize=8)
        bottom.imshow(images[k])
        bottom.imshow(maps[k], cmap="jet", alpha=0.55, vmin=0, vmax=1)
        predicted = largest_component_box(maps[k] > threshold)
        if predicted is not None:
            _draw_box(bottom, predicted, "white")
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_ylabel("scene, true box", fontsize=8)
    axes[1, 0].set_ylabel(f"ConVis map, box at t={threshold:.2f}", fontsize=8)
    if suptitle:
        figure.suptitle(suptitle, fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    return path
