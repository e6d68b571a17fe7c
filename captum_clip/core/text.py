"""The text side of the CLIP contract: one chunked encoder and one fingerprint of the text tower.

Every bank of text embeddings (classifier prompts, ConVis synset texts, Mutual descriptors) is encoded here and
cached under :func:`text_tower_fingerprint`, so two banks of the same strings under the same text tower agree.
Texts are always encoded in fp32, also inside a method running under a reduced precision: the fingerprint does
not name a precision, so a bank must not depend on which precision happened to encode it first.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import require_finite
from .device import model_device
from .progress import progress_bar

#: Texts encoded per text-tower call, bounding memory for large banks.
TEXT_CHUNK = 256

# model -> (cheap signature of its text-tower tensors, fingerprint); weak so that models can be freed.
_FINGERPRINTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@torch.no_grad()
def encode_texts(model: nn.Module, tokenizer: Callable[[Sequence[str]], Tensor], texts: Sequence[str], *,
                 chunk_size: int = TEXT_CHUNK, stage: str = "the text tower's embeddings",
                 normalize: bool = True, progress: Optional[bool] = None, desc: str = "encoding texts") -> Tensor:
    """Text embeddings ``(len(texts), E)`` float32 on the model's device, ``chunk_size`` texts per call, in fp32
    whatever autocast the caller runs under.

    Args:
        model: an open_clip model (its ``encode_text`` is called without gradients).
        tokenizer: ``list[str] -> (n, context_length)`` token ids.
        texts: the strings, encoded as they are (fill templates before).
        chunk_size: texts per ``encode_text`` call.
        stage: how a non-finite result is named in the :class:`~captum_clip.NonFiniteError`.
        normalize: L2-normalise each row (default).
        progress: a bar with an ETA: True (at once), None (auto: once encoding has run a few seconds, see
            :data:`~captum_clip.core.progress.AUTO_PROGRESS_DELAY`) or False.
        desc: the bar's label.

    Raises:
        ValueError: a chunk size below 1.
        NonFiniteError: the text tower produced NaN or Inf.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}.")
    texts = list(texts)
    device = model_device(model)
    rows = []
    with progress_bar(progress, total=len(texts), desc=desc, unit="text") as bar, \
            torch.autocast(device.type, enabled=False):
        for start in range(0, len(texts), chunk_size):
            tokens = tokenizer(texts[start:start + chunk_size]).to(device)
            rows.append(require_finite(model.encode_text(tokens).float(), stage))
            bar.update(tokens.shape[0])
    if not rows:
        raise ValueError("no texts to encode.")
    features = torch.cat(rows)
    return F.normalize(features, dim=-1) if normalize else features


def prompt_ensembles(model: nn.Module, tokenizer: Callable, texts: Sequence[str], templates: Sequence[str], *,
                     stage: str = "the text tower's prompt embeddings") -> Tensor:
    """CLIP's prompt ensemble per text ``(len(texts), E)``: every template filled with the text, encoded,
    L2-normalised, averaged over the templates and L2-normalised again (as CLIP Surgery builds class embeddings)."""
    prompts = [template.format(text) for text in texts for template in templates]
    features = encode_texts(model, tokenizer, prompts, stage=stage,
                            desc=f"class embeddings ({len(texts)} texts x {len(templates)} templates)")
    return F.normalize(features.reshape(len(texts), len(templates), -1).mean(dim=1), dim=-1)


def text_encoder(model: nn.Module, tokenizer: Callable, *, stage: str, normalize: bool = True,
                 progress: Optional[bool] = None, desc: str = "encoding texts"
                 ) -> Callable[[Sequence[str]], Tensor]:
    """``encode(texts) -> (n, E)`` float32 on the CPU: :func:`encode_texts` bound to a model, for banks."""

    def encode(texts: Sequence[str]) -> Tensor:
        return encode_texts(model, tokenizer, texts, stage=stage, normalize=normalize, progress=progress,
                            desc=desc).cpu()

    return encode


def _text_tower_tensors(model: nn.Module) -> list:
    # Everything outside the vision tower shapes the text embeddings (token embedding, transformer, projection).
    return [(k, v) for k, v in model.state_dict(keep_vars=True).items() if not k.startswith("visual.")]


def _tokenizer_signature(tokenizer: Callable) -> str:
    return f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}:{getattr(tokenizer, 'context_length', '')}"


def text_tower_fingerprint(model: nn.Module, tokenizer: Callable) -> str:
    """A hash of everything that determines ``encode_text``: the text tower's weights, dtypes and the tokenizer.

    A model name is not enough (random weights, fine-tuning, a perturbed copy as in Quantus's MPRT), so every
    byte of the text tower is hashed; the hash is memoised per model and recomputed when a tensor is replaced or
    changed in place (its version counter moves).

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
