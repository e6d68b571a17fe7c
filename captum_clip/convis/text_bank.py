"""The text bank D: one L2-normalised CLIP text embedding per synset of T (ConVis spec §1a.5).

D depends only on the model and the vocabulary, never on the image, so it is encoded once and cached on disk.
The cache key hashes the caller's model fingerprint, the vocabulary (row order and hierarchy), the text source
and the texts themselves, so a different WordNet copy with different glosses cannot be served a stale bank.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .vocabulary import ConceptVocabulary

__all__ = ["TextBank", "TextEncoder", "build_text_bank", "default_cache_dir", "text_bank_cache_path"]

#: ``encode_texts(list_of_n_strings) -> (n, E)`` tensor of (not necessarily normalised) text embeddings.
TextEncoder = Callable[[Sequence[str]], torch.Tensor]

# Bumped whenever the stored layout or the meaning of a cached bank changes.
_CACHE_FORMAT = "1"


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


def default_cache_dir() -> Path:
    """Where captum_clip keeps derived data: ``$CAPTUM_CLIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/captum_clip``,
    else ``~/.cache/captum_clip``."""
    if os.environ.get("CAPTUM_CLIP_CACHE_DIR"):
        return Path(os.environ["CAPTUM_CLIP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "captum_clip"


def _cache_key(model_fingerprint: str, vocabulary: ConceptVocabulary, text_source: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for part in (_CACHE_FORMAT, model_fingerprint, vocabulary.digest(), text_source):
        h.update(part.encode())
        h.update(b"\0")
    h.update("\n".join(texts).encode())
    return h.hexdigest()[:40]


def text_bank_cache_path(
    vocabulary: ConceptVocabulary,
    model_fingerprint: str,
    *,
    text_source: str = "definition",
    cache_dir: str | os.PathLike | None = None,
    texts: Sequence[str] | None = None,
) -> Path:
    """The file a text bank is cached in.

    Args:
        vocabulary: the vocabulary T.
        model_fingerprint: identifies the text encoder (weights, tokenizer, precision).
        text_source: ``"definition"`` or ``"lemmas"``.
        cache_dir: root cache directory; default :func:`default_cache_dir`.
        texts: the texts, when already computed (saves a WordNet pass).

    Returns:
        ``<cache_dir>/convis_text_banks/<key>.safetensors``.
    """
    texts = vocabulary.texts(text_source) if texts is None else texts
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "convis_text_banks" / f"{_cache_key(model_fingerprint, vocabulary, text_source, texts)}.safetensors"


def _read_cached(path: Path, expected: dict[str, str], n_rows: int) -> torch.Tensor | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        embeddings = load_file(str(path))["embeddings"]
    except (OSError, SafetensorError, KeyError) as exc:
        warnings.warn(f"ignoring unreadable text-bank cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        return None
    if any(metadata.get(k) != v for k, v in expected.items()) or embeddings.shape[0] != n_rows:
        # A hash collision or a hand-edited file; re-encoding is cheap next to explaining with wrong rows.
        warnings.warn(f"ignoring text-bank cache {path}: metadata does not match", RuntimeWarning, stacklevel=3)
        return None
    return embeddings.float()


def _write_cache(path: Path, embeddings: torch.Tensor, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename so a concurrent reader never sees a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"embeddings": embeddings.contiguous()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_text_bank(
    vocabulary: ConceptVocabulary,
    encode_texts: TextEncoder,
    *,
    model_fingerprint: str,
    text_source: str = "definition",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    chunk_size: int = 256,
    progress: bool = True,
) -> TextBank:
    """Encode every synset's text once (or read it from the cache).

    Args:
        vocabulary: the vocabulary T.
        encode_texts: ``list[str] (n) -> (n, E)`` text embeddings; called without autograd.
        model_fingerprint: a string that changes whenever the text encoder's output would (model name,
            weights, precision, tokenizer). Part of the cache key.
        text_source: ``"definition"`` (gloss, default, as the reference) or ``"lemmas"``.
        cache_dir: root cache directory; default :func:`default_cache_dir`.
        use_cache: read and write the on-disk cache.
        chunk_size: texts per ``encode_texts`` call (the reference used 256).
        progress: show a tqdm bar while encoding.

    Returns:
        The :class:`TextBank`; ``from_cache`` says whether anything was encoded.

    Raises:
        ValueError: for an empty fingerprint, a bad chunk size, or an encoder returning the wrong number of rows.
    """
    if not isinstance(model_fingerprint, str) or not model_fingerprint:
        raise ValueError("model_fingerprint must be a non-empty string identifying the text encoder")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    texts = vocabulary.texts(text_source)
    path = text_bank_cache_path(
        vocabulary, model_fingerprint, text_source=text_source, cache_dir=cache_dir, texts=texts
    )
    metadata = {
        "format": _CACHE_FORMAT,
        "model_fingerprint": model_fingerprint,
        "vocabulary_digest": vocabulary.digest(),
        "text_source": text_source,
    }
    if use_cache and path.exists():
        cached = _read_cached(path, metadata, len(texts))
        if cached is not None:
            return TextBank(cached, vocabulary.digest(), text_source, model_fingerprint, from_cache=True)

    chunks = []
    with torch.inference_mode(), tqdm(
        total=len(texts), desc="ConVis: encoding synset texts", unit="text", disable=not progress
    ) as bar:
        for start in range(0, len(texts), chunk_size):
            batch = texts[start : start + chunk_size]
            out = torch.as_tensor(encode_texts(batch)).detach().float().cpu()
            if out.ndim != 2 or out.shape[0] != len(batch):
                raise ValueError(
                    f"encode_texts returned shape {tuple(out.shape)} for {len(batch)} texts; expected (n, E)"
                )
            chunks.append(F.normalize(out, dim=-1))
            bar.update(len(batch))
    embeddings = torch.cat(chunks).clone()  # clone: leave inference mode with an ordinary tensor
    if use_cache:
        _write_cache(path, embeddings, metadata)
    return TextBank(embeddings, vocabulary.digest(), text_source, model_fingerprint, from_cache=False)
