"""Figures: saliency maps overlaid on the image, one panel per (method, query)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

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


def _as_array(values: Union[np.ndarray, Tensor]) -> np.ndarray:
    return np.asarray(values.detach().float().cpu() if isinstance(values, Tensor) else values, dtype=np.float64)


def display_range(maps: Union[np.ndarray, Tensor], signed: bool = False, outlier_perc: float = 0.0):
    """The colour range ``(vmin, vmax)`` that one scale over all of ``maps`` uses.

    ``outlier_perc`` is counted in values (pixels): its top percent saturate. Captum's ``visualize_image_attr``
    instead saturates the largest values that *hold* that share of the total ``|map|`` (its
    ``_cumulative_sum_threshold``), which on a sparse gradient map clips almost nothing (the top 2 % of the mass of
    an IG map of a shipped-model scene is one or two of its 4096 pixels) and leaves it as dark as without
    clipping; a share of the pixels means the same whatever the map's distribution.

    Args:
        maps: any shape; every value shares the range (pass one method's ``(K, H, W)`` maps for a shared scale).
        signed: a range symmetric about zero (for maps whose sign means something, such as IG's with the "sum"
            channel reduction), the percentile taken over ``|map|``.
        outlier_perc: the top ``outlier_perc`` percent of the values (of ``|map|`` when signed) saturate; 0
            keeps the full range.

    Returns:
        tuple[float, float]: ``(vmin, vmax)`` with ``vmin < vmax``.
    """
    values = _as_array(maps)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    if signed:
        magnitudes = np.abs(values)
        high = float(np.percentile(magnitudes, 100 - outlier_perc))
        # A sparse map (most values 0) has a zero percentile: its own peak is the range then, not a guess.
        high = high if high > 0 else float(magnitudes.max())
        return (-high, high) if high > 0 else (-1.0, 1.0)
    low = float(values.min())
    high = float(np.percentile(values, 100 - outlier_perc)) if outlier_perc else float(values.max())
    high = high if high > low else float(values.max())
    if high > low:
        return low, high
    # A constant map: any range around its value, wide enough to stay a range in float64 at its magnitude.
    return low, low + max(1.0, abs(low) * 1e-6)


def overlay_rgb(image: np.ndarray, saliency: Union[np.ndarray, Tensor], vmin: float, vmax: float,
                cmap: str = "viridis", alpha: float = 0.5, outline: Optional[np.ndarray] = None,
                grey: bool = True) -> np.ndarray:
    """One map blended over its image as pixels (for thumbnails and pages, where no axes are drawn).

    Args:
        image: ``(H, W, 3)`` uint8.
        saliency: ``(H, W)`` map, coloured over ``[vmin, vmax]`` (values outside saturate).
        vmin: the low end of the colour range, e.g. from :func:`display_range`.
        vmax: its high end.
        cmap: a matplotlib colour map name.
        alpha: weight of the map's colour.
        outline: optional ``(H, W)`` bool ground-truth mask; its boundary is drawn in white.
        grey: blend over a grey-scale copy of the image, as the figures do, so that the map's colours are not
            confused with the image's.

    Returns:
        ``(H, W, 3)`` uint8.
    """
    from matplotlib import colormaps
    from skimage.segmentation import find_boundaries

    saliency = _as_array(saliency)
    scaled = np.clip((saliency - vmin) / (vmax - vmin), 0.0, 1.0)
    colours = colormaps[cmap](scaled)[..., :3]
    base = np.asarray(image, dtype=np.float64) / 255
    if grey:
        base = np.repeat(base.mean(axis=-1, keepdims=True), 3, axis=-1)
    blended = (1 - alpha) * base + alpha * colours
    if outline is not None:
        blended[find_boundaries(np.asarray(outline, dtype=bool), mode="inner")] = 1.0
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)


#: Font sizes (points) of the overlay figure's texts; the figure's size is computed from them.
_TITLE_PT, _NOTE_PT, _TICK_PT, _LABEL_PT, _SUPTITLE_PT = 9.0, 7.0, 7.0, 10.0, 11.0
#: Height of a horizontal colour bar, width of a vertical one (inches).
_BAR_IN = 0.11


def line_inches(points: float, lines: int = 1) -> float:
    # matplotlib's default line spacing is 1.2 em; the extra 0.05 em absorbs descenders.
    return lines * points * 1.25 / 72


def whole_pixels(inches: float, dpi: float) -> float:
    """``inches`` rounded up to whole pixels at ``dpi``.

    Agg truncates ``inches * dpi`` to an int, so a fractional size loses a pixel row, and so can ``n / dpi``
    itself when its product with ``dpi`` rounds to just below ``n``; the next float up cannot.
    """
    pixels = math.ceil(inches * dpi - 1e-6)
    size = pixels / dpi
    return size if size * dpi >= pixels else float(np.nextafter(size, np.inf))


def wrap_to_width(text: str, width_inches: float, points: float, max_lines: int = 4) -> str:
    """``text`` re-wrapped (keeping its own line breaks) to fit ``width_inches`` at ``points``, at most
    ``max_lines`` lines, the last ending in an ellipsis when cut."""
    # DejaVu Sans, matplotlib's default font, averages under 0.6 em per character of mixed-case text.
    chars = max(8, int(width_inches * 72 / (0.6 * points)))
    lines = [wrapped for line in str(text).split("\n")
             for wrapped in (textwrap.wrap(line, chars, break_long_words=True, break_on_hyphens=True) or [""])]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: chars - 1].rstrip() + "…"
    return "\n".join(lines)


def _signed_names(signed: Union[Mapping[str, bool], Iterable[str], str]) -> set:
    if isinstance(signed, Mapping):
        return {name for name, value in signed.items() if value}
    return {signed} if isinstance(signed, str) else set(signed)


def _check_names(option: str, names, methods) -> None:
    # A misspelt method name would silently fall back to the default scale; say so instead.
    unknown = sorted(set(names) - set(methods))
    if unknown:
        raise ValueError(f"{option} names {unknown}, which are not among the maps' methods {list(methods)}.")


def _tick_formatter(vmin: float, vmax: float):
    from matplotlib.ticker import FuncFormatter

    # Ticks computed as multiples can land at 1e-17 instead of 0; "-0" and "5.6e-17" would mislead.
    tiny = 1e-6 * (vmax - vmin)
    return FuncFormatter(lambda value, _: f"{0.0 if abs(value) < tiny else value:.3g}")


def _colour_bar(figure: Figure, heat, cax, vertical: bool, values: np.ndarray, signed: bool):
    """A colour bar of ``heat``'s scale in ``cax``; its ends are arrows where ``values`` saturate."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.ticker import MaxNLocator

    vmin, vmax = heat.get_clim()
    finite = values[np.isfinite(values)]
    below, above = bool(finite.size and finite.min() < vmin), bool(finite.size and finite.max() > vmax)
    extend = ("both" if above else "min") if below else ("max" if above else "neither")
    # Its own mappable (same norm and colour map) draws the bar opaque: the overlay's alpha would wash it out.
    bar = figure.colorbar(ScalarMappable(norm=heat.norm, cmap=heat.get_cmap()), cax=cax, extend=extend,
                          orientation="vertical" if vertical else "horizontal")
    bar.locator = MaxNLocator(nbins=5 if vertical else 3, symmetric=signed)
    bar.formatter = _tick_formatter(vmin, vmax)
    bar.update_ticks()
    bar.ax.tick_params(labelsize=_TICK_PT, length=2, pad=1.5)
    return bar


def overlay_figure(
    image: np.ndarray,
    maps: Mapping[str, Union[np.ndarray, Tensor]],
    queries: Sequence[str],
    title: Optional[str] = None,
    alpha: float = 0.5,
    cmap: str = "viridis",
    panel_size: float = 2.6,
    *,
    signed: Union[Mapping[str, bool], Iterable[str]] = (),
    outlier_perc: Union[Mapping[str, float], float] = 0.0,
    shared_scale: bool = False,
    signed_cmap: str = "RdBu_r",
    panel_notes: Optional[Mapping[str, Sequence[str]]] = None,
    dpi: int = 100,
) -> Figure:
    """One row per method, the input then one overlay per query, each map on a colour bar of its values.

    The display follows Captum's ``visualize_image_attr`` ("blended_heat_map"): the map is blended over the
    grey-scale input, outliers saturate (``outlier_perc``) and a signed map is shown on a diverging colour map
    centred at zero. Captum's function itself is not called: it scales every panel alone, its colour bar reads in
    scaled units, and its outlier rule clips almost nothing on sparse maps (see :func:`display_range`). Here the
    scale can be one per method row (``shared_scale``) and the bars show the maps' own values, with an arrow end
    where values saturate.

    Args:
        image: ``(H, W, 3)`` uint8 picture the maps refer to.
        maps: method name -> ``(K, H', W')`` maps (``(K, 1, H', W')`` is squeezed), K = len(queries); a map of
            another resolution than the image is stretched over it.
        queries: the K query texts (column titles; wrapped to the panel width, at most 4 lines).
        title: figure title.
        alpha: weight of the map's colour over the grey-scale image.
        cmap: colour map of unsigned maps (perceptually uniform by default).
        panel_size: inches per panel (its width; the height follows the image's aspect).
        signed: the methods whose maps are signed (names, or a name -> bool mapping): their range is symmetric
            about zero and drawn with ``signed_cmap``.
        outlier_perc: percent of each map's values that saturate (see :func:`display_range`), one value for all
            methods or per method name (methods left out get 0: no clipping). The CLI passes each method's
            ``display_outlier_perc`` (2, Captum's default, for the gradient methods; 0 for similarity maps).
        shared_scale: one colour range per method row over all its queries, with one colour bar at the row's
            end (compares a method's queries); False (default) scales each panel alone, each with its own bar.
        signed_cmap: colour map of signed maps (diverging).
        panel_notes: method name -> K captions written under that row's panels (e.g. the concept a query
            resolved to).
        dpi: the figure's resolution; the image is ``figsize * dpi`` pixels.

    Returns:
        A matplotlib Figure (Agg canvas; no pyplot state is touched).

    Raises:
        ValueError: ``signed``, ``outlier_perc`` or ``panel_notes`` name a method that ``maps`` lacks, or notes
            of another length than ``queries``.
    """
    image = np.asarray(image)
    queries = [str(query) for query in queries]
    methods = list(maps)
    signed_methods = _signed_names(signed)
    per_method_perc = dict(outlier_perc) if isinstance(outlier_perc, Mapping) else {}
    default_perc = 0.0 if isinstance(outlier_perc, Mapping) else float(outlier_perc)
    panel_notes = {name: list(notes) for name, notes in (panel_notes or {}).items()}
    for option, names in (("signed", signed_methods), ("outlier_perc", per_method_perc), ("panel_notes", panel_notes)):
        _check_names(option, names, methods)
    if any(len(notes) != len(queries) for notes in panel_notes.values()):
        raise ValueError(f"panel_notes need one caption per query ({len(queries)}).")

    height, width = image.shape[:2]
    panel_width, panel_height = panel_size, panel_size * height / width
    rows, columns = len(methods), len(queries) + 1
    titles = [wrap_to_width(query, panel_width, _TITLE_PT) for query in queries]
    notes = {name: [wrap_to_width(note, panel_width, _NOTE_PT) for note in captions] for name, captions in panel_notes.items()}
    note_lines = [max((note.count("\n") + 1 for note in notes.get(name, [])), default=0) for name in methods]
    title_lines = max([1] + [t.count("\n") + 1 for t in titles])
    # Inches beyond the panels, from the texts' font sizes: the layout engine then only places them.
    bar_band = _BAR_IN + line_inches(_TICK_PT) + 0.12 if not shared_scale else 0.0
    bar_column = _BAR_IN + 0.55 if shared_scale else 0.0
    figure_width = columns * (panel_width + 0.08) + line_inches(_LABEL_PT) + bar_column + 0.25
    title = wrap_to_width(title, figure_width - 0.3, _SUPTITLE_PT, max_lines=3) if title else None
    figure_height = (sum(panel_height + 0.12 + bar_band + line_inches(_NOTE_PT, n) for n in note_lines)
                     + line_inches(_TITLE_PT, title_lines) + 0.15
                     + (line_inches(_SUPTITLE_PT, title.count("\n") + 1) + 0.1 if title else 0.0))
    figure = Figure(figsize=(whole_pixels(figure_width, dpi), whole_pixels(figure_height, dpi)), dpi=dpi,
                    layout="constrained")
    FigureCanvasAgg(figure)
    figure.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    if shared_scale:
        grid = figure.add_gridspec(rows, columns + 1, width_ratios=[panel_width] * columns + [_BAR_IN])
    else:
        grid = figure.add_gridspec(2 * rows, columns, height_ratios=[panel_height, _BAR_IN] * rows)
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)

    for row, method in enumerate(methods):
        values = _as_array(maps[method])
        values = values.reshape(len(queries), *values.shape[-2:])
        is_signed = method in signed_methods
        perc = float(per_method_perc.get(method, default_perc))
        ranges = ([display_range(values, is_signed, perc)] * len(queries) if shared_scale
                  else [display_range(panel, is_signed, perc) for panel in values])
        image_row = row if shared_scale else 2 * row
        axis = figure.add_subplot(grid[image_row, 0])
        axis.imshow(image)
        axis.set_ylabel(method, fontsize=_LABEL_PT)
        axis.set_title("input" if row == 0 else "", fontsize=_TITLE_PT)
        panels = [axis]
        for k, (vmin, vmax) in enumerate(ranges):
            axis = figure.add_subplot(grid[image_row, k + 1])
            # Captum's blended heat map: the map over the grey input, so the map's colours are not confused with
            # the image's.
            axis.imshow(grey, cmap="gray", vmin=0, vmax=255)
            heat = axis.imshow(values[k], cmap=signed_cmap if is_signed else cmap, vmin=vmin, vmax=vmax,
                               alpha=alpha, extent=extent, interpolation="nearest")
            axis.set_title(titles[k] if row == 0 else "", fontsize=_TITLE_PT)
            if method in notes:
                axis.set_xlabel(notes[method][k], fontsize=_NOTE_PT, labelpad=2)
            if not shared_scale:
                _colour_bar(figure, heat, figure.add_subplot(grid[image_row + 1, k + 1]), False, values[k],
                            is_signed)
            panels.append(axis)
        if shared_scale:
            _colour_bar(figure, heat, figure.add_subplot(grid[row, columns]), True, values, is_signed)
        for axis in panels:
            axis.set_xticks([])
            axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=_SUPTITLE_PT)
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


__all__ = ["display_range", "overlay_figure", "overlay_rgb", "save_figure", "save_overlay",
           "to_display_images"]
