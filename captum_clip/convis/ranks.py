"""Per-window similarity ranks over the vocabulary, and the best rank inside each concept's subtree
(ConVis spec §1c).

For window x̃ and synset s: z(x̃, s) = cos(E_I(x̃), E_T(text(s))); rank(x̃, s) = position of s when T is sorted by z,
descending (0 = most similar). For concept c: r_min(x̃, c) = min over s ∈ Sub(c) of rank(x̃, s), i.e.
max_rank_sim = 1 − r_min/|T|. The ranks do not depend on the concept, so one rank matrix per image serves every
concept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["window_similarities", "similarity_ranks", "padded_subtree_index", "subtree_min", "subtree_min_ranks"]


def window_similarities(window_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every window with every synset text.

    Args:
        window_embeddings: ``(P, E)`` raw image embeddings.
        text_embeddings: ``(T, E)`` unit-norm text bank rows.

    Returns:
        ``(P, T)`` float32 z.
    """
    windows = F.normalize(window_embeddings.float(), dim=-1)
    return windows @ text_embeddings.float().T


def similarity_ranks(window_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """0-based rank of every synset in every window, by descending similarity.

    Exact ties (synsets with identical texts have identical rows) are broken by vocabulary row, lower first.

    Args:
        window_embeddings: ``(P, E)`` raw image embeddings.
        text_embeddings: ``(T, E)`` unit-norm text bank rows.

    Returns:
        ``(P, T)`` int64; each row is a permutation of ``0..T-1``.
    """
    z = window_similarities(window_embeddings, text_embeddings)
    order = torch.argsort(z, dim=1, descending=True, stable=True)
    positions = torch.arange(z.shape[1], device=z.device).expand_as(order)
    # Inverting the sort permutation gives each synset its position.
    return torch.empty_like(order).scatter_(1, order, positions)


def padded_subtree_index(subtrees: Sequence[Sequence[int]], fill: int) -> torch.Tensor:
    """Stack ragged Sub(c) row lists into one index matrix.

    Args:
        subtrees: K lists of vocabulary rows.
        fill: index written into the padding (point it at a column that can never win a min).

    Returns:
        ``(K, L)`` int64 with L = the largest |Sub(c)|.
    """
    if not subtrees or any(len(s) == 0 for s in subtrees):
        raise ValueError("every concept needs a non-empty Sub(c)")
    width = max(len(s) for s in subtrees)
    index = torch.full((len(subtrees), width), fill, dtype=torch.long)
    for k, rows in enumerate(subtrees):
        index[k, : len(rows)] = torch.as_tensor(list(rows), dtype=torch.long)
    return index


def subtree_min_ranks(ranks: torch.Tensor, subtrees: Sequence[Sequence[int]]) -> torch.Tensor:
    """r_min: the best rank reached by each concept or any of its hyponyms, per window.

    Args:
        ranks: ``(P, T)`` from :func:`similarity_ranks`.
        subtrees: K lists of the vocabulary rows of Sub(c) (:meth:`ConceptVocabulary.subtree`).

    Returns:
        ``(P, K)`` int64.
    """
    return subtree_min(ranks, subtrees, pad_value=ranks.shape[1])


# Elements gathered at once: caps the (P, K, L) intermediate at ~256 MB of int64.
_GATHER_BUDGET = 1 << 25


def subtree_min(values: torch.Tensor, subtrees: Sequence[Sequence[int]], pad_value: float) -> torch.Tensor:
    """Minimum of each row over each concept's columns, vectorised over concepts in memory-bounded chunks.

    Args:
        values: ``(N, T)``, one column per vocabulary row.
        subtrees: K lists of column indices.
        pad_value: a value no real entry undercuts (``|T|`` for ranks, ``inf`` for floats).

    Returns:
        ``(N, K)`` with ``out[:, k] = values[:, subtrees[k]].min(1)``.
    """
    n_rows, n_cols = values.shape
    # One extra column holding pad_value pads the ragged subtrees without ever being the minimum.
    extended = torch.cat([values, values.new_full((n_rows, 1), pad_value)], dim=1)
    index = padded_subtree_index(subtrees, fill=n_cols).to(values.device)
    step = max(1, _GATHER_BUDGET // max(1, n_rows * index.shape[1]))
    parts = []
    for start in range(0, index.shape[0], step):
        chunk = index[start : start + step]
        parts.append(extended[:, chunk.flatten()].view(n_rows, *chunk.shape).amin(dim=2))
    return torch.cat(parts, dim=1)
