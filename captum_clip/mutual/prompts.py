"""Ellipse fit of each visual concept and the three "red circle" visual prompts (stage (b1)-(b2)).

Each concept mask is summarised by the least-squares ellipse of its largest external contour (OpenCV's
``fitEllipse``; scikit-image's ``EllipseModel`` is a different, direct fit and misses by up to 40 px on blocky
masks). The ellipse is drawn on the image in red (Shtedritski et al.), optionally with the outside greyed or
blurred; CLIP then encodes the three images and their mean is the concept embedding.

Ellipses are (cx, cy, width, height, angle) in OpenCV's ``RotatedRect`` convention: x = column, y = row, full axis
lengths, angle in degrees. A row of NaN marks "no ellipse" (empty concept mask).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "VisualPrompts",
    "denormalize_to_uint8",
    "normalize_uint8_images",
    "largest_external_contour",
    "fit_ellipse",
    "fit_concept_ellipses",
    "ellipse_fill_masks",
    "render_visual_prompts",
    "concept_embedding",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RED = (255, 0, 0)


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


def denormalize_to_uint8(
    images: Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> np.ndarray:
    """The uint8 image the reference draws its prompts on: de-normalise, clip to [0, 1], x255, *truncate*.

    Done in float64 like the reference (numpy mean/std arrays), which makes about half of the channel values come
    out exactly 1 below the original pixel. Pass original uint8 pixels to :func:`render_visual_prompts` instead
    if that darkening is not wanted.

    Args:
        images: (B, 3, H, W) or (3, H, W) normalised float images.
        mean, std: per-channel normalisation constants (CLIP's by default).

    Returns:
        (B, H, W, 3) or (H, W, 3) uint8 RGB.
    """
    x = images.detach().to("cpu").numpy()
    x = np.moveaxis(x, -3, -1).astype(np.float64)
    x = np.asarray(std, dtype=np.float64) * x + np.asarray(mean, dtype=np.float64)
    return np.ascontiguousarray(np.clip(x, 0, 1) * 255, dtype=np.uint8)


def normalize_uint8_images(
    images: np.ndarray, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD
) -> Tensor:
    """``ToTensor`` + ``Normalize`` of uint8 RGB images (the prompts' re-encoding transform at the same size).

    Args:
        images: (..., H, W, 3) uint8.

    Returns:
        (..., 3, H, W) float32 tensor.
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).movedim(-1, -3).to(torch.float32).div(255)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


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


def _rotated_rect(e: np.ndarray):
    return ((float(e[0]), float(e[1])), (float(e[2]), float(e[3])), float(e[4]))


def ellipse_fill_masks(ellipses: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Filled ellipses as rasterised by ``cv2.ellipse(..., thickness=-1)`` (the prompts' inside region).

    Args:
        ellipses: (..., 5) ellipses, NaN rows allowed.
        size: S or (H, W).

    Returns:
        (..., H, W) bool; all False for NaN rows.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    ellipses = np.asarray(ellipses, dtype=np.float64)
    flat = ellipses.reshape(-1, 5)
    out = np.zeros((flat.shape[0], *hw), dtype=np.uint8)
    for i in np.flatnonzero(np.isfinite(flat).all(axis=1)):
        cv2.ellipse(out[i], _rotated_rect(flat[i]), 1, thickness=-1)
    return out.reshape(*ellipses.shape[:-1], *hw).astype(bool)


def render_visual_prompts(
    images: np.ndarray,
    ellipses: np.ndarray,
    thickness: int = 1,
    blur_ksize: int = 11,
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

    Returns:
        :class:`VisualPrompts`, each (B, L, H, W, 3) uint8 ((L, H, W, 3) for unbatched input).
    """
    images = np.asarray(images)
    ellipses = np.asarray(ellipses, dtype=np.float64)
    single = images.ndim == 3
    if single:
        images, ellipses = images[None], ellipses[None]
    if images.dtype != np.uint8:
        raise TypeError("images must be uint8 RGB")
    b, h, w, _ = images.shape
    gray = np.stack([cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY) for im in images])
    gray = np.repeat(gray[..., None], 3, axis=-1)
    blur = np.stack([cv2.GaussianBlur(np.ascontiguousarray(im), (blur_ksize, blur_ksize), 0) for im in images])

    inside = ellipse_fill_masks(ellipses, (h, w))[..., None]  # (B, L, H, W, 1)
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
    if single:
        return VisualPrompts(red[0], out_gray[0], out_blur[0])
    return VisualPrompts(red, out_gray, out_blur)


def concept_embedding(prompt_embeddings: Tensor) -> Tensor:
    """Concept embedding z_j: mean of the L2-normalised embeddings of its prompts, *not* re-normalised.

    Args:
        prompt_embeddings: (..., P, d) CLIP image embeddings of the P (= 3) prompts of each concept.

    Returns:
        (..., d).
    """
    return torch.nn.functional.normalize(prompt_embeddings.float(), dim=-1).mean(dim=-2)
