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


def _gloss(title: str) -> str | None:
    """The WordNet gloss of a title that is a synset name ("dog.n.01"); None for other titles or without WordNet."""
    from nltk.corpus.reader.wordnet import WordNetError

    from ..convis.targets import is_synset_name
    from ..errors import WordNetNotFoundError
    from ..wordnet import load_wordnet

    if not is_synset_name(title):
        return None
    try:
        return load_wordnet().synset(title).definition()
    except (WordNetNotFoundError, WordNetError, ValueError):
        # A title WordNet does not know is no reason to lose the figure.
        return None


def save_localisation_figure(
    path: str | os.PathLike,
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    gt_boxes: Sequence[np.ndarray],
    threshold: float,
    suptitle: str = "",
    glosses: bool = True,
) -> Path:
    """One column per query: the image with its ground-truth box (green) and the map with the box predicted at
    *threshold* (largest component, white).

    The maps are drawn as :func:`~captum_clip.viz.overlay_figure` draws them (a perceptually uniform colour map over
    the grey-scale image) on one fixed [0, 1] scale, ConVis's own range, shown by one colour bar.

    Args:
        path: output file (.png, .pdf, .svg).
        images: ``(H, W, 3)`` uint8 images.
        maps: ``(H, W)`` maps in [0, 1].
        titles: one per column (e.g. the queried synset).
        gt_boxes: ``(M, 4)`` inclusive boxes per column.
        threshold: the map threshold whose box is drawn (e.g. MaxBoxAcc's best).
        suptitle: figure title.
        glosses: a title that is a WordNet synset name gets its gloss beneath it (wrapped; none without WordNet).

    Returns:
        The written path.
    """
    from ..viz import line_inches, whole_pixels, wrap_to_width, save_figure

    n = len(maps)
    panel = 2.0
    titles = [wrap_to_width(title if not glosses or (gloss := _gloss(title)) is None else f"{title}\n{gloss}", panel, 7.0)
              for title in titles]
    title_lines = max([1] + [title.count("\n") + 1 for title in titles])
    suptitle = wrap_to_width(suptitle, panel * n + 0.6, 8.0, max_lines=3) if suptitle else ""
    height = (2 * panel + 0.45 + line_inches(7.0, title_lines)
              + (line_inches(8.0, suptitle.count("\n") + 1) if suptitle else 0.0))
    figure = Figure(figsize=(whole_pixels(panel * n + 0.9, 130), whole_pixels(height, 130)), dpi=130,
                    layout="constrained")
    FigureCanvasAgg(figure)
    figure.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    grid = figure.add_gridspec(2, n + 1, width_ratios=[panel] * n + [0.1])
    axes = np.array([[figure.add_subplot(grid[row, k]) for k in range(n)] for row in range(2)])
    heat = None
    for k in range(n):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(images[k])
        for box in np.asarray(gt_boxes[k]).reshape(-1, 4):
            _draw_box(top, box, "lime")
        top.set_title(titles[k], fontsize=7)
        bottom.imshow(np.asarray(images[k]).mean(axis=-1), cmap="gray", vmin=0, vmax=255)
        heat = bottom.imshow(maps[k], cmap="viridis", alpha=0.55, vmin=0, vmax=1)
        predicted = largest_component_box(maps[k] > threshold)
        if predicted is not None:
            _draw_box(bottom, predicted, "white")
        for axis in (top, bottom):
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_ylabel("scene, true box", fontsize=8)
    axes[1, 0].set_ylabel(f"ConVis map, box at t={threshold:.2f}", fontsize=8)
    if heat is not None:
        from matplotlib.cm import ScalarMappable

        # Its own mappable: the overlay's alpha would wash the bar out.
        bar = figure.colorbar(ScalarMappable(norm=heat.norm, cmap=heat.get_cmap()),
                              cax=figure.add_subplot(grid[1, n]))
        bar.ax.tick_params(labelsize=7)
    if suptitle:
        figure.suptitle(suptitle, fontsize=8)
    return save_figure(figure, path)
