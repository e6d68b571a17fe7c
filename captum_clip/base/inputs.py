"""Checks on the images users pass to ``attribute``, with errors that say what to do."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def unpack_inputs(inputs) -> Tuple[Tensor, bool]:
    """Accept a tensor or a 1-tuple of one (Captum's convention); return it and whether it was a tuple."""
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise ValueError(
                f"inputs must be one image tensor (or a 1-tuple of it); got a tuple of {len(inputs)} items."
            )
        return inputs[0], True
    return inputs, False


def check_images(images, minimum_size: Tuple[int, int] = (1, 1)) -> Tensor:
    """Validate a normalised image batch ``(N, 3, H, W)``.

    Raises:
        ValueError: not a tensor, wrong rank, not 3 channels, not floating point,
            an empty batch, non-finite values, or smaller than ``minimum_size``.
    """
    if not isinstance(images, Tensor):
        raise ValueError(
            f"inputs must be a torch.Tensor of shape (N, 3, H, W); got {type(images).__name__}. "
            "Turn PIL images into tensors with bundle.preprocess(image).unsqueeze(0)."
        )
    if images.dim() != 4:
        hint = " For a single image use image.unsqueeze(0)." if images.dim() == 3 else ""
        raise ValueError(f"inputs must have shape (N, 3, H, W); got {tuple(images.shape)}.{hint}")
    if images.shape[1] != 3:
        raise ValueError(
            f"inputs must have 3 (RGB) channels in dim 1, i.e. (N, 3, H, W); got {tuple(images.shape)}. "
            "Channels-last images need images.permute(0, 3, 1, 2); grey images need .expand(-1, 3, -1, -1)."
        )
    if not images.is_floating_point():
        raise ValueError(
            f"inputs must be a floating-point tensor normalised like the model's preprocess; got dtype "
            f"{images.dtype}. Use bundle.preprocess, or images.float() / 255 followed by the CLIP normalisation."
        )
    if images.shape[0] == 0:
        raise ValueError("inputs is an empty batch (N = 0).")
    if images.shape[-2] < minimum_size[0] or images.shape[-1] < minimum_size[1]:
        raise ValueError(
            f"inputs of {images.shape[-2]}x{images.shape[-1]} pixels are smaller than one token cell of this "
            f"model ({minimum_size[0]}x{minimum_size[1]}); resize them (e.g. with bundle.preprocess)."
        )
    if not torch.isfinite(images).all():
        raise ValueError("inputs contain NaN or infinite values.")
    return images


def refuse_additional_forward_args(value, method: str) -> None:
    """Captum methods pass ``additional_forward_args`` to the forward function; a classifier's forward takes only images.

    Raises:
        ValueError: whenever ``value`` is not None.
    """
    if value is not None:
        raise ValueError(
            f"{method} does not take additional_forward_args: the ZeroShotClassifier's forward takes only the images "
            "(its class embeddings are a buffer, so Captum's expansion of extra arguments cannot corrupt them). "
            "Explain other texts with target='some text', or build a classifier over them with "
            "classifier.with_classes([...])."
        )


def gradient_ready(images: Tensor, method: str) -> Tensor:
    """Images a gradient method can differentiate through.

    Raises:
        RuntimeError: under ``torch.inference_mode()``, where no gradient can be taken.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{method} needs gradients, and torch.inference_mode() disables them; call it outside the "
            "inference_mode block (torch.no_grad() is fine: the method turns gradients back on where it needs them)."
        )
    # A tensor made under inference_mode cannot enter autograd; an ordinary copy of it can.
    return images.clone() if images.is_inference() else images
