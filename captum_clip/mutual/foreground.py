"""Prominent patches ("graph decomposition" foreground) and their connected-component cleanup.

Stage (a2)-(a4) of Mutual Knowledge (Sammani & Deligiannis, NeurIPS 2024). All images of a batch are decomposed
*jointly*: the eigenvector, and therefore what counts as foreground, is shared by the batch, so the result for one
image depends on the others (the reference explains the 50 validation images of one class together).

Conventions: ``features`` are (B, N, C) patch tokens with N = h * w in row-major order (or (B, C, h, w) maps);
the flat patch index used by the (B*N, K) score matrices is ``b * N + r * w + c``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

__all__ = [
    "ProminentScores",
    "ComponentCleanup",
    "ProminentPatches",
    "ProminentProjection",
    "as_patch_tokens",
    "apply_sign_rule",
    "minmax_scale",
    "prominent_patch_scores",
    "threshold_candidates",
    "keep_largest_components",
    "prominent_patches",
    "fit_prominent_projection",
    "project_prominent_scores",
    "upsample_patch_map",
]


class ProminentScores(NamedTuple):
    """Per-patch decomposition scores of a batch.

    Attributes:
        scores: (B*N, K) float32, the K leading columns after the sign rule (and min-max scaling if requested).
        singular_values: (K,) float32, singular values of the decomposed matrix (information only).
        foreground_component: index of the column that separates foreground from background
            (1 for ``"svd"``, 0 for ``"pca"``).
    """

    scores: Tensor
    singular_values: Tensor
    foreground_component: int


class ComponentCleanup(NamedTuple):
    """Result of :func:`keep_largest_components`.

    Attributes:
        mask: (B, h, w) bool, final foreground = first component, OR the second one when it is large enough.
        first_component: (B, h, w) bool, largest 8-connected component (all False when there is no candidate).
        second_component: (B, h, w) bool, largest component of what remains, before the size test.
        second_size: (B,) int64, number of patches of ``second_component`` (0 if there is none).
        second_kept: (B,) bool, ``second_size >= min_second_size``.
    """

    mask: Tensor
    first_component: Tensor
    second_component: Tensor
    second_size: Tensor
    second_kept: Tensor


class ProminentPatches(NamedTuple):
    """Result of :func:`prominent_patches`.

    Attributes:
        scores: (B*N, K) float32 decomposition scores (see :class:`ProminentScores`).
        foreground_score: (B, h, w) float32, the column used for thresholding, as a map.
        candidates: (B, h, w) bool, patches passing the threshold, before the cleanup.
        cleanup: :class:`ComponentCleanup`; ``cleanup.mask`` is the foreground mask m_b.
        singular_values: (K,) float32.
    """

    scores: Tensor
    foreground_score: Tensor
    candidates: Tensor
    cleanup: ComponentCleanup
    singular_values: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, h, w) bool final foreground mask."""
        return self.cleanup.mask


class ProminentProjection(NamedTuple):
    """The foreground decomposition fitted on one set of patches, as a projection applicable to any patches.

    Scores of new rows are ``prep(x) @ axes`` (then min-max scaled with the fitted set's range when ``minmax``),
    where ``prep`` L2-normalises (``"svd"``) or subtracts ``mean`` (``"pca"``). The axes already carry the
    canonical signs and the sign-rule flips decided on the fitted set, so a fitted row projects to the score
    :func:`prominent_patch_scores` gives it.

    Attributes:
        method: ``"svd"`` or ``"pca"``.
        mean: (C,) centring vector in the compute dtype (zeros for ``"svd"``).
        axes: (C, K) projection in the compute dtype (right singular vectors / sigma for ``"svd"``, PCA axes for
            ``"pca"``).
        minmax_low: (K,) float32 per-column minimum on the fitted set, or None without min-max scaling.
        minmax_scale: (K,) float32 1 / per-column range on the fitted set, or None.
        singular_values: (K,) float32.
        foreground_component: the column thresholded for the foreground (1 for ``"svd"``, 0 for ``"pca"``).
    """

    method: str
    mean: Tensor
    axes: Tensor
    minmax_low: Tensor | None
    minmax_scale: Tensor | None
    singular_values: Tensor
    foreground_component: int


def as_patch_tokens(features: Tensor, grid_hw: tuple[int, int] | None = None) -> tuple[Tensor, tuple[int, int]]:
    """Bring patch features to the (B, N, C) token layout.

    Args:
        features: (B, N, C) tokens (CLS already dropped) or (B, C, h, w) spatial maps (CNN towers).
        grid_hw: (h, w) of the patch grid for 3-D input; inferred as a square grid when omitted.

    Returns:
        ``(tokens, (h, w))`` with tokens (B, h*w, C).
    """
    if features.dim() == 4:
        b, c, h, w = features.shape
        return features.flatten(2).transpose(1, 2), (h, w)
    if features.dim() != 3:
        raise ValueError(f"features must be (B, N, C) or (B, C, h, w), got shape {tuple(features.shape)}")
    n = features.shape[1]
    if grid_hw is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"cannot infer a square grid from N={n}; pass grid_hw")
        grid_hw = (side, side)
    h, w = int(grid_hw[0]), int(grid_hw[1])
    if h * w != n:
        raise ValueError(f"grid_hw={grid_hw} does not match N={n}")
    return features, (h, w)


def apply_sign_rule(u: Tensor) -> Tensor:
    """Flip every column whose strictly positive fraction lies in (0.5, 1), so the positive side is the minority.

    This is the reference's rule, not a canonical sign: a column whose entries share one sign, or are positive
    for exactly half the rows, keeps the sign it came with.

    Args:
        u: (R, K) scores.

    Returns:
        (R, K) scores with the selected columns negated.
    """
    return torch.where(_sign_rule_flips(u), -u, u)


def _sign_rule_flips(u: Tensor) -> Tensor:
    """(K,) bool: the columns of (R, K) scores the reference's sign rule negates."""
    frac = (u > 0).to(torch.float64).mean(dim=0)
    return (frac > 0.5) & (frac < 1.0)


def minmax_scale(x: Tensor) -> Tensor:
    """Column-wise min-max scaling to [0, 1], written the way scikit-learn's ``MinMaxScaler(clip=True)`` is.

    sklearn computes ``x * scale + min_`` (not ``(x - lo) / range``); the same form keeps values that sit exactly
    on a threshold (0.4 in the reference) on the same side. A constant column maps to 0.

    Args:
        x: (R, K).

    Returns:
        (R, K), same dtype.
    """
    lo, scale = _minmax_parameters(x)
    return _apply_minmax(x, lo, scale)


def _minmax_parameters(x: Tensor) -> tuple[Tensor, Tensor]:
    lo = x.amin(dim=0)
    rng = x.amax(dim=0) - lo
    rng = torch.where(rng == 0, torch.ones_like(rng), rng)
    return lo, 1.0 / rng


def _apply_minmax(x: Tensor, lo: Tensor, scale: Tensor) -> Tensor:
    return (x * scale + (-lo * scale)).clamp(0.0, 1.0)


def _canonical_column_signs(axes: Tensor) -> Tensor:
    """Signs (K,) making the largest-magnitude entry of each row of ``axes`` (K, C) positive.

    Fixes LAPACK's arbitrary sign before the sign rule so CPU and GPU agree even when the sign rule leaves a
    column alone. For PCA this is scikit-learn >= 1.5's ``svd_flip(u_based_decision=False)`` convention.
    """
    idx = axes.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(axes.gather(1, idx)).squeeze(1)
    return torch.where(sign == 0, torch.ones_like(sign), sign)


def _leading_svd(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k thin SVD of a tall (R, C) matrix.

    For R >> C (B*N ~ 10^4 patches, C ~ 768) the eigendecomposition of the C x C Gram matrix is an order of
    magnitude cheaper than a full SVD and, in float64, as accurate for the leading, well-separated singular
    vectors. A rank-deficient or wide matrix goes through ``torch.linalg.svd``.
    """
    r, c = x.shape
    k = min(k, r, c)
    if r > c:
        evals, evecs = torch.linalg.eigh(x.T @ x)
        s = evals.flip(0)[:k].clamp_min(0).sqrt()
        v = evecs.flip(1)[:, :k]
        if s[-1] > s[0] * 1e-4:  # else the squared condition number costs too much accuracy
            return (x @ v) / s, s, v.T
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    return u[:, :k], s[:k], vh[:k]


def prominent_patch_scores(
    features: Tensor,
    method: str = "svd",
    n_components: int = 3,
    minmax: bool = False,
    compute_dtype: torch.dtype = torch.float64,
) -> ProminentScores:
    """Joint decomposition of all patches of a batch, with the reference's sign rule.

    ``"svd"`` (the paper's "GDC"): rows L2-normalised, thin SVD, keep U[:, :K]; column 1 (second singular vector
    of the cosine affinity F̂F̂ᵀ) separates the object. ``"pca"``: PCA(K) scores of the raw, mean-centred
    features; column 0 is used. The decomposition runs in ``compute_dtype`` (float64 by default, so the masks do
    not hinge on float32 rounding; use float32 on backends without float64) and is returned as float32.

    Args:
        features: (B, N, C) or (B, C, h, w) patch features.
        method: ``"svd"`` or ``"pca"``.
        n_components: K columns kept (the reference keeps 3).
        minmax: the ``threshold_by_negative=False`` variant: min-max scale each column over all B*N rows.
        compute_dtype: dtype of the decomposition.

    Returns:
        :class:`ProminentScores` with scores (B*N, K).
    """
    dec = _decompose(features, method, n_components, compute_dtype)
    # The reference applies the sign rule (and the scaler) in float32, after the decomposition.
    scores = apply_sign_rule(dec.scores.to(torch.float32))
    if minmax:
        scores = minmax_scale(scores)
    return ProminentScores(scores, dec.singular_values.to(torch.float32), dec.component)


class _Decomposition(NamedTuple):
    scores: Tensor  # (R, K) compute dtype, canonical signs, before the sign rule
    singular_values: Tensor
    axes: Tensor  # (C, K) with canonical signs; scores = prep(x) @ axes (up to rounding)
    mean: Tensor
    component: int


def _prepare_rows(features: Tensor, method: str, compute_dtype: torch.dtype) -> Tensor:
    tokens = as_patch_tokens(features)[0] if features.dim() == 4 else features
    flat = tokens.reshape(-1, tokens.shape[-1]).to(compute_dtype)
    if method == "svd":
        return F.normalize(flat, p=2, dim=-1)
    if method == "pca":
        return flat
    raise ValueError(f"unknown foreground method {method!r}; use 'svd' or 'pca'")


def _decompose(features: Tensor, method: str, n_components: int, compute_dtype: torch.dtype) -> _Decomposition:
    flat = _prepare_rows(features, method, compute_dtype)
    if method == "pca":
        mean = flat.mean(dim=0)
        flat = flat - mean
    else:
        mean = torch.zeros(flat.shape[-1], dtype=flat.dtype, device=flat.device)
    u, s, vh = _leading_svd(flat, n_components)
    if method == "pca":
        u = u * s  # PCA scores
    signs = _canonical_column_signs(vh)
    axes = vh.T * signs
    if method == "svd":
        # u = x v / s; a zero singular value means a constant column, whose axis projects to 0 anyway.
        axes = axes / torch.where(s > 0, s, torch.ones_like(s))
    return _Decomposition(u * signs, s, axes, mean, 1 if method == "svd" else 0)


def fit_prominent_projection(
    features: Tensor,
    method: str = "svd",
    n_components: int = 3,
    minmax: bool = False,
    compute_dtype: torch.dtype = torch.float64,
) -> ProminentProjection:
    """Fit the foreground decomposition on a set of patches (e.g. a class-sized reference batch).

    The fit is the one of :func:`prominent_patch_scores`: the sign rule and the min-max range are decided on
    these rows, and :func:`project_prominent_scores` applies them unchanged to other rows.

    Args:
        features: (B, N, C) tokens or (B, C, h, w) maps of the fitting set.
        method, n_components, minmax, compute_dtype: as in :func:`prominent_patch_scores`.

    Returns:
        :class:`ProminentProjection`.
    """
    dec = _decompose(features, method, n_components, compute_dtype)
    flips = _sign_rule_flips(dec.scores.to(torch.float32))
    signs = torch.where(flips, -1.0, 1.0).to(dec.axes)
    lo = scale = None
    if minmax:
        lo, scale = _minmax_parameters(torch.where(flips, -1.0, 1.0) * dec.scores.to(torch.float32))
    return ProminentProjection(method, dec.mean, dec.axes * signs, lo, scale,
                               dec.singular_values.to(torch.float32), dec.component)


def project_prominent_scores(projection: ProminentProjection, features: Tensor) -> Tensor:
    """Scores of any patches under a fitted :class:`ProminentProjection`.

    Args:
        projection: from :func:`fit_prominent_projection`.
        features: (B, N, C) tokens or (B, C, h, w) maps with the fitted set's C.

    Returns:
        (B*N, K) float32 scores (min-max scaled, and clipped to [0, 1], when the projection was fitted so).
    """
    flat = _prepare_rows(features, projection.method, projection.axes.dtype)
    if flat.shape[-1] != projection.axes.shape[0]:
        raise ValueError(f"features have {flat.shape[-1]} channels; the projection was fitted on "
                         f"{projection.axes.shape[0]}")
    scores = ((flat - projection.mean.to(flat.device)) @ projection.axes.to(flat.device)).to(torch.float32)
    if projection.minmax_low is not None:
        scores = _apply_minmax(scores, projection.minmax_low.to(scores.device),
                               projection.minmax_scale.to(scores.device))
    return scores


def threshold_candidates(values: Tensor, threshold: float = 0.0) -> Tensor:
    """Candidate patches: ``values >= threshold`` and ``values != 0``.

    The reference zeroes values below the threshold and then treats non-zero as foreground, so with threshold 0
    an exact 0 is background, while with 0.4 a value of exactly 0.4 (compared in the values' dtype) is foreground.

    Args:
        values: (...,) scores.
        threshold: scalar threshold, cast to ``values.dtype`` before comparing.

    Returns:
        (...,) bool.
    """
    thr = torch.tensor(threshold, dtype=values.dtype, device=values.device)
    return (values >= thr) & (values != 0)


def keep_largest_components(candidates: Tensor, min_second_size: int = 5) -> ComponentCleanup:
    """Per image: keep the largest 8-connected component, plus the second largest if it has >= ``min_second_size``.

    All images are labelled in one ``scipy.ndimage.label`` call with a structure that connects only within an
    image. Labels then run in row-major scan order inside each image, so "first maximal count" reproduces the
    reference's ``argmax(bincount)`` tie rule (the component met first in scan order wins).

    No foreground: the reference returns a 1-element array there, which becomes an all-ones (whole-image) mask
    after upsampling and then crashes the parts step. Here the mask is all False, ``second_size`` is 0 and the
    image simply has no concepts downstream.

    Args:
        candidates: (B, h, w) bool candidate maps (any device; labelling runs on CPU).
        min_second_size: the second component is added when its size is >= this (5 in the reference).

    Returns:
        :class:`ComponentCleanup`, tensors on the device of ``candidates``.
    """
    device = candidates.device
    cand = candidates.detach().to("cpu", torch.bool).numpy()
    b = cand.shape[0]
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity inside an image, nothing across images
    labels, n_labels = ndimage.label(cand, structure=structure)
    if n_labels == 0:
        empty = torch.zeros(cand.shape, dtype=torch.bool, device=device)
        zeros = torch.zeros(b, dtype=torch.int64, device=device)
        return ComponentCleanup(empty, empty.clone(), empty.clone(), zeros, zeros.bool())

    sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)
    # Image owning each label; a component never spans two images, so any of its pixels tells.
    owner = np.zeros(n_labels + 1, dtype=np.int64)
    owner[labels.ravel()] = np.repeat(np.arange(b), labels[0].size)
    owner = owner[1:]
    lab_ids = np.arange(1, n_labels + 1)
    # Rank labels inside each image by (-size, label): first = largest, second = largest of the rest.
    order = np.lexsort((lab_ids, -sizes[1:], owner))
    owner_sorted = owner[order]
    starts = np.searchsorted(owner_sorted, np.arange(b), side="left")
    counts = np.bincount(owner, minlength=b)
    first_lab = np.where(counts >= 1, lab_ids[order][np.minimum(starts, n_labels - 1)], -1)
    second_lab = np.where(counts >= 2, lab_ids[order][np.minimum(starts + 1, n_labels - 1)], -1)

    first = labels == first_lab[:, None, None]
    second = labels == second_lab[:, None, None]
    second_size = np.where(second_lab > 0, sizes[np.maximum(second_lab, 0)], 0).astype(np.int64)
    kept = second_size >= min_second_size
    mask = first | (second & kept[:, None, None])
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return ComponentCleanup(as_t(mask), as_t(first), as_t(second), as_t(second_size), as_t(kept))


def prominent_patches(
    features: Tensor,
    grid_hw: tuple[int, int] | None = None,
    method: str = "svd",
    threshold_by_negative: bool = True,
    minmax_threshold: float = 0.4,
    n_components: int = 3,
    min_second_size: int = 5,
    compute_dtype: torch.dtype = torch.float64,
    projection: ProminentProjection | None = None,
) -> ProminentPatches:
    """Foreground (prominent) patches of a batch: joint decomposition, threshold, per-image component cleanup.

    Args:
        features: (B, N, C) tokens or (B, C, h, w) maps of all images explained together.
        grid_hw: (h, w) for (B, N, C) input; a square grid is assumed when omitted.
        method: ``"svd"`` (GDC, column 1) or ``"pca"`` (column 0).
        threshold_by_negative: True: foreground = score > 0. False: min-max scale the columns and keep
            scaled score >= ``minmax_threshold``.
        minmax_threshold: threshold of the min-max variant (0.4 in the reference).
        n_components: decomposition columns kept (3 in the reference; only one is used).
        min_second_size: size from which the second component is added (5).
        compute_dtype: dtype of the decomposition.
        projection: a decomposition fitted elsewhere (:func:`fit_prominent_projection`, e.g. on a reference
            batch) to apply to ``features`` instead of decomposing them; ``method``, ``n_components``,
            ``threshold_by_negative`` and ``compute_dtype`` then come from its fit.

    Returns:
        :class:`ProminentPatches`; ``.mask`` is the (B, h, w) bool foreground, all False for an image without
        candidates (documented guard, see :func:`keep_largest_components`).
    """
    tokens, (h, w) = as_patch_tokens(features, grid_hw)
    if projection is None:
        dec = prominent_patch_scores(
            tokens, method=method, n_components=n_components, minmax=not threshold_by_negative,
            compute_dtype=compute_dtype,
        )
    else:
        dec = ProminentScores(project_prominent_scores(projection, tokens), projection.singular_values,
                              projection.foreground_component)
        threshold_by_negative = projection.minmax_low is None
    b = tokens.shape[0]
    if dec.foreground_component >= dec.scores.shape[1]:
        raise ValueError("too few patches/channels for the foreground component")
    fg_score = dec.scores[:, dec.foreground_component].reshape(b, h, w)
    threshold = 0.0 if threshold_by_negative else minmax_threshold
    candidates = threshold_candidates(fg_score, threshold)
    cleanup = keep_largest_components(candidates, min_second_size=min_second_size)
    return ProminentPatches(dec.scores, fg_score, candidates, cleanup, dec.singular_values)


def upsample_patch_map(patch_map: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Nearest-neighbour upsampling of patch masks or label maps to pixels.

    Uses the same source-index rule as ``cv2.resize(INTER_NEAREST)`` (floor(dst * in / out)), so a 14x14 map at
    224 px is a plain 16x16 block repeat and non-integer ratios pick the same source patches as the reference.

    Args:
        patch_map: (B, h, w) bool or integer map (e.g. part labels with -1 background).
        size: output S or (H, W).

    Returns:
        (B, H, W) with the dtype of ``patch_map``.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    x = patch_map[:, None].to(torch.float32)
    up = F.interpolate(x, size=hw, mode="nearest")[:, 0]
    if patch_map.dtype == torch.bool:
        return up > 0.5
    return up.round().to(patch_map.dtype)
