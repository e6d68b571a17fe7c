"""Between the input frame (normalised ``(N, 3, H, W)`` tensors, as every captum_clip method takes) and ConVis's
working frame (the centre-cropped, resized ``S × S`` uint8 image the windows are cut from).

ConVis crops windows out of *pixels* and runs each crop through the model's own preprocessing, so the normalisation
of the inputs is undone first (:func:`normalised_to_uint8`). Its maps live on the squared image
(:func:`~.windows.square_image`: centre crop, then resize to ``S``); :func:`map_to_input_frame` inverts that
geometry so a map lines up with the pixels it explains.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["normalised_to_uint8", "uint8_to_normalised", "square_crop_box", "map_to_input_frame", "box_to_square_frame"]


def normalised_to_uint8(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the CLIP normalisation: ``(N, 3, H, W)`` float → ``(N, H, W, 3)`` uint8.

    Values are clipped to [0, 1] and *rounded* (not truncated), so a uint8 image normalised in float32 comes back
    exactly.

    Args:
        images: normalised images, ``x = (pixel / 255 − mean) / std``.
        mean: per-channel mean of the normalisation.
        std: per-channel standard deviation.

    Returns:
        ``(N, H, W, 3)`` uint8 RGB.
    """
    x = images.detach().to("cpu", torch.float64)
    scale = torch.as_tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    shift = torch.as_tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    pixels = ((x * scale + shift).clamp(0, 1) * 255).round().to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(0, 2, 3, 1).numpy())


def uint8_to_normalised(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(N, H, W, 3)`` or ``(H, W, 3)`` uint8 → ``(N, 3, H, W)`` float32 normalised like the model's preprocess."""
    batch = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True))  # PIL-backed arrays are read-only
    if batch.ndim == 3:
        batch = batch[None]
    x = batch.permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def square_crop_box(height: int, width: int) -> tuple[int, int, int]:
    """The square :func:`~.windows.square_image` keeps: ``(top, left, side)``.

    floor(d/2) of the excess d = |W − H| is removed on the left/top and ceil(d/2) on the right/bottom, as in the
    reference's ``pil_centercrop``.
    """
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def map_to_input_frame(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Put maps computed on the squared image back into the input's pixels.

    The map is resized from ``S × S`` to the centre square (bilinear, antialiased when shrinking) and placed
    there. Pixels the centre crop cut away were never shown to the model and get 0.

    Args:
        maps: ``(K, S, S)`` maps of the squared image.
        height: input height H.
        width: input width W.

    Returns:
        ``(K, H, W)``, same dtype as *maps*.
    """
    top, left, side = square_crop_box(height, width)
    squared = maps
    if maps.shape[-1] != side or maps.shape[-2] != side:
        squared = F.interpolate(
            maps[None].float(), size=(side, side), mode="bilinear", align_corners=False, antialias=side < maps.shape[-1]
        )[0].to(maps.dtype)
    if side == height == width:
        return squared
    out = maps.new_zeros(maps.shape[0], height, width)
    out[:, top : top + side, left : left + side] = squared
    return out


def box_to_square_frame(box: Sequence[float], height: int, width: int, size: int) -> np.ndarray | None:
    """Move a box of the original image into the squared ``size × size`` frame (shift, clip, scale).

    Args:
        box: ``(x0, y0, x1, y1)`` in original pixels, inclusive corners.
        height: original image height.
        width: original image width.
        size: side of the squared frame (224 for the reference geometry).

    Returns:
        ``(4,)`` float64 inclusive box in the squared frame, or None when the box lies outside the centre crop.
    """
    top, left, side = square_crop_box(height, width)
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = max(x0 - left, 0.0), min(x1 - left, side - 1.0)
    y0, y1 = max(y0 - top, 0.0), min(y1 - top, side - 1.0)
    if x1 < x0 or y1 < y0:
        return None
    scale = size / side
    # Inclusive pixel corners: pixel i spans [i, i + 1), so the far corner maps through its right edge.
    return np.array([x0 * scale, y0 * scale, (x1 + 1) * scale - 1, (y1 + 1) * scale - 1])
