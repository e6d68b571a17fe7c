"""ConVis's encoder callables and text-bank cache key for a loaded :class:`~captum_clip.ClipBundle`.

The text bank is cached on disk under a *model fingerprint*. A model name is not enough (random weights,
fine-tuning, a perturbed copy as in Quantus's MPRT), so the fingerprint hashes the text tower's actual weights
plus the tokenizer; it is memoised per model and recomputed only when a text-tower tensor changes.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable

import torch
from torch import nn

from ..errors import require_finite
from .encoders import pil_preprocess_image_encoder, tensor_resize_image_encoder, tokenizer_text_encoder
from .text_bank import TextEncoder
from .windows import ImageEncoder

__all__ = [
    "RESIZE_MODES",
    "bundle_image_encoder",
    "bundle_text_encoder",
    "model_input_size",
    "preprocess_interpolation",
    "text_tower_fingerprint",
]

#: ``"tensor"``: batched torch resize on the model's device (fast); ``"pil"``: the bundle's own PIL transform per
#: crop (the reference's pixels exactly).
RESIZE_MODES = ("tensor", "pil")

# model -> (cheap signature of its text-tower tensors, fingerprint); weak so models can be freed.
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _text_tower_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    # Everything outside the vision tower shapes the text embeddings (token embedding, transformer, projection).
    return [(k, v) for k, v in model.state_dict(keep_vars=True).items() if not k.startswith("visual.")]


def _tokenizer_signature(tokenizer: Callable) -> str:
    return f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}:{getattr(tokenizer, 'context_length', '')}"


def text_tower_fingerprint(model: nn.Module, tokenizer: Callable) -> str:
    """A hash of everything that determines ``encode_text``: text-tower weights, dtypes and the tokenizer.

    Args:
        model: an open_clip model.
        tokenizer: its tokenizer.

    Returns:
        ``"<model class>/<sha256 prefix>"``; equal strings mean equal text embeddings.
    """
    tensors = _text_tower_tensors(model)
    signature = (_tokenizer_signature(tokenizer),) + tuple(
        (name, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for name, t in tensors
    )
    cached = _FINGERPRINTS.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1]
    digest = hashlib.sha256(signature[0].encode())
    for name, tensor in tensors:
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    fingerprint = f"{type(model).__name__}/{digest.hexdigest()[:32]}"
    _FINGERPRINTS[model] = (signature, fingerprint)
    return fingerprint


def model_input_size(model: nn.Module) -> tuple[int, int]:
    """The vision tower's input ``(height, width)`` (open_clip's ``visual.image_size``)."""
    size = getattr(getattr(model, "visual", None), "image_size", None)
    if size is None:
        raise ValueError("the model has no visual.image_size; pass resize='pil' to use the bundle's preprocess")
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def preprocess_interpolation(preprocess: Callable) -> str:
    """The resize interpolation of an open_clip eval transform (``"bicubic"`` when it cannot be read)."""
    for transform in getattr(preprocess, "transforms", []):
        mode = getattr(transform, "interpolation", None)
        if mode is not None:
            name = getattr(mode, "value", str(mode)).lower()
            if name in ("bicubic", "bilinear", "nearest"):
                return name
    return "bicubic"


def bundle_image_encoder(bundle, resize: str = "tensor") -> ImageEncoder:
    """The window encoder of a :class:`~captum_clip.ClipBundle`.

    Args:
        bundle: the loaded model with its preprocess.
        resize: one of :data:`RESIZE_MODES`.

    Returns:
        ``encode_images(crops (n, 3, h, w) uint8) -> (n, E)`` float32 on the CPU.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    model = bundle.model

    def encode_image(batch: torch.Tensor) -> torch.Tensor:
        return require_finite(model.encode_image(batch), "ConVis: the window embeddings")

    if resize == "pil":
        return pil_preprocess_image_encoder(encode_image, bundle.preprocess, device=bundle.device)
    mean, std = bundle.image_mean_std
    dtype = next(model.parameters()).dtype
    return tensor_resize_image_encoder(
        encode_image, model_input_size(model), mean, std,
        interpolation=preprocess_interpolation(bundle.preprocess), device=bundle.device, dtype=dtype,
    )


def bundle_text_encoder(bundle) -> TextEncoder:
    """``encode_texts(list[str]) -> (n, E)`` through the bundle's tokenizer and text tower."""
    def encode_text(tokens: torch.Tensor) -> torch.Tensor:
        return require_finite(bundle.model.encode_text(tokens), "ConVis: the text-bank embeddings")

    return tokenizer_text_encoder(encode_text, bundle.tokenizer, device=bundle.device)
