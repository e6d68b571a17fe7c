"""Mutual information between the visual (Dv) and textual (D_ŷ) descriptor sets, its dynamics and AUC (stage (e)).

The released code's MI is log N + log M + H(joint), with H computed as -Σ p log(p + 1e-9) over the N x M
contingency table T_ij = [X_i = Y_j], p = T / k, k = ΣT. Eq. 1/3 of the paper write H(X) + H(Y) - H(X, Y); the code
(and Eq. 9) use "+", which is what Table 3's magnitudes (6.5-8.2 > log 750) require, so the code's form is used.
Because every non-zero cell of p equals 1/k, H = -log(1/k + 1e-9) in closed form, so MI ≈ log(N·M·k). MI is 0
when the sets share nothing (the reference's NaN, mapped to 0).

Id lists are (B, N) int64 tensors padded with -1; a descriptor set never repeats an id. All MI values are
float64 (the reference uses numpy float64).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "MIDynamics",
    "mutual_descriptor_mask",
    "mutual_information",
    "order_by_score",
    "mutual_information_dynamics",
    "curve_auc",
    "aggregate_curves",
]

_EPS = 1e-9


class MIDynamics(NamedTuple):
    """MI dynamics of a batch.

    Attributes:
        curves: (B, N_max + 1) float64, MI after removing the t most important visual descriptors, t = 0..N_b;
            NaN beyond N_b + 1 points.
        lengths: (B,) int64 valid points per curve (N_b + 1).
        mi: (B,) float64 MI_0 = curves[:, 0].
        auc: (B,) float64 plain mean of the valid curve points (the code's "AUC", not a trapezoid).
        order: (B, N_max) int64 the visual ids in removal order (descending score, stable), -1 padded.
    """

    curves: Tensor
    lengths: Tensor
    mi: Tensor
    auc: Tensor
    order: Tensor


def _mi_from_counts(n: Tensor, m: Tensor, k: Tensor) -> Tensor:
    n, m, k = n.double(), m.double(), k.double()
    mi = torch.log(n) + torch.log(m) - torch.log(1.0 / k + _EPS)
    return torch.where(k > 0, mi, torch.zeros_like(mi))


def mutual_descriptor_mask(x_ids: Tensor, y_ids: Tensor) -> Tensor:
    """Which visual descriptors are also textual ones: Dv ∩ D_ŷ as a mask over Dv.

    Args:
        x_ids: (B, N) visual ids, -1 padded.
        y_ids: (B, M) textual ids, -1 padded.

    Returns:
        (B, N) bool.
    """
    hit = (x_ids[:, :, None] == y_ids[:, None, :]) & (y_ids[:, None, :] >= 0)
    return hit.any(dim=-1) & (x_ids >= 0)


def mutual_information(x_ids: Tensor, y_ids: Tensor) -> Tensor:
    """MI between the visual and textual descriptor sets (code's "+" form).

    Args:
        x_ids: (B, N) visual ids Dv, -1 padded (N_b = number of valid ids).
        y_ids: (B, M) textual ids D_ŷ, -1 padded.

    Returns:
        (B,) float64: log N_b + log M_b - log(1/k + 1e-9), or 0 when k = |Dv ∩ D_ŷ| = 0 (also for empty sets).
    """
    k = mutual_descriptor_mask(x_ids, y_ids).sum(dim=-1)
    return _mi_from_counts((x_ids >= 0).sum(-1), (y_ids >= 0).sum(-1), k)


def order_by_score(ids: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Stable descending sort of ids by score (equal scores keep their input order); padding goes last.

    Args:
        ids: (B, N) int64, -1 padded.
        scores: (B, N) float, ignored at padded slots.

    Returns:
        ``(ids, scores)`` reordered, (B, N) each.
    """
    valid = ids >= 0
    key = torch.where(valid, scores.double(), torch.tensor(float("-inf"), dtype=torch.float64, device=ids.device))
    order = key.sort(dim=-1, descending=True, stable=True).indices
    return ids.gather(-1, order), scores.gather(-1, order)


def mutual_information_dynamics(x_ids: Tensor, y_ids: Tensor, x_scores: Tensor | None = None) -> MIDynamics:
    """MI as the visual descriptors are removed one by one, most important first.

    Removal replaces an id with a sentinel that matches nothing while N and M stay fixed, so MI_t depends only on
    k_t = number of mutual descriptors among positions >= t: the curve steps down by log(k/(k-1)) at each mutual
    descriptor and ends at 0. It has N_b + 1 points; the AUC is their plain mean.

    Args:
        x_ids: (B, N) visual ids Dv, -1 padded, valid ids first.
        y_ids: (B, M) textual ids D_ŷ, -1 padded.
        x_scores: (B, N) importance s(d); when given, X is first stably sorted by descending score (the reference
            sorts inside its dynamics helper). When None, X is taken as already ordered.

    Returns:
        :class:`MIDynamics`.
    """
    if x_scores is not None:
        x_ids, _ = order_by_score(x_ids, x_scores)
    b, n_max = x_ids.shape
    n = (x_ids >= 0).sum(dim=-1)
    m = (y_ids >= 0).sum(dim=-1)
    mutual = mutual_descriptor_mask(x_ids, y_ids).long()
    # k_t = Σ_{i >= t} mutual_i, t = 0..N_max (the trailing 0 is k after removing everything).
    k_t = torch.cat([mutual.flip(-1).cumsum(-1).flip(-1), torch.zeros(b, 1, dtype=torch.long, device=x_ids.device)], -1)
    curves = _mi_from_counts(n[:, None], m[:, None], k_t)
    t = torch.arange(n_max + 1, device=x_ids.device)[None, :]
    lengths = n + 1
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=x_ids.device)
    curves = torch.where(t < lengths[:, None], curves, nan)
    return MIDynamics(curves, lengths, curves[:, 0], curve_auc(curves), x_ids)


def curve_auc(curves: Tensor) -> Tensor:
    """Plain mean of the valid (non-NaN) points of each curve.

    Args:
        curves: (B, T) NaN padded.

    Returns:
        (B,) same dtype.
    """
    return curves.nanmean(dim=-1)


def aggregate_curves(curves: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Dataset/class-level curve: zero-pad every curve to the longest one, average pointwise, AUC = its mean.

    The reference's dataset helper averages in float32 (``dtype=torch.float32``, the default); the notebook's
    two-curve average uses float64. The AUC is always the float64 mean of the averaged curve.

    Args:
        curves: (K, T) curves, NaN padded (e.g. ``MIDynamics.curves``, possibly concatenated over batches).

    Returns:
        ``(curve, auc)``: (T',) in ``dtype`` with T' the longest valid length, and () float64.
    """
    valid = ~torch.isnan(curves)
    length = int(valid.sum(dim=-1).amax().item()) if curves.numel() else 0
    padded = torch.where(valid, curves, torch.zeros_like(curves))[:, :length].to(dtype)
    curve = padded.mean(dim=0)
    return curve, curve.double().mean()
