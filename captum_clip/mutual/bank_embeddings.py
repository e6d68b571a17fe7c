"""CLIP text embeddings of a descriptor bank, cached on disk per model.

Mutual Knowledge needs two embeddings of every descriptor d:

* W_D[d] = E_txt("a photo showing {d}"), L2-normalised (App. L; the row normalisation is the spec's guess of the
  standard builder): the concept-vs-descriptor scores ℓ_j = W_D z_j and the class's descriptor scores
  ⟨w_ŷ, W_D[d]⟩ use it;
* E_txt(d) of the *bare* string, L2-normalised: the relevance filter and the importance s(d) of Dv use it.

Encoding a 4k-descriptor bank costs minutes on a CPU and depends only on the text tower and the strings, so both
matrices are cached in captum_clip's one embedding cache (:mod:`captum_clip.core.cache`), keyed by the text
tower's fingerprint, the bank digest and the template.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from torch import Tensor, nn

from ..core.cache import cache_path, cached_embeddings
from ..core.text import encode_texts, text_tower_fingerprint
from .descriptor_bank import DescriptorBank

__all__ = [
    "DESCRIPTOR_TEMPLATE",
    "BankEmbeddings",
    "bank_embeddings_cache_path",
    "encode_descriptor_bank",
]

#: Template of the descriptor classifier's rows (App. L of the paper).
DESCRIPTOR_TEMPLATE = "a photo showing {}"

_CACHE_KIND = "mutual_banks"


@dataclass(frozen=True)
class BankEmbeddings:
    """Unit-norm text embeddings of a bank's descriptors.

    Attributes:
        prompted: (D, E) float32 W_D, rows E_txt(template.format(d)) / norm.
        bare: (D, E) float32 rows E_txt(d) / norm.
        bank_digest: :meth:`DescriptorBank.digest` of the bank they belong to.
        fingerprint: the text tower's fingerprint they were computed with.
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


def bank_embeddings_cache_path(bank: DescriptorBank, fingerprint: str, template: str = DESCRIPTOR_TEMPLATE,
                               cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache root>/mutual_banks/<key>.safetensors`` for this text tower, bank and template."""
    return cache_path(_CACHE_KIND, _cache_key(bank, fingerprint, template), cache_dir)


def _cache_key(bank: DescriptorBank, fingerprint: str, template: str) -> dict:
    return {"text_tower": fingerprint, "bank": bank.digest(), "template": template}


def encode_descriptor_bank(
    bank: DescriptorBank,
    model: nn.Module,
    tokenizer: Callable[[Sequence[str]], Tensor],
    *,
    template: str = DESCRIPTOR_TEMPLATE,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> BankEmbeddings:
    """Both embeddings of every descriptor, from the on-disk cache when possible.

    Args:
        bank: the descriptor bank.
        model: the CLIP model (its ``encode_text`` is called under ``no_grad``; the model is not modified).
        tokenizer: ``list[str] -> (n, context) token ids``.
        template: the W_D template with one ``{}``.
        cache_dir: cache root; default :func:`captum_clip.core.cache.cache_root`.
        use_cache: read and write the cache.

    Returns:
        :class:`BankEmbeddings` on the CPU.

    Raises:
        ValueError: a template without ``{}``.
    """
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}'; got {template!r}.")
    fingerprint = text_tower_fingerprint(model, tokenizer)
    stage = "Mutual Knowledge: the descriptor embeddings"

    def encode() -> dict:
        return {"prompted": encode_texts(model, tokenizer, [template.format(d) for d in bank.descriptors],
                                         stage=stage, desc="Mutual: descriptor bank (prompted)").cpu(),
                "bare": encode_texts(model, tokenizer, list(bank.descriptors), stage=stage,
                                     desc="Mutual: descriptor bank").cpu()}

    tensors, from_cache = cached_embeddings(_CACHE_KIND, _cache_key(bank, fingerprint, template), encode,
                                            names=("prompted", "bare"), rows=len(bank), cache_dir=cache_dir,
                                            use_cache=use_cache)
    return BankEmbeddings(tensors["prompted"], tensors["bare"], bank.digest(), fingerprint, from_cache=from_cache)
