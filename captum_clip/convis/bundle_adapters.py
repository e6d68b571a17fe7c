"""ConVis's window and text encoders for a loaded :class:`~captum_clip.ClipBundle`.

The bundle says how its preprocessing resizes and normalises (:mod:`captum_clip.core.loading`); the text side is
the core's one chunked encoder (:mod:`captum_clip.core.text`).
"""

from __future__ import annotations

import torch

from ..errors import require_finite
from ..core.text import text_encoder
from .encoders import pil_preprocess_image_encoder, tensor_resize_image_encoder
from .text_bank import TextEncoder
from .windows import ImageEncoder

__all__ = ["RESIZE_MODES", "bundle_image_encoder", "bundle_text_encoder"]

#: ``"tensor"``: batched torch resize on the model's device (fast); ``"pil"``: the bundle's own PIL transform per
#: crop (the reference's pixels exactly).
RESIZE_MODES = ("tensor", "pil")


def bundle_image_encoder(bundle, resize: str = "tensor") -> ImageEncoder:
    """The window encoder of a :class:`~captum_clip.ClipBundle`.

    Args:
        bundle: the loaded model with its preprocess.
        resize: one of :data:`RESIZE_MODES`.

    Returns:
        ``encode_images(crops (n, 3, h, w) uint8) -> (n, E)`` float32 on the bundle's device (the tensor encoder
        also wants its crops there, the PIL one on the CPU: see ``crop_device``).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    model = bundle.model

    def encode_image(batch: torch.Tensor) -> torch.Tensor:
        return require_finite(model.encode_image(batch), "ConVis: the window embeddings")

    if resize == "pil":
        return pil_preprocess_image_encoder(encode_image, bundle.preprocess, device=bundle.device)
    mean, std = bundle.image_mean_std
    return tensor_resize_image_encoder(
        encode_image, bundle.input_size, mean, std, interpolation=bundle.interpolation, device=bundle.device,
        dtype=bundle.dtype,
    )


def bundle_text_encoder(bundle, progress: bool | None = False) -> TextEncoder:
    """``encode_texts(list[str]) -> (n, E)`` through the bundle's tokenizer and text tower (not normalised), on
    the CPU.

    Args:
        bundle: the loaded model.
        progress: a tqdm bar with an ETA over the texts: True (at once), None (auto: only once encoding has run a
            few seconds, see :data:`~captum_clip.core.progress.AUTO_PROGRESS_DELAY`) or False.
    """
    return text_encoder(bundle.model, bundle.tokenizer, stage="ConVis: the text-bank embeddings",
                        normalize=False, progress=progress, desc="ConVis: encoding synset texts")
