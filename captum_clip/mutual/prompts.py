"""Ellipse fit of each visual concept and the three "red circle" visual prompts (stage (b1)-(b2)).

Each concept mask is summarised by the least-squares ellipse of its largest external contour (OpenCV's
``fitEllipse``; scikit-image's ``EllipseModel`` is a different, direct fit and misses by up to 40 px on blocky
masks). The ellipse is drawn on the image in red (Shtedritski et al.), optionally with the outside greyed or
blurred; CLIP then encodes the three images and their mean is the concept embedding.

Ellipses are (cx, cy, width, height, angle) in OpenCV's ``RotatedRect`` convention: x = column, y = row, full axis
lengths, angle in degrees. A row of NaN marks "no ellipse" (empty concept mask).

Two renderers draw the prompts, with identical pixels:

* ``renderer="torch"`` (default): tensor ops over all (image, concept) pairs at once, on the images' device. The
  ellipses are rasterised the way OpenCV 5's ``cv2.ellipse`` does it: the 5°/18°/30°/90° polygon of
  ``ellipse2Poly`` in 16-bit fixed point, its convex scan-line fill (which also draws the polygon with the
  fixed-point ``Line2``) and, for the outline, Bresenham lines between the rounded vertices. Greyscale is
  ``cvtColor``'s fixed-point RGB→GRAY and the blur is ``GaussianBlur``'s bit-exact fixed-point filter
  (reflect-101 border), both in integer-exact float arithmetic. Grey and blur are computed once per image and
  composed with the masks per pair. The result equals OpenCV's bit for bit (``tests/mutual/test_vectorised.py``
  checks it against the installed OpenCV on random, border-crossing, tiny and degenerate ellipses; the golden
  prompts, made with OpenCV 5.0, are reproduced exactly). Other OpenCV versions may differ by a few pixels (older
  sources draw thin outlines with ``Line2`` too and grey with 14-bit coefficients); the tests that compare with
  the installed OpenCV skip below version 5.
* ``renderer="opencv"``: the reference's own calls, one ``cv2.ellipse`` per (image, concept) in a Python loop.

Outlines thicker than 1 px and ellipses larger than 16384 px are drawn with OpenCV in both renderers; the ellipse
fit (:func:`fit_concept_ellipses`) always uses OpenCV. On the CPU the tensor renderer costs about what the cv2
loop does at 224 px (and ~2 ms more per batch of 8 images at 64 px); it is meant for a model on a GPU, where the
prompts are made where they are encoded, without a host round trip.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "RENDERERS",
    "VisualPrompts",
    "EllipseMasks",
    "PromptLayers",
    "VisualPromptStack",
    "denormalize_to_uint8",
    "normalize_uint8_images",
    "largest_external_contour",
    "fit_ellipse",
    "fit_concept_ellipses",
    "ellipse_masks",
    "ellipse_fill_masks",
    "gray_uint8",
    "gaussian_kernel_q8",
    "gaussian_blur_uint8",
    "prompt_layers",
    "compose_visual_prompts",
    "render_visual_prompts",
    "concept_embedding",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RED = (255, 0, 0)
#: Prompt renderers: the tensor one (default) and the reference's OpenCV loop; their pixels are identical.
RENDERERS = ("torch", "opencv")


class VisualPrompts(NamedTuple):
    """The three prompts per concept, each (B, L, H, W, 3) uint8 RGB.

    Attributes:
        red: ellipse outline on the image.
        gray: outside the filled ellipse greyscale, then the outline.
        blur: outside the filled ellipse Gaussian-blurred, then the outline.
    """

    red: np.ndarray
    gray: np.ndarray
    blur: np.ndarray


class EllipseMasks(NamedTuple):
    """Pixels ``cv2.ellipse`` sets for each ellipse, (..., H, W) bool tensors (all False for NaN ellipses).

    Attributes:
        fill: ``thickness=-1`` (the prompts' inside region; it contains the outline).
        outline: the outline at the requested thickness.
    """

    fill: Tensor
    outline: Tensor


def _check_renderer(renderer: str) -> None:
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}; got {renderer!r}.")


def denormalize_to_uint8(
    images: Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD, as_tensor: bool = False
) -> Union[np.ndarray, Tensor]:
    """The uint8 image the reference draws its prompts on: de-normalise, clip to [0, 1], x255, *truncate*.

    Done in float64 like the reference (numpy mean/std arrays), which makes about half of the channel values come
    out exactly 1 below the original pixel. Pass original uint8 pixels to :func:`render_visual_prompts` instead
    if that darkening is not wanted.

    Args:
        images: (B, 3, H, W) or (3, H, W) normalised float images.
        mean, std: per-channel normalisation constants (CLIP's by default).
        as_tensor: return a uint8 tensor on the images' device (same values) instead of a numpy array.

    Returns:
        (B, H, W, 3) or (H, W, 3) uint8 RGB.
    """
    if as_tensor:
        x = images.detach().movedim(-3, -1).to(torch.float64)
        s = torch.tensor(std, dtype=torch.float64, device=x.device)
        m = torch.tensor(mean, dtype=torch.float64, device=x.device)
        return (s * x + m).clamp(0, 1).mul(255).to(torch.uint8).contiguous()
    x = images.detach().to("cpu").numpy()
    x = np.moveaxis(x, -3, -1).astype(np.float64)
    x = np.asarray(std, dtype=np.float64) * x + np.asarray(mean, dtype=np.float64)
    return np.ascontiguousarray(np.clip(x, 0, 1) * 255, dtype=np.uint8)


def normalize_uint8_images(
    images: Union[np.ndarray, Tensor], mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> Tensor:
    """``ToTensor`` + ``Normalize`` of uint8 RGB images (the prompts' re-encoding transform at the same size).

    Args:
        images: (..., H, W, 3) uint8, a numpy array or a tensor (kept on its device).

    Returns:
        (..., 3, H, W) float32 tensor.
    """
    x = images if isinstance(images, Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    # One channels-first copy, then in-place steps: the same bits as ToTensor + Normalize, 3x faster on CPU than
    # chaining them on the strided view.
    x = x.movedim(-1, -3).to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return x.div_(255).sub_(m).div_(s)


def largest_external_contour(mask: np.ndarray) -> np.ndarray | None:
    """Largest-area external contour of a binary mask (the paper's "largest connected region" fix).

    Contours are OpenCV's (``RETR_EXTERNAL``, ``CHAIN_APPROX_NONE``). Equal areas keep the first contour in
    OpenCV's list, as the reference's ``max(..., key=cv2.contourArea)`` does.

    Args:
        mask: (H, W) bool/uint8.

    Returns:
        (P, 2) int32 (x, y) points, or None when the mask is empty.
    """
    contours, _ = cv2.findContours(
        np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    if not contours:
        return None
    areas = np.array([cv2.contourArea(c) for c in contours])
    return contours[int(np.argmax(areas))].reshape(-1, 2)


def _box_ellipse(points: np.ndarray) -> np.ndarray:
    # Axis-aligned ellipse inscribed in the pixels' bounding box, in fitEllipse's width <= height convention.
    lo, hi = points.min(axis=0).astype(np.float64), points.max(axis=0).astype(np.float64)
    cx, cy = (lo + hi) / 2
    w, h = hi - lo + 1
    return np.array([cx, cy, w, h, 0.0]) if w <= h else np.array([cx, cy, h, w, 90.0])


def _line_ellipse(points: np.ndarray, direction: np.ndarray) -> np.ndarray:
    # One pixel wide, as long as the pixel run; the (short) width axis is perpendicular to the line.
    proj = points @ direction
    lo, hi = proj.min(), proj.max()
    cx, cy = points.mean(axis=0) + ((lo + hi) / 2 - proj.mean()) * direction
    angle = (np.degrees(np.arctan2(direction[1], direction[0])) + 90.0) % 180.0
    return np.array([cx, cy, 1.0, hi - lo + 1.0, angle])


def fit_ellipse(points: np.ndarray) -> np.ndarray:
    """``cv2.fitEllipse`` with deterministic guards for the inputs it cannot fit.

    * Collinear points (a 1-pixel-wide straight region): OpenCV's fit is ill-posed there and perturbs the
      points with its global RNG, so repeated calls return different ellipses. Such regions get a 1-pixel-wide
      ellipse spanning the run of pixels instead.
    * Fewer than 5 points (regions of a few pixels): the reference pads with random points (and crashes when the
      last point has x or y = 0); here they get the axis-aligned ellipse inscribed in their pixel bounding box.
    * A non-finite fit falls back to that bounding-box ellipse too.

    Args:
        points: (P, 2) (x, y) pixel coordinates.

    Returns:
        (5,) float64 (cx, cy, width, height, angle_deg).
    """
    pts = np.ascontiguousarray(points, dtype=np.int32).reshape(-1, 2)
    centred = pts - pts.mean(axis=0)
    evals, evecs = np.linalg.eigh(centred.T @ centred)
    if evals[0] <= 1e-9 * max(evals[1], 1.0):
        return _line_ellipse(pts.astype(np.float64), evecs[:, 1])
    if len(pts) < 5:
        return _box_ellipse(pts)
    (cx, cy), (w, h), angle = cv2.fitEllipse(pts.reshape(-1, 1, 2))
    out = np.array([cx, cy, w, h, angle], dtype=np.float64)
    if not np.all(np.isfinite(out)):
        return _box_ellipse(pts)
    return out


def fit_concept_ellipses(masks: np.ndarray | Tensor) -> np.ndarray:
    """Ellipse of the largest external contour of every concept mask.

    Args:
        masks: (..., H, W) bool concept masks, e.g. (B, L, H, W) from
            :func:`~captum_clip.mutual.parts.concept_pixel_masks`.

    Returns:
        (..., 5) float64 (cx, cy, width, height, angle_deg); NaN rows for empty masks.
    """
    if isinstance(masks, Tensor):
        masks = masks.detach().to("cpu").numpy()
    masks = np.asarray(masks)
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, *masks.shape[-2:])
    out = np.full((flat.shape[0], 5), np.nan)
    for i in np.flatnonzero(flat.reshape(flat.shape[0], -1).any(axis=1)):
        out[i] = fit_ellipse(largest_external_contour(flat[i]))
    return out.reshape(*lead, 5)


# --------------------------------------------------------------------------------- tensor rasteriser
# Integer arithmetic of OpenCV's drawing code (imgproc/src/drawing.cpp): coordinates are int64 with 16 fractional
# bits, C's truncating division is torch's "trunc" rounding, ">>" on int64 tensors is C's arithmetic shift.

_SHIFT = 16
_ONE = 1 << _SHIFT
_HALF = _ONE >> 1
#: Ellipses whose centre or axes exceed this many pixels are drawn by OpenCV (the int64 products of the
#: line clipping would overflow where OpenCV's wrap).
_HUGE = 16384.0


@lru_cache(maxsize=None)
def _sin_table_np() -> np.ndarray:
    # OpenCV's drawing table: sin of 0..450 whole degrees to 7 decimals, as float32 (index 360 is -0).
    return np.round(np.sin(np.deg2rad(np.arange(451, dtype=np.float64))), 7).astype(np.float32)


def _sin_table(device) -> Tensor:
    return torch.from_numpy(_sin_table_np()).to(device=device, dtype=torch.float64)


def _tdiv(a: Tensor, b: Tensor) -> Tensor:
    return torch.div(a, b, rounding_mode="trunc")


def _ellipse_polygons(ellipses: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Vertices ``cv2.ellipse(img, RotatedRect, ...)`` draws, consecutive duplicates removed.

    Args:
        ellipses: (N, 5) finite float64.

    Returns:
        ``(x, y, n)``: (N, P) int64 fixed-point vertices (valid up to n) and (N,) vertex counts.
    """
    device = ellipses.device
    f = ellipses.to(torch.float32)  # RotatedRect holds floats
    cx, cy, w, h, ang = f.unbind(-1)
    angle = torch.round(ang).to(torch.int64)  # cvRound(box.angle): whole degrees, ties to even

    def fixed(v: Tensor, scale: int) -> Tensor:  # (cvRound(v) << s) + cvRound((v - cvRound(v)) * 2^s), in float
        r = torch.round(v)
        return r.to(torch.int64) * scale + torch.round((v - r) * scale).to(torch.int64)

    center_x, center_y = fixed(cx, _ONE), fixed(cy, _ONE)
    axis_w, axis_h = fixed(w, _HALF).abs(), fixed(h, _HALF).abs()  # semi-axes
    size = (torch.maximum(axis_w, axis_h) + _HALF) >> _SHIFT
    delta = torch.where(size < 3, 90, torch.where(size < 10, 30, torch.where(size < 15, 18, 5)))

    table = _sin_table(device)
    a = torch.remainder(angle, 360)
    a = torch.where((a == 0) & (angle > 0), torch.full_like(a, 360), a)
    alpha, beta = table[450 - a][:, None], table[a][:, None]  # cos, sin
    steps = torch.arange(73, device=device)
    t = steps[None, :] * delta[:, None]
    in_arc = t <= 360
    t = t.clamp(max=360)
    px = axis_w.to(torch.float64)[:, None] * table[450 - t]
    py = axis_h.to(torch.float64)[:, None] * table[t]
    vx = (center_x.to(torch.float64)[:, None] + px * alpha) - py * beta
    vy = (center_y.to(torch.float64)[:, None] + px * beta) + py * alpha

    def to_fixed(v: Tensor) -> Tensor:
        hi = torch.round(v / _ONE).to(torch.int64) * _ONE
        return hi + torch.round(v - hi.to(torch.float64)).to(torch.int64)

    x, y = to_fixed(vx), to_fixed(vy)
    prev_x = torch.cat([torch.full_like(x[:, :1], -1), x[:, :-1]], dim=1)
    prev_y = torch.cat([torch.full_like(y[:, :1], -1), y[:, :-1]], dim=1)
    keep = in_arc & ((x != prev_x) | (y != prev_y))
    order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
    x, y, n = x.gather(1, order), y.gather(1, order), keep.sum(dim=1)
    # A polygon that collapsed to one point is drawn as the centre, twice.
    one = n == 1
    x[:, :2] = torch.where(one[:, None], center_x[:, None], x[:, :2])
    y[:, :2] = torch.where(one[:, None], center_y[:, None], y[:, :2])
    return x, y, torch.where(one, torch.full_like(n, 2), n)


def _clip_lines(x1, y1, x2, y2, right: int, bottom: int):
    """OpenCV's ``clipLine`` on fixed-point segments: clipped end points and whether anything is left."""

    def code(x, y):
        return (x < 0).long() + (x > right).long() * 2 + (y < 0).long() * 4 + (y > bottom).long() * 8

    def hcode(x):
        return (x < 0).long() + (x > right).long() * 2

    one = torch.ones_like(x1)
    c1, c2 = code(x1, y1), code(x2, y2)
    go = ((c1 & c2) == 0) & ((c1 | c2) != 0)
    s = go & ((c1 & 12) != 0)
    a = torch.where(c1 < 8, 0, bottom)
    x1 = torch.where(s, x1 + _tdiv((a - y1) * (x2 - x1), torch.where(s, y2 - y1, one)), x1)
    y1 = torch.where(s, a, y1)
    c1 = torch.where(s, hcode(x1), c1)
    s = go & ((c2 & 12) != 0)
    a = torch.where(c2 < 8, 0, bottom)
    x2 = torch.where(s, x2 + _tdiv((a - y2) * (x2 - x1), torch.where(s, y2 - y1, one)), x2)
    y2 = torch.where(s, a, y2)
    c2 = torch.where(s, hcode(x2), c2)
    go = go & ((c1 & c2) == 0) & ((c1 | c2) != 0)
    s = go & (c1 != 0)
    a = torch.where(c1 == 1, 0, right)
    y1 = torch.where(s, y1 + _tdiv((a - x1) * (y2 - y1), torch.where(s, x2 - x1, one)), y1)
    x1 = torch.where(s, a, x1)
    c1 = torch.where(s, 0, c1)
    s = go & (c2 != 0)
    a = torch.where(c2 == 1, 0, right)
    y2 = torch.where(s, y2 + _tdiv((a - x2) * (y2 - y1), torch.where(s, x2 - x1, one)), y2)
    x2 = torch.where(s, a, x2)
    c2 = torch.where(s, 0, c2)
    return x1, y1, x2, y2, (c1 | c2) == 0


def _draw_lines(out: Tensor, owner: Tensor, x1, y1, x2, y2) -> None:
    """Sets the pixels of OpenCV's thin 8-connected line for each segment in ``out`` (N, H, W) bool.

    OpenCV 5 rounds fixed-point end points to whole pixels and runs Bresenham (``LineIterator``, left to right,
    clipped to the image by ``clipLine``). Pixel k of a run of length D along the major axis is offset by
    floor((2 d k + D - 1) / (2 D)) along the minor axis (d = minor length), which is the iterator's error rule in
    closed form. ``owner`` (S,) is the ellipse of each segment; the end points are (S,) int64 fixed point.
    """
    n, h, w = out.shape
    if x1.numel() == 0:
        return
    x1, y1, x2, y2 = ((v + _HALF) >> _SHIFT for v in (x1, y1, x2, y2))
    x1, y1, x2, y2, drawn = _clip_lines(x1, y1, x2, y2, w - 1, h - 1)
    swap = x2 < x1  # left to right
    x1, x2 = torch.where(swap, x2, x1), torch.where(swap, x1, x2)
    y1, y2 = torch.where(swap, y2, y1), torch.where(swap, y1, y2)
    dx, dy = x2 - x1, y2 - y1
    sign_y = torch.where(dy < 0, -1, 1)
    dy = dy.abs()
    vertical = dy > dx
    major, minor = torch.maximum(dx, dy), torch.minimum(dx, dy)
    count = torch.where(drawn, major, torch.full_like(major, -1))  # pixels 0..count
    k = torch.arange(int(count.max().item()) + 1, device=out.device)[None, :]
    step = (2 * minor[:, None] * k + major[:, None] - 1).div(2 * major.clamp(min=1)[:, None], rounding_mode="floor")
    step = torch.where(major[:, None] > 0, step, torch.zeros_like(step))
    px = x1[:, None] + torch.where(vertical[:, None], step, k)
    py = y1[:, None] + sign_y[:, None] * torch.where(vertical[:, None], k, step)
    ok = (k <= count[:, None]) & (px >= 0) & (px < w) & (py >= 0) & (py < h)
    _set_pixels(out, owner, px, py, ok)


def _draw_fixed_lines(out: Tensor, owner: Tensor, x1, y1, x2, y2) -> None:
    """Sets the pixels of OpenCV's fixed-point ``Line2`` (the outline ``FillConvexPoly`` draws) in ``out``.

    ``owner`` (S,) is the ellipse of each segment; all inputs are (S,) int64 fixed point.
    """
    n, h, w = out.shape
    if x1.numel() == 0:
        return
    x1, y1, x2, y2, drawn = _clip_lines(x1, y1, x2, y2, (w << _SHIFT) - 1, (h << _SHIFT) - 1)
    dx, dy = x2 - x1, y2 - y1
    major_x = dx.abs() > dy.abs()
    swap = torch.where(major_x, dx < 0, dy < 0)
    x1, x2 = torch.where(swap, x2, x1), torch.where(swap, x1, x2)
    y1, y2 = torch.where(swap, y2, y1), torch.where(swap, y1, y2)
    major = torch.where(major_x, x2 - x1, y2 - y1)  # >= 0 after the swap
    minor = torch.where(major_x, y2 - y1, x2 - x1)
    step = _tdiv(minor * _ONE, major | 1)
    count = torch.where(drawn, major >> _SHIFT, torch.full_like(major, -1))  # pixels 0..count
    x1, y1 = x1 + _HALF, y1 + _HALF
    k = torch.arange(int(count.max().item()) + 1 if count.numel() else 0, device=out.device)
    start_major = torch.where(major_x, x1, y1) >> _SHIFT
    start_minor = torch.where(major_x, y1, x1)
    along = start_major[:, None] + k[None, :]
    across = (start_minor[:, None] + k[None, :] * step[:, None]) >> _SHIFT
    px = torch.where(major_x[:, None], along, across)
    py = torch.where(major_x[:, None], across, along)
    # The end point is drawn on its own (rounded), then the run from the start.
    px = torch.cat([((x2 + _HALF) >> _SHIFT)[:, None], px], dim=1)
    py = torch.cat([((y2 + _HALF) >> _SHIFT)[:, None], py], dim=1)
    ok = torch.cat([drawn[:, None], k[None, :] <= count[:, None]], dim=1)
    ok &= (px >= 0) & (px < w) & (py >= 0) & (py < h)
    _set_pixels(out, owner, px, py, ok)


def _set_pixels(out: Tensor, owner: Tensor, px: Tensor, py: Tensor, ok: Tensor) -> None:
    """``out[owner, py, px] = True`` where ``ok``, in one scatter (``px``, ``py``, ``ok``: (S, P))."""
    n, h, w = out.shape
    flat = (owner[:, None] * h + py) * w + px
    sink = n * h * w  # an extra slot takes the pixels not drawn
    flat = torch.where(ok, flat, torch.full_like(flat, sink))
    canvas = torch.zeros(sink + 1, dtype=torch.bool, device=out.device)
    canvas[flat.flatten()] = True
    out |= canvas[:sink].view(n, h, w)


def _polyline(out: Tensor, x: Tensor, y: Tensor, n: Tensor, closed: bool) -> None:
    """Draws each polygon's edges into ``out``: ``closed`` as ``FillConvexPoly`` does (fixed point, from the last
    vertex round to it), otherwise as the ``PolyLine`` of a thin ``cv2.ellipse`` outline (open, rounded)."""
    p = x.shape[1]
    pos = torch.arange(1, p, device=x.device)
    owner, k = torch.nonzero(pos[None, :] < n[:, None], as_tuple=True)
    k = k + 1
    x1, y1, x2, y2 = x[owner, k - 1], y[owner, k - 1], x[owner, k], y[owner, k]
    if closed:  # FillConvexPoly starts with the edge from the last vertex to the first
        last = torch.arange(x.shape[0], device=x.device)
        tail = (n - 1).clamp(min=0)
        x1, y1 = torch.cat([x[last, tail], x1]), torch.cat([y[last, tail], y1])
        x2, y2 = torch.cat([x[:, 0], x2]), torch.cat([y[:, 0], y2])
        owner = torch.cat([last, owner])
        _draw_fixed_lines(out, owner, x1, y1, x2, y2)
    else:  # PolyLine: thin 8-connected lines between the rounded vertices
        _draw_lines(out, owner, x1, y1, x2, y2)


def _convex_fill(x: Tensor, y: Tensor, n: Tensor, h: int, w: int) -> Tensor:
    """Scan-line spans of OpenCV's ``FillConvexPoly`` (8-connected, shift 16) in closed form, (N, H, W) bool.

    The fill walks the two chains of edges down from the top vertex; row r uses, on each side, the first vertex
    of the chain whose rounded row exceeds r (a running maximum, so one ``searchsorted``), the edge starting at
    the vertex before it with the slope OpenCV rounds, and rows stop one short of the lowest vertex.
    """
    device = x.device
    N, P = x.shape
    big = torch.iinfo(torch.int64).max // 4
    valid = torch.arange(P, device=device)[None, :] < n[:, None]
    ys = torch.where(valid, y, big)
    imin = ys.argmin(dim=1)  # the first topmost vertex
    rnd = lambda v: (v + _HALF) >> _SHIFT  # noqa: E731
    y_top, y_bottom = rnd(ys.min(dim=1).values), rnd(torch.where(valid, y, -big).max(dim=1).values)
    x_left = rnd(torch.where(valid, x, big).min(dim=1).values)
    x_right = rnd(torch.where(valid, x, -big).max(dim=1).values)
    ok = (n >= 3) & (x_right >= 0) & (y_bottom >= 0) & (x_left < w) & (y_top < h)
    rows = torch.arange(h, device=device)
    nn_ = n.clamp(min=1)[:, None]
    p = torch.arange(P + 1, device=device)[None, :]
    row_of = rnd(y)
    edges_x = []
    for direction in (1, -1):
        idx = torch.remainder(imin[:, None] + direction * p, nn_)
        ty = row_of.gather(1, idx)
        ty = torch.where(p <= n[:, None], ty, big)  # positions past a full turn never match
        reach = torch.cummax(ty, dim=1).values
        q = torch.searchsorted(reach, rows.expand(N, h).contiguous(), right=True).clamp(1, P)
        xs = x.gather(1, idx.gather(1, q - 1))
        xe = x.gather(1, idx.gather(1, q))
        y_end, y_start = reach.gather(1, q), reach.gather(1, q - 1)
        span = (y_end - y_start).clamp(min=1)
        slope = _tdiv((xe - xs) * 2 + span, 2 * span)
        edges_x.append(xs + (rows[None, :] - y_start) * slope)
    left = rnd(torch.minimum(*edges_x))
    right = rnd(torch.maximum(*edges_x))
    on = ok[:, None] & (rows[None, :] >= y_top[:, None]) & (rows[None, :] < y_bottom[:, None])
    on &= (right >= 0) & (left < w)
    # Rows without a span get an empty interval; int16 keeps the (N, H, W) comparisons cheap.
    left = torch.where(on, left.clamp(min=0), w).to(torch.int16)
    right = torch.where(on, right.clamp(max=w - 1), -1).to(torch.int16)
    cols = torch.arange(w, device=device, dtype=torch.int16)
    return (cols >= left[..., None]) & (cols <= right[..., None])


def _opencv_masks(ellipses: np.ndarray, hw: Tuple[int, int], thickness: int, outline: bool = True,
                  fill: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    n = ellipses.shape[0]
    out_fill = np.zeros((n, *hw), dtype=np.uint8)
    out_line = np.zeros((n, *hw), dtype=np.uint8)
    for i in np.flatnonzero(np.isfinite(ellipses).all(axis=1)):
        box = _rotated_rect(ellipses[i])
        if fill:
            cv2.ellipse(out_fill[i], box, 1, thickness=-1)
        if outline:
            cv2.ellipse(out_line[i], box, 1, thickness=thickness)
    return out_fill.astype(bool), out_line.astype(bool)


def ellipse_masks(
    ellipses: Union[np.ndarray, Tensor], size: Union[int, Tuple[int, int]], thickness: int = 1, device=None
) -> EllipseMasks:
    """Filled and outlined ellipses exactly as ``cv2.ellipse`` rasterises them, for all ellipses at once.

    Args:
        ellipses: (..., 5) ellipses (NaN rows allowed), numpy or tensor.
        size: S or (H, W).
        thickness: outline thickness (1 = the reference; other values are drawn by OpenCV).
        device: where the masks are made (default: the ellipses' device, CPU for numpy).

    Returns:
        :class:`EllipseMasks` of (..., H, W) bool tensors.
    """
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if device is None:
        device = ellipses.device if isinstance(ellipses, Tensor) else torch.device("cpu")
    e = torch.as_tensor(np.asarray(ellipses, dtype=np.float64) if not isinstance(ellipses, Tensor) else ellipses)
    e = e.to(device=device, dtype=torch.float64)
    lead = e.shape[:-1]
    flat = e.reshape(-1, 5)
    finite = torch.isfinite(flat).all(dim=1)
    huge = finite & (flat[:, :4].abs() > _HUGE).any(dim=1)
    exact = finite & ~huge
    thin = 0 <= thickness <= 1  # thicker outlines (and thickness < 0, filled) are OpenCV's
    everything = bool(exact.all())
    if everything:  # the usual case: no indexing
        x, y, n = _ellipse_polygons(flat)
        fill = _convex_fill(x, y, n, *hw)
        _polyline(fill, x, y, n, closed=True)
        outline = torch.zeros_like(fill)
        if thin:
            _polyline(outline, x, y, n, closed=False)
    else:
        fill = torch.zeros(flat.shape[0], *hw, dtype=torch.bool, device=device)
        outline = torch.zeros_like(fill)
        if exact.any():
            idx = torch.nonzero(exact).flatten()
            x, y, n = _ellipse_polygons(flat[idx])
            sub = _convex_fill(x, y, n, *hw)
            _polyline(sub, x, y, n, closed=True)
            fill[idx] = sub
            if thin:
                sub = torch.zeros_like(sub)
                _polyline(sub, x, y, n, closed=False)
                outline[idx] = sub
    for which, want_fill in ((huge, True), (exact if not thin else None, False)):
        if which is not None and which.any():
            idx = torch.nonzero(which).flatten()
            f, o = _opencv_masks(flat[idx].cpu().numpy(), hw, thickness, fill=want_fill)
            if want_fill:
                fill[idx] = torch.from_numpy(f).to(device)
            outline[idx] = torch.from_numpy(o).to(device)
    return EllipseMasks(fill.view(*lead, *hw), outline.view(*lead, *hw))


# ------------------------------------------------------------------------------- grey and blurred image
def _gray_channels_first(x: Tensor) -> Tensor:
    # (N, 3, H, W) uint8 -> (N, H, W) uint8; integers below 2^24, exact in float32.
    f = x.to(torch.float32)
    y = f[:, 0] * 9798.0
    y.add_(f[:, 1], alpha=19235.0).add_(f[:, 2], alpha=3735.0).add_(1 << 14)
    return y.div_(1 << 15).floor_().to(torch.uint8)


def gray_uint8(images: Tensor) -> Tensor:
    """``cv2.cvtColor(RGB2GRAY)`` of uint8 images: (R·9798 + G·19235 + B·3735 + 2^14) >> 15, exactly (OpenCV 5).

    Args:
        images: (..., H, W, 3) uint8 RGB tensor.

    Returns:
        (..., H, W) uint8.
    """
    lead, (h, w, _) = images.shape[:-3], images.shape[-3:]
    return _gray_channels_first(images.reshape(-1, h, w, 3).movedim(-1, 1)).reshape(*lead, h, w)


def _reflect101_index(length: int, radius: int) -> np.ndarray:
    # cv::borderInterpolate(p, len, BORDER_REFLECT_101) for p in [-radius, len + radius).
    out = []
    for p in range(-radius, length + radius):
        if length == 1:
            out.append(0)
            continue
        while p < 0 or p >= length:
            p = -p if p < 0 else 2 * length - p - 2
        out.append(p)
    return np.asarray(out, dtype=np.int64)


@lru_cache(maxsize=None)
def gaussian_kernel_q8(ksize: int) -> Tuple[int, ...]:
    """OpenCV's bit-exact 8-bit fixed-point Gaussian kernel for ``GaussianBlur(ksize, sigma=0)`` on uint8.

    sigma = 0.3((k-1)/2 - 1) + 0.8 (2 for k = 11), the 3/5/7 taps of ``getGaussianKernel``'s table, then the
    error-diffusion rounding to 1/256 that makes the taps sum to exactly 256.
    """
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize must be a positive odd integer; got {ksize!r}.")
    small = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
             7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}
    half = ksize // 2
    if ksize in small:
        kernel = small[ksize]
    else:
        sigma = float(Fraction(ksize) * Fraction(0.15) + Fraction(0.35))  # mulAdd(n, 0.15, 0.35), one rounding
        scale = -0.125 / (sigma * sigma)
        values = [math.exp(float(x * x) * scale) for x in range(1 - ksize, 0, 2)]  # x = 2 (i - k // 2)
        acc = 0.0
        for v in values:  # summed in order, as softdouble does
            acc += v
        inv = 1.0 / (acc * 2.0 + 1.0)
        kernel = [v * inv for v in values] + [inv] + [v * inv for v in reversed(values)]
    taps = [0] * ksize
    err, acc = 0.0, 0
    for i in range(half):
        adjusted = kernel[i] * 256.0 + err
        v = round(adjusted)  # half to even, as cvRound
        err = adjusted - v
        taps[i] = taps[ksize - 1 - i] = v
        acc += v
    taps[half] = 256 - 2 * acc
    return tuple(taps)


def _reflect101_pad(x: Tensor, r: int, dim: int) -> Tensor:
    # Pads dimension dim (-1 or -2) by r on both sides, reflect-101.
    length = x.shape[dim]
    if r < length:  # one reflection: torch's "reflect" is reflect-101
        pad = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
        return torch.nn.functional.pad(x, pad, mode="reflect")
    return x.index_select(dim, torch.from_numpy(_reflect101_index(length, r)).to(x.device))


def _blur_channels_first(x: Tensor, ksize: int) -> Tensor:
    # (N, C, H, W) uint8 -> same; see gaussian_blur_uint8. Every partial sum is an integer below 2^24, so the
    # float32 multiply-adds are exact in any order and on any device.
    h, w = x.shape[-2:]
    r = ksize // 2
    taps = gaussian_kernel_q8(ksize)
    y = _reflect101_pad(x.to(torch.float32), r, -1)
    acc = y[..., 0:w] * float(taps[0])
    for i in range(1, ksize):
        acc.add_(y[..., i:i + w], alpha=float(taps[i]))
    y = _reflect101_pad(acc, r, -2)
    acc = y[..., 0:h, :] * float(taps[0])
    for i in range(1, ksize):
        acc.add_(y[..., i:i + h, :], alpha=float(taps[i]))
    return acc.add_(1 << 15).div_(1 << 16).floor_().to(torch.uint8)


def gaussian_blur_uint8(images: Tensor, ksize: int = 11) -> Tensor:
    """``cv2.GaussianBlur(image, (ksize, ksize), 0)`` of uint8 images, exactly.

    OpenCV's uint8 path is separable fixed-point arithmetic: rows with the 1/256 taps of
    :func:`gaussian_kernel_q8` (exact in 16 bits), then columns (exact in 32 bits), then round half up to uint8.
    Here the two passes are depthwise convolutions on those integers (every partial sum is an integer below
    2^24, so none is rounded), on the images' device. The border is reflect-101 (OpenCV's default,
    ``gfedcb|abcdefgh|gfedcba``), repeated for images smaller than the kernel as ``borderInterpolate`` does.

    Args:
        images: (..., H, W, C) uint8 tensor.
        ksize: odd kernel size (11).

    Returns:
        (..., H, W, C) uint8.
    """
    lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
    x = images.reshape(-1, h, w, c).movedim(-1, 1)
    return _blur_channels_first(x, ksize).movedim(1, -1).reshape(*lead, h, w, c)


# ---------------------------------------------------------------------------------------- the prompts
class PromptLayers(NamedTuple):
    """The per-image layers the prompts are composed of, each (B, 3, H, W) uint8 tensors (channels first).

    Attributes:
        base: the image drawn on.
        gray: its greyscale, replicated to 3 channels.
        blur: its Gaussian blur.
    """

    base: Tensor
    gray: Tensor
    blur: Tensor


def prompt_layers(images: Tensor, blur_ksize: int = 11) -> PromptLayers:
    """Grey and blurred versions of every image, computed once per image (not per concept).

    Args:
        images: (B, H, W, 3) uint8 RGB tensor.
        blur_ksize: Gaussian kernel size (11).

    Returns:
        :class:`PromptLayers`, channels first.
    """
    base = images.movedim(-1, 1).contiguous()
    gray = _gray_channels_first(base)[:, None].expand(base.shape).contiguous()
    return PromptLayers(base, gray, _blur_channels_first(base, blur_ksize))


def compose_visual_prompts(layers: PromptLayers, image_index: Tensor, masks: EllipseMasks) -> Tensor:
    """The three prompts [red, gray, blur] of each (image, ellipse) pair, composed from the per-image layers.

    Per pixel this is ``where(outline, red, where(fill, image, layer))``, written as uint8 arithmetic
    (``layer + (image - layer)·fill`` modulo 256, then ``·(1 - outline) + red·outline``), which is the same
    selection and several times faster than ``torch.where`` on uint8 tensors on the CPU.

    Args:
        layers: :func:`prompt_layers` of the images.
        image_index: (n,) int64, the image of each pair.
        masks: (n, H, W) :class:`EllipseMasks` of the pairs' ellipses.

    Returns:
        (n, 3, H, W, 3) uint8 (a channels-last view of a channels-first tensor): outline in red on the image;
        outside the filled ellipse grey, then the outline; outside blurred, then the outline.
    """
    image_index = image_index.to(layers.base.device)
    n, (c, h, w) = image_index.shape[0], layers.base.shape[1:]
    base = layers.base.index_select(0, image_index)  # (n, 3, H, W)
    inside = masks.fill[:, None].to(torch.uint8)
    out = torch.empty(n, 3, c, h, w, dtype=torch.uint8, device=base.device)  # (n, prompt, channel, H, W)
    out[:, 0] = base
    for k, layer in ((1, layers.gray), (2, layers.blur)):
        other = layer.index_select(0, image_index)
        torch.sub(base, other, out=out[:, k])
        out[:, k].mul_(inside).add_(other)  # modulo 256: the image inside, the layer outside
    line = masks.outline[:, None].to(torch.uint8)  # (n, 1, H, W)
    out.mul_((1 - line)[:, None])
    for channel, value in enumerate(RED):
        if value:
            out[:, :, channel].add_(line * value)
    return out.movedim(2, -1)


class VisualPromptStack:
    """The prompts of n (image, ellipse) pairs as a lazy (3n, H, W, 3) uint8 stack [red, gray, blur per pair].

    Slicing composes only the requested prompts, so an encoder can take them in batches without all 3n images
    ever being in memory. Masks and layers stay on their device.

    Args:
        layers: :func:`prompt_layers` of the images.
        image_index: (n,) image of each pair.
        masks: (n, H, W) :class:`EllipseMasks`.
    """

    def __init__(self, layers: PromptLayers, image_index: Tensor, masks: EllipseMasks) -> None:
        self.layers, self.image_index, self.masks = layers, image_index, masks
        _, c, h, w = layers.base.shape
        self.shape = (3 * int(image_index.shape[0]), h, w, c)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, item: slice) -> Tensor:
        if not isinstance(item, slice):
            raise TypeError("VisualPromptStack supports slices only")
        start, stop, step = item.indices(len(self))
        if step != 1:
            raise ValueError("VisualPromptStack slices must be contiguous")
        if stop <= start:
            return torch.zeros(0, *self.shape[1:], dtype=torch.uint8, device=self.layers.base.device)
        first, last = start // 3, (stop - 1) // 3 + 1
        pairs = slice(first, last)
        sub = EllipseMasks(self.masks.fill[pairs], self.masks.outline[pairs])
        prompts = compose_visual_prompts(self.layers, self.image_index[pairs], sub).flatten(0, 1)
        return prompts[start - 3 * first:stop - 3 * first]


def _rotated_rect(e: np.ndarray):
    return ((float(e[0]), float(e[1])), (float(e[2]), float(e[3])), float(e[4]))


def ellipse_fill_masks(ellipses: np.ndarray, size: Union[int, Tuple[int, int]], renderer: str = "torch"
                       ) -> np.ndarray:
    """Filled ellipses as rasterised by ``cv2.ellipse(..., thickness=-1)`` (the prompts' inside region).

    Args:
        ellipses: (..., 5) ellipses, NaN rows allowed.
        size: S or (H, W).
        renderer: ``"torch"`` (all at once, see :func:`ellipse_masks`) or ``"opencv"`` (one ``cv2.ellipse`` per
            ellipse); identical pixels.

    Returns:
        (..., H, W) bool; all False for NaN rows.
    """
    _check_renderer(renderer)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    ellipses = np.asarray(ellipses, dtype=np.float64)
    if renderer == "torch":
        return ellipse_masks(ellipses, hw).fill.numpy()
    flat = ellipses.reshape(-1, 5)
    fill, _ = _opencv_masks(flat, hw, 1, outline=False)
    return fill.reshape(*ellipses.shape[:-1], *hw)


def _render_opencv(images: np.ndarray, ellipses: np.ndarray, thickness: int, blur_ksize: int) -> VisualPrompts:
    # The reference's drawing, one cv2.ellipse per (image, concept) and prompt.
    b, h, w, _ = images.shape
    gray = np.stack([cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY) for im in images])
    gray = np.repeat(gray[..., None], 3, axis=-1)
    blur = np.stack([cv2.GaussianBlur(np.ascontiguousarray(im), (blur_ksize, blur_ksize), 0) for im in images])
    inside = ellipse_fill_masks(ellipses, (h, w), renderer="opencv")[..., None]  # (B, L, H, W, 1)
    base = np.broadcast_to(images[:, None], inside.shape[:-1] + (3,))
    red = base.copy()  # a writable copy: with one concept slot, base is already a contiguous read-only view
    out_gray = np.where(inside, base, gray[:, None])
    out_blur = np.where(inside, base, blur[:, None])
    # NaN ellipses draw nothing and leave the image untouched, not greyed.
    valid = np.isfinite(ellipses).all(axis=-1)
    out_gray[~valid] = base[~valid]
    out_blur[~valid] = base[~valid]
    for bi, li in zip(*np.nonzero(valid)):
        box = _rotated_rect(ellipses[bi, li])
        for canvas in (red, out_gray, out_blur):
            cv2.ellipse(canvas[bi, li], box, RED, thickness=thickness)
    return VisualPrompts(red, out_gray, out_blur)


def render_visual_prompts(
    images: np.ndarray,
    ellipses: np.ndarray,
    thickness: int = 1,
    blur_ksize: int = 11,
    renderer: str = "torch",
) -> VisualPrompts:
    """The three visual prompts of every concept: red outline, greyscale outside, blurred outside.

    Outlines are ``cv2.ellipse`` in (255, 0, 0), 8-connected, no anti-aliasing; greyscale is
    ``cv2.cvtColor(RGB2GRAY)`` replicated to 3 channels; blur is ``cv2.GaussianBlur(ksize, sigma=0)`` (sigma 2 for
    11x11, reflect-101 border). Grey and blurred versions are computed once per image. A NaN ellipse (empty
    concept) yields three unmodified copies of the image; callers should ignore those slots.

    Args:
        images: (B, H, W, 3) or (H, W, 3) uint8 RGB (see :func:`denormalize_to_uint8`).
        ellipses: (B, L, 5) or (L, 5) ellipses from :func:`fit_concept_ellipses`.
        thickness: outline thickness (1 in the reference).
        blur_ksize: Gaussian kernel size (11).
        renderer: ``"torch"`` (default: masks and compositing as tensor ops over all B x L pairs at once) or
            ``"opencv"`` (the reference's loop of ``cv2`` calls); the pixels are identical.

    Returns:
        :class:`VisualPrompts`, each (B, L, H, W, 3) uint8 ((L, H, W, 3) for unbatched input).
    """
    _check_renderer(renderer)
    images = np.asarray(images)
    ellipses = np.asarray(ellipses, dtype=np.float64)
    single = images.ndim == 3
    if single:
        images, ellipses = images[None], ellipses[None]
    if images.dtype != np.uint8:
        raise TypeError("images must be uint8 RGB")
    if renderer == "opencv":
        out = _render_opencv(images, ellipses, thickness, blur_ksize)
    else:
        b, h, w, _ = images.shape
        n_slots = ellipses.shape[1]
        layers = prompt_layers(torch.from_numpy(np.ascontiguousarray(images)), blur_ksize)
        masks = ellipse_masks(ellipses.reshape(-1, 5), (h, w), thickness)
        # NaN ellipses have empty masks; they must keep the image (not grey it): give them an all-inside fill.
        nan = ~torch.from_numpy(np.isfinite(ellipses).all(axis=-1).reshape(-1))
        masks = EllipseMasks(masks.fill | nan[:, None, None], masks.outline)
        index = torch.arange(b).repeat_interleave(n_slots)
        prompts = compose_visual_prompts(layers, index, masks).reshape(b, n_slots, 3, h, w, 3).numpy()
        out = VisualPrompts(prompts[:, :, 0], prompts[:, :, 1], prompts[:, :, 2])
    if single:
        return VisualPrompts(out.red[0], out.gray[0], out.blur[0])
    return out


def concept_embedding(prompt_embeddings: Tensor) -> Tensor:
    """Concept embedding z_j: mean of the L2-normalised embeddings of its prompts, *not* re-normalised.

    Args:
        prompt_embeddings: (..., P, d) CLIP image embeddings of the P (= 3) prompts of each concept.

    Returns:
        (..., d).
    """
    return torch.nn.functional.normalize(prompt_embeddings.float(), dim=-1).mean(dim=-2)
