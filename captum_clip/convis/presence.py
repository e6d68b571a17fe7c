"""Which concepts an image shows most: every synset's map at once, ranked by map mass (the authors' browsing
interface, ConVis spec §1e "webapp precompute" and §2c).

The webapp scores a pixel for concept c by ``h = 1 − r̄/|T|`` (r̄ = the aggregated best rank in Sub(c)), maps it
through ``exp(−10 (1 − h))``, rescales with one global min/max over *all* concepts and pixels of the image,
thresholds at 225/255 and sorts the concepts by the number of pixels above the threshold. The global scaling is
what makes masses comparable across concepts: a per-concept min-max map always reaches 1 somewhere.

Computing Sub(c)'s best value for all |T| concepts by gathering each subtree would touch O(|T|²) entries (the root's
subtree is all of T). :func:`subtree_min_all` instead sweeps the hierarchy once from the leaves up, so all |T|
closures cost one pass over the edges.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .aggregation import AGGREGATIONS, WindowCoverage
from .vocabulary import ConceptVocabulary

__all__ = ["ConceptMass", "subtree_min_all", "concept_masses", "PRESENCE_GAMMA", "PRESENCE_THRESHOLD"]

#: Sharpness of the webapp's ``exp(−γ (1 − h))`` display transform.
PRESENCE_GAMMA = 10.0
#: The webapp's display threshold (225 of 255 grey levels).
PRESENCE_THRESHOLD = 225 / 255


@dataclass(frozen=True)
class ConceptMass:
    """How much of an image one concept covers.

    Attributes:
        concept: synset name.
        mass: fraction of the (squared) image whose globally scaled score clears :data:`PRESENCE_THRESHOLD`.
        best_rank: the concept's best aggregated rank over the image (lower = more present; the tie-breaker).
    """

    concept: str
    mass: float
    best_rank: float


def _heights(vocabulary: ConceptVocabulary) -> torch.Tensor:
    """Longest path from each node down to a leaf of H (leaves: 0)."""
    names = vocabulary.names
    children = [[vocabulary.index(c) for c in vocabulary.children(n)] for n in names]
    height = [-1] * len(names)
    for start in range(len(names)):
        stack = [start]
        while stack:  # iterative post-order: a deep hierarchy must not hit Python's recursion limit
            node = stack[-1]
            pending = [c for c in children[node] if height[c] < 0]
            if pending:
                stack.extend(pending)
            else:
                height[node] = 1 + max((height[c] for c in children[node]), default=-1)
                stack.pop()
    return torch.tensor(height)


def subtree_min_all(values: torch.Tensor, vocabulary: ConceptVocabulary) -> torch.Tensor:
    """``out[:, c] = min over s ∈ Sub(c) of values[:, s]`` for every concept c of T at once.

    A node's subtree minimum is its own value or its children's subtree minima, so nodes are finished in order
    of height, each level with one scatter-min over its edges.

    Args:
        values: ``(R, |T|)``, one column per vocabulary row (ranks, or mean ranks).
        vocabulary: T and its hierarchy H.

    Returns:
        ``(R, |T|)``, same dtype.
    """
    if values.shape[-1] != len(vocabulary):
        raise ValueError(f"{values.shape[-1]} columns for a vocabulary of {len(vocabulary)}")
    edges = torch.tensor(vocabulary.edges, dtype=torch.long).reshape(-1, 2)
    height = _heights(vocabulary)
    best = values.T.clone()  # (|T|, R): rows are nodes, so index_reduce_ works on dim 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="index_reduce", category=UserWarning)
        _sweep_levels(best, edges, height)
    return best.T.contiguous()


def _sweep_levels(best: torch.Tensor, edges: torch.Tensor, height: torch.Tensor) -> None:
    parent_height = height[edges[:, 0]]
    for level in range(1, int(height.max()) + 1 if len(height) else 0):
        level_edges = edges[parent_height == level]
        if len(level_edges):
            # index_reduce_ is flagged beta but has been stable since torch 2.0; the warning is noise here.
            best.index_reduce_(0, level_edges[:, 0].to(best.device), best[level_edges[:, 1].to(best.device)],
                               "amin", include_self=True)


def cell_mean_ranks_all(ranks: torch.Tensor, vocabulary: ConceptVocabulary, coverage: WindowCoverage,
                        aggregation: str, closure: bool = True) -> torch.Tensor:
    """Aggregated best rank of every concept on every coverage cell.

    Args:
        ranks: ``(P, |T|)`` window ranks.
        vocabulary: T and H.
        coverage: the windows' cells.
        aggregation: ``"max_then_mean"`` or ``"mean_then_max"``.
        closure: best rank over Sub(c) (ConVis); False: each synset's own rank only.

    Returns:
        ``(|T|, n_cells)`` float64 (lower = better).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
    count = coverage.cell_count.clamp_min(1)
    if not closure:
        return coverage.cell_sums(ranks) / count
    if aggregation == "max_then_mean":
        return coverage.cell_sums(subtree_min_all(ranks, vocabulary)) / count
    per_synset = coverage.cell_sums(ranks) / count  # (|T|, n_cells)
    return subtree_min_all(per_synset.T, vocabulary).T


def concept_masses(
    ranks: torch.Tensor,
    vocabulary: ConceptVocabulary,
    coverage: WindowCoverage,
    *,
    aggregation: str = "mean_then_max",
    candidates: Sequence[str] | None = None,
    closure: bool = True,
    gamma: float = PRESENCE_GAMMA,
    threshold: float = PRESENCE_THRESHOLD,
) -> list[ConceptMass]:
    """Every candidate concept's map mass on one image, most present first.

    Args:
        ranks: ``(P, |T|)`` window ranks of the image.
        vocabulary: T and H.
        coverage: the windows' pixel coverage.
        aggregation: the webapp used ``"mean_then_max"``.
        candidates: synset names to rank (default: all of T). The global scaling always uses all of T, so a
            concept's mass does not depend on which others are listed.
        closure: score c by its best rank over Sub(c) (ConVis, default). Over all of T this favours broad
            concepts (entity.n.01 covers everything), which is why the webapp browses the tree level by level
            (pass a node's children as *candidates*); False scores each synset by its own text only, which lists
            the most specific matches.
        gamma: sharpness of ``exp(−γ r̄/|T|)``.
        threshold: presence threshold on the globally scaled score.

    Returns:
        :class:`ConceptMass` entries sorted by mass, then by best rank (both best first).
    """
    cell_rank = cell_mean_ranks_all(ranks, vocabulary, coverage, aggregation, closure)  # (|T|, n_cells)
    score = torch.exp(-gamma * cell_rank / len(vocabulary))
    lo, hi = score.min(), score.max()
    scaled = (score - lo) / (hi - lo) if hi > lo else torch.zeros_like(score)
    # Cells tile the image; count each cell's pixels so masses are exact fractions of the image.
    pixels = torch.bincount(
        (coverage.row_cell[:, None] * coverage.grid_shape[1] + coverage.col_cell[None, :]).flatten(),
        minlength=cell_rank.shape[1],
    )
    mass = ((scaled >= threshold).long() * pixels).sum(1).double() / coverage.size**2
    best = cell_rank.min(1).values
    rows = range(len(vocabulary)) if candidates is None else [vocabulary.index(vocabulary.resolve(c))
                                                              for c in candidates]
    entries = [ConceptMass(vocabulary.names[r], float(mass[r]), float(best[r])) for r in rows]
    return sorted(entries, key=lambda e: (-e.mass, e.best_rank))
