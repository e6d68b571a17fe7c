"""The text bank D: one L2-normalised CLIP text embedding per synset of T (ConVis spec §1a.5).

D depends only on the model and the vocabulary, never on the image, so it is encoded once and cached on disk.
The cache key hashes the caller's model fingerprint, the vocabulary (row order and hierarchy), the text source
and the texts themselves, so a different WordNet copy with different glosses cannot be served a stale bank.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.cache import cache_path, cached_embeddings, digest_strings
from .vocabulary import ConceptVocabulary

__all__ = ["TextBank", "TextEncoder", "build_text_bank", "text_bank_cache_path"]

#: ``encode_texts(list_of_n_strings) -> (n, E)`` tensor of (not necessarily normalised) text embeddings.
TextEncoder = Callable[[Sequence[str]], torch.Tensor]

_CACHE_KIND = "convis_text_banks"


@dataclass(frozen=True)
class TextBank:
    """Unit-norm text embeddings of a vocabulary's synsets.

    Attributes:
        embeddings: ``(|T|, E)`` float32, rows in vocabulary order, each of unit L2 norm.
        vocabulary_digest: :meth:`ConceptVocabulary.digest` of the vocabulary it was built for.
        text_source: ``"definition"`` or ``"lemmas"``.
        model_fingerprint: the caller's identifier of the text encoder.
        from_cache: True when read from disk instead of encoded.
    """

    embeddings: torch.Tensor
    vocabulary_digest: str
    text_source: str
    model_fingerprint: str
    from_cache: bool = False

    def check_matches(self, vocabulary: ConceptVocabulary) -> None:
        """Raise ``ValueError`` when this bank was built for another vocabulary (rows would be misaligned)."""
        if self.vocabulary_digest != vocabulary.digest() or self.embeddings.shape[0] != len(vocabulary):
            raise ValueError(
                f"the text bank ({self.embeddings.shape[0]} rows) was built for another vocabulary than "
                f"{vocabulary!r}; rebuild it with build_text_bank(vocabulary, ...)"
            )


def text_bank_cache_path(
    vocabulary: ConceptVocabulary,
    model_fingerprint: str,
    *,
    text_source: str = "definition",
    cache_dir: str | os.PathLike | None = None,
    texts: Sequence[str] | None = None,
) -> Path:
    """The file a text bank is cached in (in captum_clip's one embedding cache, :mod:`captum_clip.core.cache`).

    Args:
        vocabulary: the vocabulary T.
        model_fingerprint: identifies the text encoder (weights, tokenizer, precision).
        text_source: ``"definition"`` or ``"lemmas"``.
        cache_dir: root cache directory; default :func:`captum_clip.core.cache.cache_root`.
        texts: the texts, when already computed (saves a WordNet pass).

    Returns:
        ``<cache root>/convis_text_banks/<key>.safetensors``.
    """
    texts = vocabulary.texts(text_source) if texts is None else texts
    return cache_path(_CACHE_KIND, _cache_key(vocabulary, model_fingerprint, text_source, texts), cache_dir)


def _cache_key(vocabulary: ConceptVocabulary, model_fingerprint: str, text_source: str, texts: Sequence[str]) -> dict:
    return {"text_tower": model_fingerprint, "vocabulary": vocabulary.digest(), "text_source": text_source,
            "texts": digest_strings(texts)}


def build_text_bank(
    vocabulary: ConceptVocabulary,
    encode_texts: TextEncoder,
    *,
    model_fingerprint: str,
    text_source: str = "definition",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> TextBank:
    """Encode every synset's text once (or read it from the cache).

    Args:
        vocabulary: the vocabulary T.
        encode_texts: ``list[str] (n) -> (n, E)`` text embeddings; called without autograd.
        model_fingerprint: a string that changes whenever the text encoder's output would (model name,
            weights, precision, tokenizer). Part of the cache key.
        text_source: ``"definition"`` (gloss, default, as the reference) or ``"lemmas"``.
        cache_dir: root cache directory; default :func:`captum_clip.core.cache.cache_root`.
        use_cache: read and write the on-disk cache.

    Returns:
        The :class:`TextBank`; ``from_cache`` says whether anything was encoded.

    Raises:
        ValueError: for an empty fingerprint, or an encoder returning the wrong number of rows.
    """
    if not isinstance(model_fingerprint, str) or not model_fingerprint:
        raise ValueError("model_fingerprint must be a non-empty string identifying the text encoder")
    texts = vocabulary.texts(text_source)

    def encode() -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            out = torch.as_tensor(encode_texts(texts)).detach().float().cpu()
        if out.ndim != 2 or out.shape[0] != len(texts):
            raise ValueError(f"encode_texts returned shape {tuple(out.shape)} for {len(texts)} texts; expected (n, E)")
        return {"embeddings": F.normalize(out, dim=-1).clone()}  # clone: leave inference mode with an ordinary tensor

    tensors, from_cache = cached_embeddings(
        _CACHE_KIND, _cache_key(vocabulary, model_fingerprint, text_source, texts), encode, names=("embeddings",),
        rows=len(texts), cache_dir=cache_dir, use_cache=use_cache,
    )
    return TextBank(tensors["embeddings"], vocabulary.digest(), text_source, model_fingerprint, from_cache=from_cache)
