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

:func:`window_crop` is the readable one-window definition (numpy). The sweep itself (:func:`iter_crop_batches`,
:func:`embed_windows`) cuts the same pixels with tensor ops on the encoder's device: the padded canvas goes to the
device once per image, all windows that share a crop shape and rim are gathered in one indexing op from a
``Tensor.unfold`` view of it, and the rim alpha is blended on the rim strips with PIL's integer formula, so the
crops are bit-identical to :func:`window_crop` (``tests/convis/test_on_device.py``).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageFilter
from ..core.progress import progress_bar

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
    "canvas_tensor",
    "cut_windows",
    "iter_crop_batches",
    "embed_windows",
]

#: ``encode_images(crops) -> (n, E)``: crops are a uint8 RGB tensor ``(n, 3, h, w)`` (one shape per call); the
#: callable does the model's own preprocessing (resize, normalise) and returns raw image embeddings, on any device.
#: An encoder may carry a ``crop_device`` attribute: where it wants the crops cut (its model's device for the
#: tensor-resize encoder, the CPU for the PIL one); the sweep then cuts them there.
ImageEncoder = Callable[[torch.Tensor], torch.Tensor]

# Crop bytes cut in one indexing op (64 MiB): the reference's 441 large or 289 small windows are one op each.
_CUT_BUDGET = 1 << 26


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


def canvas_tensor(canvas: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """The padded canvas as a ``(C, C, 3)`` uint8 tensor on *device* (one copy per image).

    Args:
        canvas: ``(C, C, 3)`` uint8 array or tensor (e.g. from :func:`padded_canvas`).
        device: target device; default CPU.
    """
    tensor = torch.as_tensor(np.asarray(canvas)) if not isinstance(canvas, torch.Tensor) else canvas
    if tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[2] != 3:
        raise ValueError(f"expected a (C, C, 3) uint8 canvas, got {tuple(tensor.shape)} {tensor.dtype}")
    return tensor.to(device or "cpu")


@dataclass(frozen=True)
class _CropGroup:
    """Windows whose crops have one shape and one rim alpha: cut together."""

    rows: torch.Tensor  # (n,) int64 rows of the boxes
    height: int
    width: int
    rim: tuple | None  # _rim_alpha's arguments, or None for no blending


def _crop_groups(boxes: torch.Tensor, height: int, width: int, config: WindowConfig) -> list[_CropGroup]:
    """Group windows by crop shape and rim alpha, in order of first occurrence, rows in *boxes* order."""
    shrink = 1 if config.crop_minus1 else 0
    margin = _blur_margin(config.rim_blur) if config.rim_blur else 0
    groups: dict[tuple, list[int]] = {}
    for row, (x, y, b) in enumerate(boxes.long().tolist()):
        crop_w, crop_h = min(x + b, width) - shrink - x, min(y + b, height) - shrink - y
        if config.rim_blur:
            rim = (b, float(config.rim_blur), min(x, margin), min(y, margin), min(width - x - b, margin),
                   min(height - y - b, margin), crop_w, crop_h)
        else:
            rim = None
        groups.setdefault((crop_h, crop_w, rim), []).append(row)
    return [_CropGroup(torch.tensor(rows, dtype=torch.long), h, w, rim) for (h, w, rim), rows in groups.items()]


@functools.lru_cache(maxsize=64)
def _rim_tensor(rim: tuple, device: str) -> tuple[torch.Tensor, int]:
    """``(255 − alpha)`` as int32 ``(h, w)`` on *device*, and the rim's width k: alpha is 0 outside the k-pixel
    border strips (k = half the crop's short side when it is not, and the whole crop is then blended)."""
    alpha = torch.from_numpy(np.array(_rim_alpha(*rim)[..., 0], dtype=np.int32))
    height, width = alpha.shape
    k = 0
    while k < (min(height, width) + 1) // 2 and alpha[k : height - k, k : width - k].any():
        k += 1
    return (255 - alpha).to(device), k


def _blend_black(pixels: torch.Tensor, keep: torch.Tensor) -> None:
    """In place: PIL's paste of black through an L mask m, ``DIV255(src·(255 − m))``, on uint8 *pixels*
    ``(n, 3, h, w)`` with ``keep = 255 − m`` ``(h, w)`` int32: exact integer arithmetic, as in :func:`window_crop`.
    """
    blended = pixels.to(torch.int32) * keep + 128
    pixels.copy_(((blended >> 8) + blended) >> 8)


def cut_windows(canvas: torch.Tensor, xy: torch.Tensor, height: int, width: int,
                rim: tuple | None = None) -> torch.Tensor:
    """Cut windows of one crop shape from a canvas tensor in one op, on the canvas's device.

    Args:
        canvas: ``(C, C, 3)`` uint8 tensor (:func:`canvas_tensor`).
        xy: ``(n, 2)`` int64 top-left corners ``(x, y)``; every crop must lie inside the canvas.
        height: crop height.
        width: crop width.
        rim: :func:`_rim_alpha`'s arguments, to black out the window's surroundings through the blurred mask (the
            reference's rim); None for the raw pixels.

    Returns:
        ``(n, 3, height, width)`` uint8 (channels-last in memory, as the old numpy stack), equal to
        :func:`window_crop` pixel for pixel.
    """
    # (C-h+1, C-w+1, 3, h, w) view: entry [y, x] is the crop at (x, y), already channels-first.
    view = canvas.unfold(0, height, 1).unfold(1, width, 1)
    xy = xy.to(canvas.device)
    crops = view[xy[:, 1], xy[:, 0]]
    if rim is not None:
        keep, k = _rim_tensor(rim, str(canvas.device))
        if 2 * k >= min(height, width):
            _blend_black(crops, keep)
        elif k:
            # Only the border strips have a non-zero alpha; inside, DIV255(255·v) = v leaves the pixels as they are.
            for rows, cols in ((slice(0, k), slice(None)), (slice(height - k, None), slice(None)),
                               (slice(k, height - k), slice(0, k)), (slice(k, height - k), slice(width - k, None))):
                _blend_black(crops[:, :, rows, cols], keep[rows, cols])
    return crops


def iter_crop_batches(
    canvas: np.ndarray | torch.Tensor,
    boxes: torch.Tensor,
    config: WindowConfig = REFERENCE_WINDOWS,
    batch_size: int = 64,
    *,
    device: torch.device | str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Window crops in batches of equal crop shape, ready for an :data:`ImageEncoder`, cut with tensor ops.

    The canvas is copied to *device* once; the windows of each crop shape (and rim) are cut in one op (in chunks
    of at most 64 MiB of crops) and handed out in batches of *batch_size*.

    Args:
        canvas: ``(C, C, 3)`` uint8 array or tensor.
        boxes: ``(P, 3)`` windows.
        config: crop options.
        batch_size: most crops per batch.
        device: where the crops are cut and returned; default CPU (or the device of a canvas tensor).

    Yields:
        ``(indices, crops)``: ``(n,)`` int64 rows of *boxes* (CPU) and ``(n, 3, h, w)`` uint8 crops on *device*.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    if device is None and isinstance(canvas, torch.Tensor):
        device = canvas.device
    pixels = canvas_tensor(canvas, device)
    height, width = pixels.shape[:2]
    boxes = torch.as_tensor(boxes).long().cpu()
    for group in _crop_groups(boxes, height, width, config):
        per_op = max(1, _CUT_BUDGET // (3 * group.height * group.width * batch_size)) * batch_size
        for start in range(0, len(group.rows), per_op):
            rows = group.rows[start : start + per_op]
            crops = cut_windows(pixels, boxes[rows, :2], group.height, group.width, group.rim)
            for offset in range(0, len(rows), batch_size):
                yield rows[offset : offset + batch_size], crops[offset : offset + batch_size]


def embed_windows(
    canvas: np.ndarray | torch.Tensor,
    boxes: torch.Tensor,
    encode_images: ImageEncoder,
    config: WindowConfig = REFERENCE_WINDOWS,
    *,
    batch_size: int = 64,
    progress: bool | None = False,
    device: torch.device | str | None = None,
    bar=None,
) -> torch.Tensor:
    """Embed every window's crop.

    Args:
        canvas: ``(C, C, 3)`` uint8 from :func:`padded_canvas`.
        boxes: ``(P, 3)`` windows (usually the overlapping subset of :func:`window_grid`).
        encode_images: see :data:`ImageEncoder`; called without autograd.
        config: crop options.
        batch_size: most crops per ``encode_images`` call.
        progress: show a tqdm bar (True), never (False), or only when the sweep runs long (None); see
            :func:`~captum_clip.core.progress.progress_bar`.
        device: where the crops are cut; default the encoder's ``crop_device`` (else the CPU).
        bar: an open tqdm bar to advance instead of opening one (a sweep over several images).

    Returns:
        ``(P, E)`` float32 raw embeddings (not normalised), rows in *boxes* order, on the encoder's output device
        (the model's, for the bundle encoders).
    """
    if device is None:
        device = getattr(encode_images, "crop_device", None)
    out: torch.Tensor | None = None
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        if bar is None:
            bar = stack.enter_context(progress_bar(progress, total=len(boxes), desc="ConVis: window sweep",
                                                   unit="window"))
        for rows, crops in iter_crop_batches(canvas, boxes, config, batch_size, device=device):
            emb = torch.as_tensor(encode_images(crops)).detach().float()
            if emb.ndim != 2 or emb.shape[0] != len(rows):
                raise ValueError(f"encode_images returned shape {tuple(emb.shape)} for {len(rows)} crops")
            if out is None:
                out = torch.empty(len(boxes), emb.shape[1], device=emb.device)
            out[rows.to(out.device)] = emb.to(out.device)
            bar.update(len(rows))
    if out is None:
        raise ValueError("no windows to embed")
    return out.clone()  # leave inference mode with an ordinary tensor
