"""Spatial decomposition of an image into square windows, and their CLIP image embeddings (ConVis spec §1b).

Geometry (defaults = the reference's ``grid_heatmap``):

1. :func:`square_image`: centre-crop to a square (floor on the left/top), resize to ``image_size`` (PIL bicubic).
2. :func:`padded_canvas`: paste it at ``(pad, pad)`` on a canvas of seeded uniform noise, 480² by default.
3. :func:`window_grid`: windows of each size in ``sizes`` at every ``stride`` over the canvas, biggest size first,
   top row first, left to right (the reference's order; 2 × 30² = 1,800 by default). Only the 730 windows that
   overlap the image can change the map, and only those are embedded.
4. :func:`window_crop`: black out everything outside the window through a mask blurred with
   ``GaussianBlur(rim_blur)`` (which darkens the window's outermost pixel ring), then crop. The reference's crop
   box is one pixel short on the right and bottom (``crop_minus1``), so its crops are 127² and 63²; keeping that
   is what makes its ranks reproducible bit for bit.

Variants: ``rim_blur=None`` skips the blurred mask (the crop is then the raw canvas pixels), and
``crop_minus1=False`` crops the full b×b square; both together give a plain crop.
The window's score is credited to its full b×b square whatever the crop (see :mod:`.aggregation`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageFilter
from tqdm.auto import tqdm

__all__ = [
    "REFERENCE_WINDOWS",
    "ImageEncoder",
    "ImageLike",
    "WindowConfig",
    "WindowGrid",
    "square_image",
    "padded_canvas",
    "window_grid",
    "window_crop",
    "iter_crop_batches",
    "embed_windows",
]

#: ``encode_images(crops) -> (n, E)``: crops are a uint8 RGB tensor ``(n, 3, h, w)`` (one shape per call); the
#: callable does the model's own preprocessing (resize, normalise) and returns raw image embeddings.
ImageEncoder = Callable[[torch.Tensor], torch.Tensor]

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]


def _blur_margin(radius: float) -> int:
    """Context kept around a window when blurring its mask: PIL's Gaussian blur is three box passes, each
    reaching ceil(radius) px, so this margin is beyond its reach (3 px for the reference's 0.5)."""
    return 3 * math.ceil(radius) + 2


@dataclass(frozen=True)
class WindowConfig:
    """Window geometry.

    Attributes:
        image_size: side of the squared image (224, CLIP's input size).
        sizes: window sides in pixels, in the order windows are enumerated.
        stride: step between window top-left corners, in both directions.
        pad: canvas margin around the image; windows start anywhere on the canvas, so they also straddle the
            image border.
        pad_fill: ``"noise"`` (uniform 0..254 from ``RandomState(noise_seed)``, the reference), ``"black"``, or
            ``"gray"`` (127).
        noise_seed: seed of the padding noise; the same noise is used for every image.
        rim_blur: radius of the PIL Gaussian blur applied to the window mask; ``None`` for a hard edge.
        crop_minus1: crop ``(b-1)²`` like the reference instead of ``b²``.
    """

    image_size: int = 224
    sizes: tuple[int, ...] = (128, 64)
    stride: int = 16
    pad: int = 128
    pad_fill: str = "noise"
    noise_seed: int = 0
    rim_blur: float | None = 0.5
    crop_minus1: bool = True

    def __post_init__(self) -> None:
        if self.image_size < 1 or self.pad < 0 or self.stride < 1:
            raise ValueError(f"invalid window geometry: {self}")
        if not self.sizes or any(b < 2 for b in self.sizes):
            raise ValueError(f"window sizes must be at least 2 px, got {self.sizes}")
        if self.stride > min(self.sizes):
            # A stride above the smallest window would leave pixels that no window of that size covers.
            raise ValueError(f"stride {self.stride} exceeds the smallest window size {min(self.sizes)}")
        if self.pad_fill not in ("noise", "black", "gray"):
            raise ValueError(f"pad_fill must be 'noise', 'black' or 'gray', not {self.pad_fill!r}")
        if self.rim_blur is not None and self.rim_blur < 0:
            raise ValueError(f"rim_blur must be None or non-negative, not {self.rim_blur}")

    @property
    def canvas_size(self) -> int:
        """Side of the padded canvas."""
        return self.image_size + 2 * self.pad


#: The reference's geometry (the defaults): 224² image, 128 px noise padding, windows of 128 and 64 at stride 16,
#: rim blur 0.5, one-pixel-short crops.
REFERENCE_WINDOWS = WindowConfig()


@dataclass(frozen=True)
class WindowGrid:
    """All windows of a configuration.

    Attributes:
        boxes: ``(P, 3)`` int64 ``(x, y, b)``: left, top and side in canvas pixels.
        overlaps_image: ``(P,)`` bool, True where the b×b square meets the image.
    """

    boxes: torch.Tensor
    overlaps_image: torch.Tensor


def _to_uint8_hwc(image: ImageLike) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 RGB (PIL, HWC array or CHW tensor), got dtype {array.dtype}; undo any "
            "normalisation first: ConVis crops and re-preprocesses the pixels itself"
        )
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return array


def square_image(image: ImageLike, size: int = 224) -> np.ndarray:
    """Centre-crop to a square and resize, as the reference's ``pil_centercrop`` + ``resize``.

    Args:
        image: PIL image, ``(H, W, 3)`` uint8 array, or ``(3, H, W)`` uint8 tensor.
        size: output side.

    Returns:
        ``(size, size, 3)`` uint8 array. With d = |W − H|, floor(d/2) is removed on the left/top and
        ceil(d/2) on the right/bottom, then PIL bicubic resizing.
    """
    pixels = Image.fromarray(_to_uint8_hwc(image))
    width, height = pixels.size
    excess = abs(width - height)
    if width > height:
        box = (excess // 2, 0, width - (excess - excess // 2), height)
    else:
        box = (0, excess // 2, width, height - (excess - excess // 2))
    return np.asarray(pixels.crop(box).resize((size, size), Image.Resampling.BICUBIC))


@functools.lru_cache(maxsize=8)
def _padding(canvas_size: int, fill: str, seed: int) -> np.ndarray:
    if fill == "noise":
        # randint's upper bound is exclusive: values 0..254, exactly as the reference draws them.
        canvas = np.random.RandomState(seed).randint(0, 255, (canvas_size, canvas_size, 3), dtype=np.uint8)
    else:
        canvas = np.full((canvas_size, canvas_size, 3), 0 if fill == "black" else 127, dtype=np.uint8)
    canvas.flags.writeable = False  # cached and shared: callers get copies
    return canvas


def padded_canvas(image_sq: np.ndarray, config: WindowConfig = REFERENCE_WINDOWS) -> np.ndarray:
    """Paste the squared image onto the padding canvas.

    Args:
        image_sq: ``(image_size, image_size, 3)`` uint8, from :func:`square_image`.
        config: geometry and padding.

    Returns:
        ``(canvas_size, canvas_size, 3)`` uint8; the image occupies ``[pad, pad + image_size)²``.
    """
    if image_sq.shape != (config.image_size, config.image_size, 3):
        raise ValueError(f"expected a {config.image_size}² RGB image, got {image_sq.shape}")
    canvas = _padding(config.canvas_size, config.pad_fill, config.noise_seed).copy()
    canvas[config.pad : config.pad + config.image_size, config.pad : config.pad + config.image_size] = image_sq
    return canvas


def window_grid(config: WindowConfig = REFERENCE_WINDOWS) -> WindowGrid:
    """Enumerate the windows in the reference's order.

    Args:
        config: geometry.

    Returns:
        :class:`WindowGrid`; index = size_index·n² + row·n + column with n = ceil(canvas_size / stride).
    """
    starts = torch.arange(0, config.canvas_size, config.stride)
    ys, xs = torch.meshgrid(starts, starts, indexing="ij")
    boxes = torch.cat(
        [torch.stack([xs.flatten(), ys.flatten(), torch.full_like(xs.flatten(), b)], dim=1) for b in config.sizes]
    )
    lo, hi = config.pad, config.pad + config.image_size
    x, y, b = boxes.unbind(1)
    overlaps = (x < hi) & (x + b > lo) & (y < hi) & (y + b > lo)
    return WindowGrid(boxes=boxes, overlaps_image=overlaps)


@functools.lru_cache(maxsize=256)
def _rim_alpha(
    b: int, radius: float, left: int, top: int, right: int, bottom: int, crop_w: int, crop_h: int
) -> np.ndarray:
    """The blurred "outside the window" mask over a crop, as uint32 ``(crop_h, crop_w, 1)`` (0 inside .. 255 out).

    The mask is rebuilt only on a patch around the window: *left*/*top*/*right*/*bottom* are the patch margins
    around the b×b square, capped at :func:`_blur_margin` and negative where the square leaves the canvas. Beyond
    the blur's reach the canvas-sized mask is a constant 255, and where the patch stops at the canvas edge, PIL's
    edge handling is the same as on the full canvas, so the values are identical. The margins are the cache key:
    all windows away from the canvas edge share one mask.
    """
    width, height = left + b + right, top + b + bottom
    mask = np.full((height, width), 255, dtype=np.uint8)
    mask[top : top + b + min(bottom, 0), left : left + b + min(right, 0)] = 0
    blurred = np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(radius=radius)))
    alpha = blurred[top : top + crop_h, left : left + crop_w, None].astype(np.uint32)
    alpha.flags.writeable = False
    return alpha


def window_crop(canvas: np.ndarray, box: tuple[int, int, int], config: WindowConfig = REFERENCE_WINDOWS) -> np.ndarray:
    """The pixels one window shows the encoder.

    Args:
        canvas: ``(C, C, 3)`` uint8 from :func:`padded_canvas`.
        box: ``(x, y, b)`` window.
        config: crop options (``rim_blur``, ``crop_minus1``).

    Returns:
        ``(h, w, 3)`` uint8: ``(b-1)²`` with the reference options, smaller where the window leaves the canvas.
    """
    x, y, b = (int(v) for v in box)
    height, width = canvas.shape[:2]
    shrink = 1 if config.crop_minus1 else 0
    right, bottom = min(x + b, width) - shrink, min(y + b, height) - shrink
    crop = canvas[y:bottom, x:right]
    if not config.rim_blur:
        return crop.copy()
    margin = _blur_margin(config.rim_blur)
    alpha = _rim_alpha(
        b,
        float(config.rim_blur),
        min(x, margin),
        min(y, margin),
        min(width - x - b, margin),
        min(height - y - b, margin),
        right - x,
        bottom - y,
    )
    # PIL's paste of black through an L mask m: out = DIV255(src·(255 − m)), DIV255(v) = ((v+128)>>8 + v+128)>>8.
    blended = crop.astype(np.uint32) * (255 - alpha) + 128
    return (((blended >> 8) + blended) >> 8).astype(np.uint8)


def iter_crop_batches(
    canvas: np.ndarray, boxes: torch.Tensor, config: WindowConfig = REFERENCE_WINDOWS, batch_size: int = 64
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Window crops in batches of equal crop shape, ready for an :data:`ImageEncoder`.

    Args:
        canvas: ``(C, C, 3)`` uint8.
        boxes: ``(P, 3)`` windows.
        config: crop options.
        batch_size: most crops per batch.

    Yields:
        ``(indices, crops)``: ``(n,)`` int64 rows of *boxes* and ``(n, 3, h, w)`` uint8 crops.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    shrink = 1 if config.crop_minus1 else 0
    height, width = canvas.shape[:2]
    x, y, b = boxes.long().unbind(1)
    crop_w = torch.minimum(x + b, torch.tensor(width)) - shrink - x
    crop_h = torch.minimum(y + b, torch.tensor(height)) - shrink - y
    shapes = torch.stack([crop_h, crop_w], 1)
    # Group by crop shape (first occurrence order) so each batch stacks into one tensor.
    for shape in dict.fromkeys(map(tuple, shapes.tolist())):
        rows = torch.nonzero((shapes == torch.tensor(shape)).all(1)).flatten()
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            crops = np.stack([window_crop(canvas, tuple(boxes[i].tolist()), config) for i in chunk.tolist()])
            yield chunk, torch.from_numpy(crops).permute(0, 3, 1, 2)


def embed_windows(
    canvas: np.ndarray,
    boxes: torch.Tensor,
    encode_images: ImageEncoder,
    config: WindowConfig = REFERENCE_WINDOWS,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> torch.Tensor:
    """Embed every window's crop.

    Args:
        canvas: ``(C, C, 3)`` uint8 from :func:`padded_canvas`.
        boxes: ``(P, 3)`` windows (usually the overlapping subset of :func:`window_grid`).
        encode_images: see :data:`ImageEncoder`; called without autograd.
        config: crop options.
        batch_size: most crops per ``encode_images`` call.
        progress: show a tqdm bar.

    Returns:
        ``(P, E)`` float32 raw embeddings (not normalised), rows in *boxes* order.
    """
    out: torch.Tensor | None = None
    with torch.inference_mode(), tqdm(
        total=len(boxes), desc="ConVis: embedding windows", unit="window", disable=not progress
    ) as bar:
        for rows, crops in iter_crop_batches(canvas, boxes, config, batch_size):
            emb = torch.as_tensor(encode_images(crops)).detach().float().cpu()
            if emb.ndim != 2 or emb.shape[0] != len(rows):
                raise ValueError(f"encode_images returned shape {tuple(emb.shape)} for {len(rows)} crops")
            if out is None:
                out = torch.empty(len(boxes), emb.shape[1])
            out[rows] = emb
            bar.update(len(rows))
    if out is None:
        raise ValueError("no windows to embed")
    return out.clone()  # leave inference mode with an ordinary tensor
