"""CLIP text embeddings of a descriptor bank, cached on disk per model.

Mutual Knowledge needs two embeddings of every descriptor d:

* W_D[d] = E_txt("a photo showing {d}"), L2-normalised (App. L; the row normalisation is the spec's guess of the
  standard builder): the concept-vs-descriptor scores ℓ_j = W_D z_j and the class's descriptor scores
  ⟨w_ŷ, W_D[d]⟩ use it;
* E_txt(d) of the *bare* string, L2-normalised: the relevance filter and the importance s(d) of Dv use it.

Encoding a 4k-descriptor bank costs minutes on a CPU and depends only on the text tower and the strings, so both
matrices are cached in one safetensors file keyed by a model fingerprint, the bank digest and the template.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .descriptor_bank import DescriptorBank

__all__ = [
    "DESCRIPTOR_TEMPLATE",
    "BankEmbeddings",
    "model_fingerprint",
    "bank_embeddings_cache_path",
    "encode_descriptor_bank",
]

#: Template of the descriptor classifier's rows (App. L of the paper).
DESCRIPTOR_TEMPLATE = "a photo showing {}"

# Bumped whenever the stored layout or meaning of a cached file changes.
_CACHE_FORMAT = "1"
# Elements sampled per tensor for the fingerprint; with each tensor's sum this separates any two checkpoints.
_FINGERPRINT_SAMPLES = 4096


@dataclass(frozen=True)
class BankEmbeddings:
    """Unit-norm text embeddings of a bank's descriptors.

    Attributes:
        prompted: (D, E) float32 W_D, rows E_txt(template.format(d)) / norm.
        bare: (D, E) float32 rows E_txt(d) / norm.
        bank_digest: :meth:`DescriptorBank.digest` of the bank they belong to.
        fingerprint: the model fingerprint they were computed with.
        from_cache: True when read from disk.
    """

    prompted: Tensor
    bare: Tensor
    bank_digest: str
    fingerprint: str
    from_cache: bool = False

    def to(self, device) -> "BankEmbeddings":
        return BankEmbeddings(self.prompted.to(device), self.bare.to(device), self.bank_digest, self.fingerprint,
                              self.from_cache)


def model_fingerprint(model: nn.Module, tokenizer=None) -> str:
    """A short id of a model's weights (and tokenizer) that changes whenever its text embeddings would.

    Every state-dict entry contributes its name, shape, dtype, its sum and ~4k evenly strided values, so it
    costs one pass over the weights without hashing every byte.

    Args:
        model: the CLIP model.
        tokenizer: its tokenizer (type and context length are included).

    Returns:
        A 32-character hex string.
    """
    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            h.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            if flat.numel() == 0:
                continue
            if flat.is_floating_point() or flat.is_complex():
                h.update(f"{float(flat.double().sum()):.6e}".encode())
            step = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
            h.update(flat[::step].to("cpu", torch.float64).numpy().tobytes())
    if tokenizer is not None:
        h.update(f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}|"
                 f"{getattr(tokenizer, 'context_length', '')}".encode())
    return h.hexdigest()[:32]


def bank_embeddings_cache_path(bank: DescriptorBank, fingerprint: str, template: str = DESCRIPTOR_TEMPLATE,
                               cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/mutual_banks/<key>.safetensors`` for this model fingerprint, bank and template."""
    from ..convis.text_bank import default_cache_dir

    h = hashlib.sha256()
    for part in (_CACHE_FORMAT, fingerprint, bank.digest(), template):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "mutual_banks" / f"{h.hexdigest()[:40]}.safetensors"


def _read(path: Path, metadata: dict, n_rows: int) -> tuple[Tensor, Tensor] | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = handle.metadata() or {}
        tensors = load_file(str(path))
        prompted, bare = tensors["prompted"], tensors["bare"]
    except (OSError, SafetensorError, KeyError) as error:
        warnings.warn(f"ignoring unreadable descriptor-embedding cache {path}: {error}", RuntimeWarning, stacklevel=3)
        return None
    mismatch = any(stored.get(k) != v for k, v in metadata.items())
    if mismatch or prompted.shape[0] != n_rows or bare.shape != prompted.shape:
        warnings.warn(f"ignoring descriptor-embedding cache {path}: it does not match", RuntimeWarning, stacklevel=3)
        return None
    return prompted.float(), bare.float()


def _write(path: Path, prompted: Tensor, bare: Tensor, metadata: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename so a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        save_file({"prompted": prompted.contiguous(), "bare": bare.contiguous()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _encode(texts: Sequence[str], model: nn.Module, tokenizer: Callable, device, chunk_size: int) -> Tensor:
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), chunk_size):
            tokens = tokenizer(list(texts[start:start + chunk_size])).to(device)
            rows.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(rows)


def encode_descriptor_bank(
    bank: DescriptorBank,
    model: nn.Module,
    tokenizer: Callable[[Sequence[str]], Tensor],
    *,
    template: str = DESCRIPTOR_TEMPLATE,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    chunk_size: int = 256,
    fingerprint: str | None = None,
) -> BankEmbeddings:
    """Both embeddings of every descriptor, from the on-disk cache when possible.

    Args:
        bank: the descriptor bank.
        model: the CLIP model (its ``encode_text`` is called under ``no_grad``; the model is not modified).
        tokenizer: ``list[str] -> (n, context) token ids``.
        template: the W_D template with one ``{}``.
        cache_dir: cache root; default ``captum_clip.convis.text_bank.default_cache_dir()``.
        use_cache: read and write the cache.
        chunk_size: texts per ``encode_text`` call.
        fingerprint: precomputed :func:`model_fingerprint` (computed when None).

    Returns:
        :class:`BankEmbeddings` on the CPU.

    Raises:
        ValueError: a template without ``{}`` or a non-positive chunk size.
    """
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}'; got {template!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive; got {chunk_size}.")
    fingerprint = fingerprint or model_fingerprint(model, tokenizer)
    path = bank_embeddings_cache_path(bank, fingerprint, template, cache_dir)
    metadata = {"format": _CACHE_FORMAT, "fingerprint": fingerprint, "bank_digest": bank.digest(), "template": template}
    if use_cache and path.is_file():
        cached = _read(path, metadata, len(bank))
        if cached is not None:
            return BankEmbeddings(*cached, bank.digest(), fingerprint, from_cache=True)
    device = next(model.parameters()).device
    prompted = _encode([template.format(d) for d in bank.descriptors], model, tokenizer, device, chunk_size)
    bare = _encode(list(bank.descriptors), model, tokenizer, device, chunk_size)
    if use_cache:
        _write(path, prompted, bare, metadata)
    return BankEmbeddings(prompted, bare, bank.digest(), fingerprint, from_cache=False)
