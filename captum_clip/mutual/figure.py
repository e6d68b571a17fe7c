"""Figure of one mutual-knowledge explanation: coloured concepts with their descriptors, and the MI dynamics."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Patch

from ..viz import save_figure
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
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def concept_figure(
    image: np.ndarray,
    explanation: MutualExplanation,
    title: Optional[str] = None,
    panel_size: float = 3.4,
    show_ellipses: bool = True,
) -> Figure:
    """Input | concepts with their descriptors | MI dynamics, for one image.

    The concept panel tints each concept (most important first in the legend) and, optionally, outlines the
    ellipse of its visual prompt. The curve panel plots MI after removing the t most important visual
    descriptors; tick labels name the removed descriptor, in red when it is mutual (also in D_ŷ).

    Args:
        image: (H, W, 3) uint8 picture the explanation refers to.
        explanation: a :class:`MutualExplanation`.
        title: figure title; default the explained class with MI and AUC.
        panel_size: inches per panel.
        show_ellipses: draw the prompt ellipses.

    Returns:
        A matplotlib Figure on an Agg canvas (no pyplot state is touched).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8; got shape {image.shape}.")
    figure = Figure(figsize=(3 * panel_size + 1.2, panel_size + 1.9), dpi=110)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(1, 3, width_ratios=[1, 1, 1.35], left=0.03, right=0.98, top=0.86, bottom=0.36,
                               wspace=0.12)
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
            cx, cy, width, height, angle = explanation.ellipses[j]
            ax_concepts.add_patch(Ellipse((cx, cy), width, height, angle=angle, fill=False, edgecolor=colour,
                                          linewidth=1.2, linestyle="--"))
        label = ", ".join(descriptors) if descriptors else "(no descriptor)"
        handles.append(Patch(facecolor=colour, edgecolor="none", label=_wrap(label)))
    if handles:
        ax_concepts.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.03), fontsize=7.5,
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
    ax_curve.set_xticks(steps[1:])
    ax_curve.set_xticklabels([_wrap(d, 22) for d in removed], rotation=70, ha="right", fontsize=6.5)
    for tick, descriptor in zip(ax_curve.get_xticklabels(), removed):
        if descriptor in mutual:
            tick.set_color("#d55e00")
    ax_curve.set_xlim(-0.3, max(len(curve) - 0.7, 0.7))
    ax_curve.set_ylim(bottom=0)
    ax_curve.set_ylabel("mutual information", fontsize=9)
    ax_curve.set_title(f"MI dynamics (AUC {explanation.auc:.2f}); red = mutual", fontsize=10)
    ax_curve.tick_params(axis="y", labelsize=8)
    ax_curve.grid(alpha=0.3)

    figure.suptitle(title if title is not None else
                    f"{explanation.target_name}: MI {explanation.mi:.2f}, AUC {explanation.auc:.2f}, "
                    f"{len(explanation.mutual)} mutual of {len(explanation.visual_descriptors)} visual descriptors",
                    fontsize=11)
    return figure


def save_concept_figure(path: Union[str, Path], image: np.ndarray, explanation: MutualExplanation, **kwargs) -> Path:
    """:func:`concept_figure` written to ``path``; returns the path written (see :func:`~captum_clip.viz.save_figure`)."""
    return save_figure(concept_figure(image, explanation, **kwargs), path)
