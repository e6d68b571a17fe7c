"""Adapters from a CLIP model's pieces to the encoder callables ConVis takes.

ConVis needs ``encode_images(uint8 crops) -> (n, E)``. These helpers build it from an ``encode_image`` function
plus either the model's own PIL preprocessing (:func:`pil_preprocess_image_encoder`, bit-compatible with the
reference) or an equivalent batched tensor resize on the model's device (:func:`tensor_resize_image_encoder`,
fast). Both return the embeddings on the device the model ran on, and say where they want the crops cut
(``crop_device``): the PIL encoder on the CPU, the tensor one on its device, so a GPU sweep never copies a crop
back to the host. The text side is :func:`captum_clip.core.text.text_encoder`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .windows import ImageEncoder

__all__ = ["pil_preprocess_image_encoder", "tensor_resize_image_encoder"]

_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")


def _placed(encode_images: ImageEncoder, crop_device, device) -> ImageEncoder:
    """Tag an encoder with where it wants its crops (``crop_device``) and where its embeddings land (``device``)."""
    encode_images.crop_device = torch.device(crop_device if crop_device is not None else "cpu")
    encode_images.device = torch.device(device if device is not None else "cpu")
    return encode_images


def pil_preprocess_image_encoder(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    preprocess: Callable[[Image.Image], torch.Tensor],
    device: torch.device | str | None = None,
) -> ImageEncoder:
    """Wrap ``encode_image`` and a PIL preprocessing transform into an :data:`~.windows.ImageEncoder`.

    Each crop goes through *preprocess* as a PIL image, which keeps PIL's bicubic resize: the reference
    pipeline resized crops with PIL, and a tensor resize would change the pixels.

    Args:
        encode_image: ``(n, 3, S, S) float -> (n, E)``, e.g. ``model.encode_image``.
        preprocess: ``PIL.Image -> (3, S, S)`` tensor, e.g. open_clip's eval transform.
        device: where to run ``encode_image``; default: the device of the preprocessed batch (CPU).

    Returns:
        ``encode_images(crops: (n, 3, h, w) uint8) -> (n, E)`` float tensor on *device* (CPU by default); its
        ``crop_device`` is the CPU, where PIL needs the pixels.
    """

    def encode_images(crops: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(crops.permute(0, 2, 3, 1).cpu().numpy())
        batch = torch.stack([preprocess(Image.fromarray(p)) for p in pixels])
        if device is not None:
            batch = batch.to(device)
        with torch.inference_mode():
            return encode_image(batch).float()

    return _placed(encode_images, "cpu", device)


def _pil_like_resize(batch: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """Resize float pixel values like PIL resizes uint8 images: width first, then height, each pass rounded and
    clipped to 0..255. The clipping between passes matters: bicubic overshoots at sharp edges (the noise
    padding, the blacked-out rim), and a single float pass would keep the overshoot."""
    if interpolation == "nearest":
        return F.interpolate(batch, size=size, mode="nearest-exact")
    options = {"mode": interpolation, "antialias": True, "align_corners": False}
    if batch.shape[-1] != size[1]:
        batch = F.interpolate(batch, size=(batch.shape[-2], size[1]), **options).round().clamp(0, 255)
    if batch.shape[-2] != size[0]:
        batch = F.interpolate(batch, size=size, **options).round().clamp(0, 255)
    return batch


def tensor_resize_image_encoder(
    encode_image: Callable[[torch.Tensor], torch.Tensor],
    image_size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    interpolation: str = "bicubic",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> ImageEncoder:
    """An :data:`~.windows.ImageEncoder` that preprocesses whole batches of crops with torch, on *device*.

    It mirrors open_clip's eval transform (resize the short side to the model's size, centre crop, ``/255``,
    normalise). Torch's antialiased bicubic kernel is PIL's (a = −0.5), and the two 1-D passes are rounded and
    clipped to uint8 levels as PIL does, so the inputs match :func:`pil_preprocess_image_encoder` to within one
    grey level (PIL's fixed-point weights round differently on some pixels). Everything after the crop runs on
    the model's device in one call per batch, which is what makes ConVis fast on a GPU.

    Args:
        encode_image: ``(n, 3, S, S) float -> (n, E)``, e.g. ``model.encode_image``.
        image_size: the model's input side S (or ``(S_h, S_w)``).
        mean: normalisation mean per channel.
        std: normalisation standard deviation per channel.
        interpolation: ``"bicubic"`` (open_clip's default), ``"bilinear"`` or ``"nearest"``.
        device: where to preprocess and encode; default CPU.
        dtype: the model's floating dtype (e.g. ``torch.float16`` for a half-precision model).

    Returns:
        ``encode_images(crops: (n, 3, h, w) uint8) -> (n, E)`` float32 tensor on *device*; its ``crop_device`` is
        *device* too, so the sweep cuts the crops there.
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, not {interpolation!r}")
    out_h, out_w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    shift = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    scale = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def encode_images(crops: torch.Tensor) -> torch.Tensor:
        batch = crops.to(device=device, dtype=torch.float32)
        h, w = batch.shape[-2:]
        # Resize(short side) + CenterCrop, as the eval transform does; a no-op crop for square windows.
        # torchvision's rule: the short side becomes S, the long side int(S * long / short).
        short = min(out_h, out_w)
        size = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        if (h, w) != size:
            batch = _pil_like_resize(batch, size, interpolation)
        top, left = int(round((batch.shape[-2] - out_h) / 2)), int(round((batch.shape[-1] - out_w) / 2))
        batch = batch[..., top : top + out_h, left : left + out_w]
        batch = ((batch / 255 - shift) / scale).to(dtype)
        with torch.inference_mode():
            return encode_image(batch).float()

    return _placed(encode_images, device, device)
