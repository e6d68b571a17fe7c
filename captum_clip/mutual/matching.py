"""Visual concepts -> textual descriptors (stage (b4)-(b8)) and the class's own descriptors (stage (d)).

Batched over images with padding: image b has L_b <= L concepts (``concept_mask``), all descriptor sets are kept as
(B, D) boolean masks over the bank, and the transport plan is a dense (B, L, D) tensor that is zero outside the
image's concepts x filtered candidates. Zero rows/columns do not take part in Sinkhorn's normalisations and each
image stops iterating on its own convergence test, so each image gets the plan it would get alone (up to float
rounding).

Descriptor ids index the bank (0..D-1). Outputs that are lists per image are padded with -1 (ids) or NaN (scores).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    "DescriptorMatch",
    "topk_intersection",
    "relevance_filter",
    "sinkhorn",
    "select_top_per_concept",
    "order_visual_descriptors",
    "match_descriptors",
    "class_descriptors",
]


class DescriptorMatch(NamedTuple):
    """Result of :func:`match_descriptors` for a batch of B images, L concept slots, bank size D.

    Attributes:
        candidates: (B, D) bool, 𝒞 = ∩_j top-k(ℓ_j).
        threshold: (B,) relevance threshold mean_𝒞(r) - offset (NaN where 𝒞 is empty).
        filtered: (B, D) bool, 𝒞' = {c ∈ 𝒞 : r_c > threshold}.
        plan: (B, L, D) Sinkhorn plan Π, zero outside concepts x 𝒞'.
        selected: (B, L, top) int64 descriptor ids T_j per concept in descending Π order, -1 padded.
        dv_ids: (B, L*top) int64 Dv ordered by importance, -1 padded.
        dv_scores: (B, L*top) importance s(d) = score_scale * r_d, NaN padded.
        dv_lengths: (B,) int64 |Dv|.
        sinkhorn_iters: (B,) int64 Sinkhorn iterations each image used (its stopping rule, at most
            ``sinkhorn_iters``).
    """

    candidates: Tensor
    threshold: Tensor
    filtered: Tensor
    plan: Tensor
    selected: Tensor
    dv_ids: Tensor
    dv_scores: Tensor
    dv_lengths: Tensor
    sinkhorn_iters: Optional[Tensor] = None


def _concept_mask(scores: Tensor, concept_mask: Tensor | None) -> Tensor:
    if concept_mask is None:
        return torch.ones(scores.shape[:2], dtype=torch.bool, device=scores.device)
    return concept_mask.to(scores.device, torch.bool)


def topk_intersection(scores: Tensor, k: int = 500, concept_mask: Tensor | None = None) -> Tensor:
    """𝒞: descriptors in the top-k of *every* concept of the image.

    A bank smaller than k uses k = D, so every descriptor is a candidate. An image with no concept has an empty
    𝒞. Exact ties at the k-th score are broken by ``torch.topk`` (as in the reference).

    Args:
        scores: (B, L, D) concept-vs-descriptor scores ℓ.
        k: per-concept top-k (500 in the paper).
        concept_mask: (B, L) bool valid concept slots; all valid when None.

    Returns:
        (B, D) bool.
    """
    valid = _concept_mask(scores, concept_mask)
    b, l, d = scores.shape
    k = min(k, d)
    idx = scores.topk(k, dim=-1).indices
    member = torch.zeros(b, l, d, dtype=torch.bool, device=scores.device).scatter_(-1, idx, True)
    # Padded concept slots must not constrain the intersection.
    member = member | ~valid[:, :, None]
    return member.all(dim=1) & valid.any(dim=1, keepdim=True)


def relevance_filter(relevance: Tensor, candidates: Tensor, offset: float = 0.02) -> tuple[Tensor, Tensor]:
    """𝒞' = candidates whose image relevance exceeds mean_𝒞(r) - offset (strictly).

    The code's rule; the paper's footnote says "0.02 above the 50th percentile". The mean is taken in the
    relevance dtype (float32 in the reference) and the comparison is strict.

    Args:
        relevance: (B, D) r_c = cos(E_img(x_b), E_txt(desc_c)) with the bare descriptor string.
        candidates: (B, D) bool 𝒞.
        offset: 0.02 in the reference.

    Returns:
        ``(filtered, threshold)``: (B, D) bool and (B,) threshold (NaN and nothing kept where 𝒞 is empty).
    """
    count = candidates.sum(dim=-1)
    total = torch.where(candidates, relevance, torch.zeros_like(relevance)).sum(dim=-1)
    mean = total / count.to(relevance.dtype)  # NaN for an empty 𝒞, as in the reference
    threshold = mean - torch.tensor(offset, dtype=relevance.dtype, device=relevance.device)
    return candidates & (relevance > threshold[:, None]), threshold


def sinkhorn(
    cost: Tensor,
    mask: Tensor,
    tau: float = 1.0,
    iters: int = 1000,
    tol: Optional[float] = 1e-12,
    check_every: int = 1,
    return_iters: bool = False,
) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Sinkhorn-Knopp on similarity scores: Π⁰ = exp(Ĉ/τ), then up to ``iters`` x (row-normalise,
    column-normalise), each image stopping once converged.

    Ends column-normalised: each active column sums to 1, rows do not. Entries outside ``mask`` are 0 and stay 0.
    Each row's maximum is subtracted before ``exp``; the first row normalisation cancels that factor exactly, so
    this only prevents overflow for small τ. A single concept makes the plan all ones (no transport).

    **Stopping rule.** The row and column targets (1 each) are inconsistent when L ≠ M, so the iteration converges
    to a column-normalised plan whose active rows all sum to M_b / L_b (active columns / active rows of image b).
    Like POT's ``sinkhorn_knopp`` (which checks the marginal its last step does not enforce, every 10 iterations,
    ``stopThr`` 1e-9 on a probability vector), image b stops when the row sums its next row step divides by are all
    within ``tol`` of M_b / L_b, relatively. Those row sums are the ones the next iteration needs anyway, so the
    check costs one comparison (and, on a GPU, one host sync every ``check_every`` iterations). A stopped image is
    left alone while the others go on, so a batch gives each image the iterations it would get alone.

    Sinkhorn converges linearly, so when the rule fires the plan is within err/(1 - rate) of its limit; an image
    that can reach ``tol`` within ``iters`` iterations has 1 - rate >= ln(1/tol)/iters, which bounds the distance
    to the ``iters``-iteration plan by a few tens of ``tol`` (relative; < 1e-10 for the default 1e-12, far inside
    the golden rtol 1e-5). CLIP-like scores stop after 2-10 iterations instead of 1000. A support that never
    reaches the rule (float32 rounding above ``tol``, or a mask whose active block is not connected) runs all
    ``iters``, which is the fixed-iteration result.

    Args:
        cost: (B, L, M) similarities (2.5·ℓ in the paper); higher = more mass.
        mask: (B, L, M) bool active entries (valid concepts x filtered candidates).
        tau: temperature τ (ε = 1/τ in the reference's naming; 1).
        iters: the most iterations (1000, the reference's fixed count).
        tol: relative row-sum tolerance of the stopping rule; None (or a negative value) runs all ``iters``.
        check_every: iterations between checks (1: the check is free on the CPU).
        return_iters: also return the iterations each image used.

    Returns:
        (B, L, M) plan, dtype of ``cost``; with ``return_iters``, ``(plan, used)`` where used is (B,) int64.
    """
    if check_every < 1:
        raise ValueError(f"check_every must be a positive integer; got {check_every!r}.")
    neg = torch.finfo(cost.dtype).min
    row_max = torch.where(mask, cost, torch.full_like(cost, neg)).amax(dim=-1, keepdim=True)
    row_max = torch.where(mask.any(dim=-1, keepdim=True), row_max, torch.zeros_like(row_max))
    plan = torch.where(mask, torch.exp((cost - row_max) / tau), torch.zeros_like(cost))
    # Inactive rows/columns sum to 0; any positive divisor leaves their zeros alone, and an active sum is >= the
    # smallest normal number long before it could underflow.
    tiny = torch.finfo(cost.dtype).tiny
    b = plan.shape[0]
    used = torch.full((b,), iters, dtype=torch.int64, device=plan.device)
    stop = tol is not None and tol >= 0 and iters > 0 and b > 0
    if stop:
        rows_on = mask.any(dim=-1)  # (B, L)
        n_rows = rows_on.sum(dim=-1)
        target = (mask.any(dim=-2).sum(dim=-1).to(cost.dtype) / n_rows.clamp(min=1).to(cost.dtype))[:, None]
        live = torch.arange(b, device=plan.device)
        work, work_rows, work_target = plan, rows_on, target
    else:
        work = plan
    for it in range(iters):
        row_sum = work.sum(dim=-1, keepdim=True)
        if stop and it > 0 and it % check_every == 0:
            err = torch.where(work_rows, (row_sum[..., 0] / work_target - 1).abs(), torch.zeros_like(row_sum[..., 0]))
            done = err.amax(dim=-1) <= tol
            if bool(done.any()):
                if work is not plan:  # (until the first image stops, the work is the plan itself)
                    plan[live[done]] = work[done]
                used[live[done]] = it
                keep = ~done
                live, work, row_sum = live[keep], work[keep], row_sum[keep]
                work_rows, work_target = work_rows[keep], work_target[keep]
                if live.numel() == 0:
                    break
        work /= row_sum.clamp_min_(tiny)
        work /= work.sum(dim=-2, keepdim=True).clamp_min_(tiny)
    if stop and live.numel() and work is not plan:
        plan[live] = work
    return (plan, used) if return_iters else plan


def select_top_per_concept(plan: Tensor, tiebreak: Tensor, mask: Tensor, top: int = 3) -> Tensor:
    """T_j: the ``top`` descriptors of largest Π_j for each concept row (the code's rule, not Eq. 2's "top
    descriptor per column").

    Ties in Π are broken by ``tiebreak`` (the concept's own score ℓ_j), then by ascending id. With one concept Π is
    uniform, so this is the top-``top`` of ℓ over 𝒞' (the reference returns an arbitrary tie order there). Rows
    with fewer than ``top`` active entries return all of them and pad with -1 (the reference raises).

    Args:
        plan: (B, L, D) Π.
        tiebreak: (B, L, D) secondary key.
        mask: (B, L, D) bool active entries.
        top: descriptors per concept (3).

    Returns:
        (B, L, top) int64 ids, -1 padded.
    """
    d = plan.shape[-1]
    top_eff = min(top, d)
    neg = torch.tensor(float("-inf"), dtype=plan.dtype, device=plan.device)
    # Lexicographic (Π desc, tiebreak desc, id asc) via two stable sorts, least significant key first.
    by_tb = torch.where(mask, tiebreak.to(plan.dtype), neg).sort(dim=-1, descending=True, stable=True).indices
    primary = torch.where(mask, plan, neg).gather(-1, by_tb)
    order = by_tb.gather(-1, primary.sort(dim=-1, descending=True, stable=True).indices)[..., :top_eff]
    ok = mask.gather(-1, order)
    sel = torch.where(ok, order, torch.full_like(order, -1))
    if top_eff < top:
        sel = torch.nn.functional.pad(sel, (0, top - top_eff), value=-1)
    return sel


def order_visual_descriptors(
    selected: Tensor, relevance: Tensor, score_scale: float = 2.5
) -> tuple[Tensor, Tensor, Tensor]:
    """Dv = ∪_j T_j, deduplicated (first occurrence in concept-row order), sorted by s(d) = score_scale·r_d
    descending with a *stable* sort (equal scores keep first-occurrence order, ids do not matter).

    Args:
        selected: (B, L, top) ids, -1 padded.
        relevance: (B, D) image relevance r (bare descriptor strings).
        score_scale: 2.5 (CLIPScore's w).

    Returns:
        ``(dv_ids, dv_scores, dv_lengths)``: (B, L*top) int64 -1 padded, (B, L*top) NaN padded, (B,) int64.
    """
    b = selected.shape[0]
    flat = selected.reshape(b, -1)
    n = flat.shape[1]
    valid = flat >= 0
    earlier = torch.ones(n, n, dtype=torch.bool, device=flat.device).tril(-1)
    dup = ((flat[:, :, None] == flat[:, None, :]) & earlier & valid[:, None, :]).any(dim=-1)
    keep = valid & ~dup
    scores = score_scale * relevance.gather(-1, flat.clamp(min=0))
    key = torch.where(keep, scores, torch.tensor(float("-inf"), dtype=scores.dtype, device=scores.device))
    order = key.sort(dim=-1, descending=True, stable=True).indices
    keep_sorted = keep.gather(-1, order)
    ids = torch.where(keep_sorted, flat.gather(-1, order), torch.full_like(flat, -1))
    nan = torch.tensor(float("nan"), dtype=scores.dtype, device=scores.device)
    return ids, torch.where(keep_sorted, scores.gather(-1, order), nan), keep.sum(dim=-1)


def match_descriptors(
    concept_scores: Tensor,
    image_relevance: Tensor,
    concept_mask: Tensor | None = None,
    k: int = 500,
    offset: float = 0.02,
    tau: float = 1.0,
    sinkhorn_iters: int = 1000,
    top: int = 3,
    score_scale: float = 2.5,
    compute_dtype: torch.dtype | None = torch.float64,
    sinkhorn_tol: Optional[float] = 1e-12,
) -> DescriptorMatch:
    """Textual descriptors of each visual concept and the ordered Dv of each image.

    Pipeline: 𝒞 = ∩_j top-k(ℓ_j) → 𝒞' by the relevance filter → Π = Sinkhorn(score_scale·ℓ[:, 𝒞'] / τ), stopped
    per image on convergence →
    top-``top`` per concept row → Dv deduplicated and ordered by s(d) = score_scale·r_d.

    Degenerate inputs (the reference crashes on the last three):

    * bank smaller than k: k = D, so 𝒞 is the whole bank;
    * a single concept: Π is uniform; T is the top-``top`` of ℓ over 𝒞' (see :func:`select_top_per_concept`);
    * fewer than ``top`` filtered candidates: every concept takes all of 𝒞' (``selected`` is -1 padded);
    * empty 𝒞 (possible once D >= k·L_b/(L_b-1)) or no concept at all: threshold NaN, Dv empty.

    Args:
        concept_scores: (B, L, D) ℓ = W_D z_j (or (L, D) for one image), rows in concept visiting order.
        image_relevance: (B, D) (or (D,)) r = cos(E_img(x_b), E_txt(d)) with bare descriptor strings.
        concept_mask: (B, L) bool valid concept slots (images with L_b < L); all valid when None.
        k: candidate top-k (500). offset: relevance offset (0.02). tau: Sinkhorn temperature (1).
        sinkhorn_iters: the most Sinkhorn iterations (1000, the reference's fixed count). top: descriptors per
            concept (3). score_scale: 2.5.
        compute_dtype: dtype of the Sinkhorn iterations (float64 by default for stable pick order; None keeps
            the scores' dtype, which is what the float32 reference does). The returned plan has the scores' dtype.
        sinkhorn_tol: Sinkhorn's stopping tolerance (see :func:`sinkhorn`; 1e-12 keeps the plan within ~1e-12 of
            the 1000-iteration one in float64); None runs all ``sinkhorn_iters``.

    Returns:
        :class:`DescriptorMatch` (unbatched input still gives B = 1).
    """
    if concept_scores.dim() == 2:
        concept_scores = concept_scores[None]
        image_relevance = image_relevance[None]
        concept_mask = None if concept_mask is None else concept_mask[None]
    valid = _concept_mask(concept_scores, concept_mask)
    candidates = topk_intersection(concept_scores, k, valid)
    filtered, threshold = relevance_filter(image_relevance, candidates, offset)
    b, l, d = concept_scores.shape
    # Work on the (B, L, M) sub-problem of the filtered columns (M = max |𝒞'| <= k), in ascending id order;
    # Sinkhorn over the whole bank would be ~10x slower for the same result.
    m_max = max(int(filtered.sum(dim=-1).max()), 1) if b else 1
    cols = torch.sort((~filtered).to(torch.uint8), dim=-1, stable=True).indices[:, :m_max]
    col_ok = filtered.gather(-1, cols)
    active = valid[:, :, None] & col_ok[:, None, :]
    # Ĉ is formed in the scores' dtype (the reference multiplies in float32) before any upcast.
    cost = (concept_scores * score_scale).gather(-1, cols[:, None, :].expand(b, l, m_max))
    work = cost if compute_dtype is None else cost.to(compute_dtype)
    sub_plan, used = sinkhorn(work, active, tau=tau, iters=sinkhorn_iters, tol=sinkhorn_tol, return_iters=True)
    sub_sel = select_top_per_concept(sub_plan, work, active, top=top)
    gathered = cols[:, None, :].expand(b, l, m_max).gather(-1, sub_sel.clamp(min=0))
    selected = torch.where(sub_sel >= 0, gathered, torch.full_like(gathered, -1))
    plan = torch.zeros_like(concept_scores).scatter_(
        -1, cols[:, None, :].expand(b, l, m_max), sub_plan.to(concept_scores.dtype) * active
    )
    dv_ids, dv_scores, dv_len = order_visual_descriptors(selected, image_relevance, score_scale)
    return DescriptorMatch(candidates, threshold, filtered, plan, selected, dv_ids, dv_scores, dv_len, used)


def class_descriptors(class_descriptor_scores: Tensor, targets: Tensor, u: int = 50) -> Tensor:
    """D_ŷ: the top-u descriptors of each image's class by s_l(ŷ, d) = ⟨w_ŷ, W_D[d]⟩.

    Args:
        class_descriptor_scores: (K, D) W_cls·W_Dᵀ ("weight dissection").
        targets: (B,) class index per image (the zero-shot prediction in the paper).
        u: descriptors per class (50 in the notebook; clipped to D).

    Returns:
        (B, u) int64 ids in descending score order.
    """
    u = min(u, class_descriptor_scores.shape[-1])
    return class_descriptor_scores[targets.long()].topk(u, dim=-1).indices
