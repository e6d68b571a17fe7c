"""Adapters from a CLIP model's pieces to the encoder callables ConVis takes.

ConVis only needs two functions: ``encode_images(uint8 crops) -> (n, E)`` and ``encode_texts(strings) -> (n, E)``.
These helpers build them from an ``encode_image``/``encode_text`` pair plus the model's own PIL preprocessing
and tokenizer (e.g. open_clip's ``create_model_and_transforms`` and ``get_tokenizer``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image

from .text_bank import TextEncoder
from .windows import ImageEncoder

__all__ = ["pil_preprocess_image_encoder", "tokenizer_text_encoder"]


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
        ``encode_images(crops: (n, 3, h, w) uint8) -> (n, E)`` float tensor on the CPU.
    """

    def encode_images(crops: torch.Tensor) -> torch.Tensor:
        pixels = crops.permute(0, 2, 3, 1).cpu().numpy()
        batch = torch.stack([preprocess(Image.fromarray(p)) for p in pixels])
        if device is not None:
            batch = batch.to(device)
        with torch.inference_mode():
            return encode_image(batch).float().cpu()

    return encode_images


def tokenizer_text_encoder(
    encode_text: Callable[[torch.Tensor], torch.Tensor],
    tokenizer: Callable[[Sequence[str]], torch.Tensor],
    device: torch.device | str | None = None,
) -> TextEncoder:
    """Wrap ``encode_text`` and a tokenizer into a :data:`~.text_bank.TextEncoder`.

    Args:
        encode_text: ``(n, L) token ids -> (n, E)``, e.g. ``model.encode_text``.
        tokenizer: ``list[str] -> (n, L)`` token ids, e.g. ``open_clip.get_tokenizer(name)``.
        device: where to run ``encode_text``; default CPU.

    Returns:
        ``encode_texts(texts) -> (n, E)`` float tensor on the CPU.
    """

    def encode_texts(texts: Sequence[str]) -> torch.Tensor:
        tokens = tokenizer(list(texts))
        if device is not None:
            tokens = tokens.to(device)
        with torch.inference_mode():
            return encode_text(tokens).float().cpu()

    return encode_texts
