"""Figure of one mutual-knowledge explanation: coloured concepts with their descriptors, and the MI dynamics."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Patch

from ..viz import whole_pixels, save_figure
from .results import MutualExplanation

__all__ = ["CONCEPT_COLOURS", "concept_overlay", "concept_figure", "save_concept_figure"]

#: Display colours of the concepts in importance order (colour-blind friendly, Okabe-Ito).
CONCEPT_COLOURS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
                   (213, 94, 0), (204, 121, 167), (120, 120, 120))


def _colour(j: int) -> np.ndarray:
    return np.asarray(CONCEPT_COLOURS[j % len(CONCEPT_COLOURS)], dtype=np.float64)


def concept_overlay(image: np.ndarray, explanation: MutualExplanation, alpha: float = 0.55) -> np.ndarray:
    """The image with each concept's pixels tinted in its colour.

    Args:
        image: (H, W, 3) uint8.
        explanation: its :class:`MutualExplanation`.
        alpha: tint strength.

    Returns:
        (H, W, 3) uint8.
    """
    out = np.asarray(image, dtype=np.float64).copy()
    masks = explanation.masks.cpu().numpy().astype(bool)
    if masks.shape[-2:] != out.shape[:2]:
        raise ValueError(f"concept masks of {masks.shape[-2:]} do not match the image {out.shape[:2]}.")
    for j, mask in enumerate(masks):
        out[mask] = (1 - alpha) * out[mask] + alpha * _colour(j)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _wrap(text: str, width: int = 34) -> str:
    return textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)


#: Longest tick label of the MI curve (characters); longer descriptors end in an ellipsis.
_TICK_CHARS = 28


def _short(text: str, limit: int = _TICK_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _fit_panels(figure: Figure, axes_sizes, iterations: int = 2) -> None:
    """Resize ``figure`` so that each axes' layout cell gets its ``(width, height)`` in inches.

    The layout engine places the texts around the panels (titles, legend, tick labels) in margins whose size in
    inches does not depend on the figure's; the figure is measured once laid out and grown or shrunk by the
    difference, which after one correction gives the panels their size (a second absorbs the small relative
    paddings).
    """
    for _ in range(iterations):
        figure.canvas.draw()
        width, height = figure.get_size_inches()
        cells = [axis.get_position(original=True) for axis, _ in axes_sizes]
        got_width = sum(cell.width for cell in cells) * width
        got_height = max(cell.height for cell in cells) * height
        want_width = sum(size[0] for _, size in axes_sizes)
        want_height = max(size[1] for _, size in axes_sizes)
        figure.set_size_inches(whole_pixels(width + want_width - got_width, figure.dpi),
                               whole_pixels(height + want_height - got_height, figure.dpi))


def concept_figure(
    image: np.ndarray,
    explanation: MutualExplanation,
    title: Optional[str] = None,
    panel_size: float = 3.4,
    show_ellipses: bool = True,
) -> Figure:
    """Input | concepts with their descriptors | MI dynamics, for one image.

    The concept panel tints each concept and, optionally, outlines the ellipse of its visual prompt (clipped to
    the image: the panel keeps the input panel's size, position and limits). Its legend, below it, lists the
    concepts' descriptors, most important first. The curve panel plots MI after removing the t most important
    visual descriptors; each tick names the removed descriptor (vertical, cut at 28 characters), in red when it is
    mutual (also in D_ŷ); when there are more than the axis can label apart, only every k-th is named and the
    axis label says so. The figure's height grows to fit the legend and the labels, so nothing is cut.

    Args:
        image: (H, W, 3) uint8 picture the explanation refers to.
        explanation: a :class:`MutualExplanation`.
        title: figure title; default the explained class with MI and AUC.
        panel_size: height of the panels in inches (the image panels' width follows the image's aspect, the
            curve's is 1.35 x this).
        show_ellipses: draw the prompt ellipses.

    Returns:
        A matplotlib Figure on an Agg canvas (no pyplot state is touched).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8; got shape {image.shape}.")
    height, width = image.shape[:2]
    image_size = (panel_size * width / height, panel_size)
    curve_size = (1.35 * panel_size, panel_size)
    figure = Figure(figsize=(2 * image_size[0] + curve_size[0] + 1.2, panel_size + 2.0), dpi=110,
                    layout="constrained")
    FigureCanvasAgg(figure)
    figure.get_layout_engine().set(w_pad=0.06, h_pad=0.06, wspace=0.03)
    grid = figure.add_gridspec(1, 3, width_ratios=[image_size[0], image_size[0], curve_size[0]])
    ax_image, ax_concepts, ax_curve = (figure.add_subplot(grid[0, i]) for i in range(3))

    ax_image.imshow(image)
    ax_image.set_title("input", fontsize=10)
    ax_concepts.imshow(concept_overlay(image, explanation))
    ax_concepts.set_title(f"{explanation.n_concepts} visual concept(s)", fontsize=10)
    handles = []
    masks = explanation.masks.cpu().numpy()
    for j, descriptors in enumerate(explanation.concept_descriptors):
        colour = _colour(j) / 255
        # An outline keeps neighbouring concepts of similar tint apart.
        ax_concepts.contour(masks[j].astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.0)
        if show_ellipses and np.isfinite(explanation.ellipses[j]).all():
            cx, cy, e_width, e_height, angle = explanation.ellipses[j]
            ax_concepts.add_patch(Ellipse((cx, cy), e_width, e_height, angle=angle, fill=False, edgecolor=colour,
                                          linewidth=1.2, linestyle="--", clip_on=True))
        label = ", ".join(descriptors) if descriptors else "(no descriptor)"
        handles.append(Patch(facecolor=colour, edgecolor="none", label=_wrap(label)))
    # An ellipse reaching past the image would widen the autoscaled limits: a white band, and a panel no longer
    # matching the input's.
    ax_concepts.set_xlim(ax_image.get_xlim())
    ax_concepts.set_ylim(ax_image.get_ylim())
    if handles:
        ax_concepts.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7.5,
                           frameon=False, ncol=1, handlelength=1.0)
    for axis in (ax_image, ax_concepts):
        axis.set_xticks([])
        axis.set_yticks([])

    curve = explanation.mi_curve.cpu().numpy()
    steps = np.arange(len(curve))
    ax_curve.plot(steps, curve, color="#333333", marker="o", markersize=3.5, linewidth=1.4)
    ax_curve.fill_between(steps, curve, color="#56b4e9", alpha=0.25)
    mutual = set(explanation.mutual)
    removed = [d for d, _ in explanation.visual_descriptors]
    _label_ticks(ax_curve, removed, mutual, 1)
    ax_curve.set_xlim(-0.3, max(len(curve) - 0.7, 0.7))
    ax_curve.set_ylim(bottom=0)
    ax_curve.set_ylabel("mutual information", fontsize=9)
    ax_curve.set_xlabel("removed visual descriptor (most important first)", fontsize=8)
    ax_curve.set_title(f"MI dynamics (AUC {explanation.auc:.2f}); red = mutual", fontsize=10)
    ax_curve.tick_params(axis="y", labelsize=8)
    ax_curve.grid(alpha=0.3)

    full_title = (title if title is not None else
                  f"{explanation.target_name}: MI {explanation.mi:.2f}, AUC {explanation.auc:.2f}, "
                  f"{len(explanation.mutual)} mutual of {len(explanation.visual_descriptors)} visual descriptors")
    figure.suptitle(full_title, fontsize=11)
    _fit_panels(figure, [(ax_image, image_size), (ax_concepts, image_size), (ax_curve, curve_size)])
    step = _tick_step(figure, ax_curve) if removed else 1
    if step > 1:
        _label_ticks(ax_curve, removed, mutual, step)
        ax_curve.set_xlabel(f"removed visual descriptor (most important first; 1 in {step} named)", fontsize=8)
    return figure


def _label_ticks(axis, removed, mutual, step: int) -> None:
    """Tick t names the t-th removed descriptor (every ``step``-th only), in red when it is mutual."""
    axis.set_xticks(np.arange(1, len(removed) + 1))
    axis.set_xticklabels([_short(d) if t % step == 0 else "" for t, d in enumerate(removed)], rotation=90,
                         fontsize=7)
    for tick, descriptor in zip(axis.get_xticklabels(), removed):
        if descriptor in mutual:
            tick.set_color("#d55e00")


def _tick_step(figure: Figure, axis) -> int:
    """The smallest k such that every k-th tick label of the laid-out ``axis`` stands clear of the next."""
    renderer = figure.canvas.get_renderer()
    thickness = max(label.get_window_extent(renderer).width for label in axis.get_xticklabels())
    ticks = axis.get_xticks()
    if len(ticks) < 2:
        return 1
    spacing = abs(axis.transData.transform((ticks[1], 0))[0] - axis.transData.transform((ticks[0], 0))[0])
    return max(1, int(np.ceil(1.15 * thickness / spacing)))


def save_concept_figure(path: Union[str, Path], image: np.ndarray, explanation: MutualExplanation, **kwargs) -> Path:
    """:func:`concept_figure` written to ``path``; returns the path written (see :func:`~captum_clip.viz.save_figure`)."""
    return save_figure(concept_figure(image, explanation, **kwargs), path)
