"""Figures: saliency maps overlaid on the image, one panel per (method, query)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor


def to_display_images(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the CLIP normalisation: ``(N, 3, H, W)`` tensor -> ``(N, H, W, 3)`` uint8."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    pixels = (images * std_t + mean_t).clamp(0, 1)
    return (pixels.permute(0, 2, 3, 1).detach().cpu().numpy() * 255).round().astype(np.uint8)


def _normalised(saliency: np.ndarray) -> np.ndarray:
    low, high = float(saliency.min()), float(saliency.max())
    return (saliency - low) / (high - low) if high > low else np.zeros_like(saliency)


def display_range(maps: Union[np.ndarray, Tensor], signed: bool = False, outlier_perc: float = 0.0):
    """The colour range ``(vmin, vmax)`` that one scale over all of ``maps`` uses.

    Args:
        maps: any shape; every value shares the range (pass one method's ``(K, H, W)`` maps for a shared scale).
        signed: a range symmetric about zero (for maps whose sign means something, such as IG's).
        outlier_perc: the top ``outlier_perc`` percent of ``|map|`` saturate, as in Captum's visualiser.

    Returns:
        ``(vmin, vmax)`` floats with ``vmin < vmax``.
    """
    values = np.asarray(maps.detach().float().cpu() if isinstance(maps, Tensor) else maps, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    if signed:
        high = float(np.percentile(np.abs(values), 100 - outlier_perc))
        return (-high, high) if high > 0 else (-1.0, 1.0)
    low = float(values.min())
    high = float(np.percentile(values, 100 - outlier_perc)) if outlier_perc else float(values.max())
    return (low, high) if high > low else (low, low + 1.0)


def overlay_rgb(image: np.ndarray, saliency: Union[np.ndarray, Tensor], vmin: float, vmax: float,
                cmap: str = "viridis", alpha: float = 0.5, outline: Optional[np.ndarray] = None) -> np.ndarray:
    """One map blended over its image as pixels (for thumbnails and pages, where no axes are drawn).

    Args:
        image: ``(H, W, 3)`` uint8.
        saliency: ``(H, W)`` map, coloured over ``[vmin, vmax]`` (values outside saturate).
        vmin, vmax: the colour range, e.g. from :func:`display_range`.
        cmap: a matplotlib colour map name.
        alpha: weight of the map's colour.
        outline: optional ``(H, W)`` bool ground-truth mask; its boundary is drawn in white.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    from matplotlib import colormaps
    from skimage.segmentation import find_boundaries

    saliency = np.asarray(saliency.detach().float().cpu() if isinstance(saliency, Tensor) else saliency,
                          dtype=np.float64)
    scaled = np.clip((saliency - vmin) / (vmax - vmin), 0.0, 1.0)
    colours = colormaps[cmap](scaled)[..., :3]
    blended = (1 - alpha) * np.asarray(image, dtype=np.float64) / 255 + alpha * colours
    if outline is not None:
        blended[find_boundaries(np.asarray(outline, dtype=bool), mode="inner")] = 1.0
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)


def overlay_figure(
    image: np.ndarray,
    maps: Mapping[str, Union[np.ndarray, Tensor]],
    queries: Sequence[str],
    title: Optional[str] = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel_size: float = 2.6,
) -> Figure:
    """One row per method, the input then one overlay per query.

    Args:
        image: ``(H, W, 3)`` uint8 picture the maps refer to.
        maps: method name -> ``(K, H, W)`` maps (``(K, 1, H, W)`` is squeezed), K = len(queries).
            Each panel is min-max scaled for display.
        queries: the K query texts (column titles).

    Returns:
        A matplotlib Figure (Agg canvas; no pyplot state is touched).
    """
    rows, columns = len(maps), len(queries) + 1
    figure = Figure(figsize=(panel_size * columns, panel_size * rows + (0.4 if title else 0)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False)
    for row, (method, method_maps) in enumerate(maps.items()):
        method_maps = np.asarray(method_maps.detach().cpu() if isinstance(method_maps, Tensor) else method_maps)
        method_maps = method_maps.reshape(len(queries), *method_maps.shape[-2:])
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(method, fontsize=11)
        axes[row, 0].set_title("input" if row == 0 else "", fontsize=10)
        for column, query in enumerate(queries, start=1):
            axes[row, column].imshow(image)
            axes[row, column].imshow(_normalised(method_maps[column - 1]), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
            axes[row, column].set_title(query if row == 0 else "", fontsize=10)
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def save_figure(figure, path: Union[str, Path]) -> Path:
    """Write a matplotlib figure and return the path of the file it actually wrote.

    The format comes from the suffix; a path without one gets ``.png`` (matplotlib would append it silently,
    and a caller reporting ``path`` would name a file that does not exist).

    Raises:
        ValueError: a suffix that matplotlib cannot write.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    supported = figure.canvas.get_supported_filetypes()
    if path.suffix[1:].lower() not in supported:
        raise ValueError(f"cannot write a figure as {path.suffix!r} ({path}); use one of "
                         f"{', '.join('.' + s for s in sorted(supported))}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def save_overlay(path: Union[str, Path], *args, **kwargs) -> Path:
    """:func:`overlay_figure` written to ``path``; returns the path written (see :func:`save_figure`)."""
    return save_figure(overlay_figure(*args, **kwargs), path)


__all__ = ["display_range", "overlay_figure", "overlay_rgb", "save_figure", "save_overlay", "to_display_images"]
