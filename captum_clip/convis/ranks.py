"""Per-window similarity ranks over the vocabulary, and the best rank inside each concept's subtree
(ConVis spec §1c).

For window x̃ and synset s: z(x̃, s) = cos(E_I(x̃), E_T(text(s))); rank(x̃, s) = position of s when T is sorted by z,
descending (0 = most similar). For concept c: r_min(x̃, c) = min over s ∈ Sub(c) of rank(x̃, s), i.e.
max_rank_sim = 1 − r_min/|T|. The ranks do not depend on the concept, so one rank matrix per image serves every
concept.

Everything runs on the device of its inputs (the model's, in a sweep), vectorised over windows and concepts, in
chunks that bound the ``(windows × vocabulary)`` and ``(windows × concepts × subtree)`` intermediates.
A few concepts do not need the full rank matrix: :func:`subtree_best_ranks` counts, for the best synset of each
Sub(c), how many synsets beat it, which gives the same r_min as sorting (ties included) at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "window_similarities",
    "ranks_from_similarities",
    "similarity_ranks",
    "padded_subtree_index",
    "subtree_min",
    "subtree_min_ranks",
    "subtree_best_ranks",
]

# Similarities sorted at once: caps the argsort's (rows × |T|) intermediates at ~128 MB of int64.
_SORT_BUDGET = 1 << 24
# Comparisons at once in subtree_best_ranks: (rows × concepts × |T|) booleans.
_COUNT_BUDGET = 1 << 25


def window_similarities(window_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every window with every synset text.

    Args:
        window_embeddings: ``(P, E)`` raw image embeddings.
        text_embeddings: ``(T, E)`` unit-norm text bank rows.

    Returns:
        ``(P, T)`` float32 z.
    """
    windows = F.normalize(window_embeddings.float(), dim=-1)
    return windows @ text_embeddings.to(windows.device, torch.float32).T


def ranks_from_similarities(z: torch.Tensor) -> torch.Tensor:
    """0-based rank of every column in every row of *z*, by descending value, ties by column (lower first).

    Args:
        z: ``(P, T)`` similarities.

    Returns:
        ``(P, T)`` int64 on z's device; rows are sorted in chunks of bounded size.
    """
    out = torch.empty(z.shape, dtype=torch.long, device=z.device)
    step = max(1, _SORT_BUDGET // max(1, z.shape[1]))
    for start in range(0, z.shape[0], step):
        block = z[start : start + step]
        order = torch.argsort(block, dim=1, descending=True, stable=True)
        positions = torch.arange(z.shape[1], device=z.device).expand_as(order)
        # Inverting the sort permutation gives each synset its position.
        out[start : start + step].scatter_(1, order, positions)
    return out


def similarity_ranks(window_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """0-based rank of every synset in every window, by descending similarity.

    Exact ties (synsets with identical texts have identical rows) are broken by vocabulary row, lower first.

    Args:
        window_embeddings: ``(P, E)`` raw image embeddings.
        text_embeddings: ``(T, E)`` unit-norm text bank rows.

    Returns:
        ``(P, T)`` int64; each row is a permutation of ``0..T-1``.
    """
    return ranks_from_similarities(window_similarities(window_embeddings, text_embeddings))


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


def subtree_best_ranks(z: torch.Tensor, subtrees: Sequence[Sequence[int]]) -> torch.Tensor:
    """r_min straight from the similarities, without sorting: equal to
    ``subtree_min_ranks(ranks_from_similarities(z), subtrees)``, ties included.

    A rank orders synsets by (z descending, row ascending), so the best rank in Sub(c) is the rank of s*, the
    member with the highest z (the lowest row among exact ties), and that rank is the number of synsets t with
    z_t > z_s* or (z_t = z_s* and t < s*). Counting costs a few passes over ``(P, T)`` per concept, against a full
    sort for the rank matrix: cheaper for a handful of concepts.

    Args:
        z: ``(P, T)`` similarities (:func:`window_similarities`).
        subtrees: K lists of vocabulary rows.

    Returns:
        ``(P, K)`` int64 on z's device.
    """
    n_rows, n_cols = z.shape
    index = padded_subtree_index(subtrees, fill=n_cols).to(z.device)
    padding = index == n_cols
    index = index.masked_fill(padding, 0)  # gathered, then masked to -inf: no padded copy of z
    columns = torch.arange(n_cols, device=z.device)
    out = torch.empty(n_rows, len(subtrees), dtype=torch.long, device=z.device)
    row_step = max(1, min(n_rows, _COUNT_BUDGET // max(1, n_cols)))
    concept_step = max(1, _COUNT_BUDGET // max(1, row_step * max(n_cols, index.shape[1])))
    if z.device.type == "cpu":
        concept_step = 1  # a CPU compares (p, T) slabs faster one concept at a time than broadcast to (p, k, T)
    for k0 in range(0, index.shape[0], concept_step):
        chunk, pad = index[k0 : k0 + concept_step], padding[k0 : k0 + concept_step]  # (k, L)
        for p0 in range(0, n_rows, row_step):
            rows = slice(p0, p0 + row_step)
            members = z[rows][:, chunk.flatten()].view(-1, *chunk.shape).masked_fill(pad, -float("inf"))  # (p, k, L)
            best = members.amax(dim=2, keepdim=True)  # (p, k, 1); the -inf padding never wins (z is finite)
            best_row = torch.where(members == best, chunk, n_cols).amin(dim=2, keepdim=True)  # lowest tied row
            block = z[rows][:, None, :]  # (p, 1, T)
            # int32 sums: several times faster than bool -> int64 on a CPU; counts stay below |T|.
            beaten = (block > best).sum(dim=2, dtype=torch.int32)
            tied = (block >= best).sum(dim=2, dtype=torch.int32) - beaten  # 1 (s* alone) unless an exact tie
            if bool((tied > 1).any()):
                beaten += ((block == best) & (columns < best_row)).sum(dim=2, dtype=torch.int32)
            out[rows, k0 : k0 + concept_step] = beaten
    return out
