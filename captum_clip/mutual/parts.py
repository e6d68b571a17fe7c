"""Visual concepts = parts of the prominent patches (stage (a5) of Mutual Knowledge).

Parts are fitted *jointly* on the foreground patches of all images of a batch, so a part id means the same thing
in every image. Two methods: PCA (deterministic; matches the reference exactly when the solver is pinned) and
k-means (the reference's ``kmeans_pytorch`` run is unseeded; here it is scikit-learn ``KMeans`` with a fixed seed).

Label maps use -1 for background. Each image visits its present parts in the reference's order: ascending
lexicographic order of the parts' display colours (:data:`REFERENCE_PART_COLOURS`), i.e. 2, 1, 0, 4, 3 for five
parts. That order is the row order of the concept-vs-descriptor score matrix downstream.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from .foreground import as_patch_tokens, upsample_patch_map

__all__ = [
    "REFERENCE_PART_COLOURS",
    "PartSegmentation",
    "PartModel",
    "fit_part_model",
    "assign_parts",
    "pca_parts",
    "kmeans_parts",
    "concept_visit_order",
    "concept_pixel_masks",
]

#: Display colours the reference gives part ids 0..20 (red, green, blue, yellow, orange, pink, purple, cyan,
#: maroon, olive, ...). Only their lexicographic order is used: it fixes the order concepts are visited in.
REFERENCE_PART_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 165, 0),
    (255, 192, 203), (160, 32, 240), (0, 255, 255), (128, 0, 0), (128, 128, 0),
    (128, 0, 128), (255, 105, 180), (75, 0, 130), (0, 128, 0), (0, 128, 128),
    (70, 130, 180), (255, 69, 0), (139, 69, 19), (0, 0, 128), (255, 20, 147),
    (255, 140, 0),
)


class PartSegmentation(NamedTuple):
    """Joint part decomposition of a batch.

    Attributes:
        labels: (B, h, w) int64 part id per patch, -1 for background.
        fg_index: (n_fg,) int64 flat patch indices ``b*N + r*w + c`` of the foreground rows, ascending.
        scores: (n_fg, L) float32 per-part scores the labels are the argmax of (PCA: min-max scaled PCA scores;
            k-means: negative squared distances to the centres).
        concept_order: (B, L) int64 present parts of each image in visiting order, -1 padded.
        n_concepts: (B,) int64 number of distinct parts present (L_b <= L).
        components: (L, C) float32 PCA axes or k-means centres (in the space the method works in).
        mean: (C,) float32 PCA mean (zeros for k-means).
        explained_variance: (L,) float32 PCA explained variance (k-means: cluster sizes).
    """

    labels: Tensor
    fg_index: Tensor
    scores: Tensor
    concept_order: Tensor
    n_concepts: Tensor
    components: Tensor
    mean: Tensor
    explained_variance: Tensor


def _foreground_rows(features: Tensor, fg_mask: Tensor, grid_hw) -> tuple[np.ndarray, np.ndarray, tuple, int]:
    if grid_hw is None and fg_mask.dim() == 3:
        grid_hw = tuple(fg_mask.shape[-2:])
    tokens, (h, w) = as_patch_tokens(features, grid_hw)
    b, n, c = tokens.shape
    fg_flat = fg_mask.reshape(-1).to("cpu", torch.bool).numpy()
    if fg_flat.size != b * n:
        raise ValueError(f"fg_mask has {fg_flat.size} patches, features have {b * n}")
    fg_index = np.flatnonzero(fg_flat)
    rows = tokens.reshape(b * n, c).detach().to("cpu", torch.float32).numpy()[fg_index]
    return rows, fg_index, (b, h, w), c


def _assemble(label_rows: np.ndarray, fg_index: np.ndarray, bhw: tuple, n_parts: int, device,
              scores, components, mean, variance) -> PartSegmentation:
    b, h, w = bhw
    labels = np.full(b * h * w, -1, dtype=np.int64)
    labels[fg_index] = label_rows
    labels_t = torch.from_numpy(labels.reshape(b, h, w)).to(device)
    order, n_concepts = concept_visit_order(labels_t, n_parts)
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a)).to(device)  # noqa: E731
    return PartSegmentation(
        labels_t, as_t(fg_index.astype(np.int64)), as_t(scores.astype(np.float32)), order, n_concepts,
        as_t(components.astype(np.float32)), as_t(mean.astype(np.float32)), as_t(variance.astype(np.float32)),
    )


class PartModel(NamedTuple):
    """Parts fitted on the foreground patches of one set of images, applicable to the patches of any image.

    Fitting on a class-sized batch and assigning the patches of one image reproduces that image's labels in the
    joint fit, which is how one image can be explained "as part of" its class (the paper fits 50 images).

    Attributes:
        method: ``"pca"`` or ``"kmeans"``.
        n_parts: L.
        estimator: the fitted scikit-learn ``PCA`` / ``KMeans``; None when fewer than 2 foreground rows were
            given (every foreground patch is then part 0).
        signs: (k,) PCA axis signs (scikit-learn >= 1.5 convention); ones for k-means.
        scale_low, scale: (k,) ``MinMaxScaler`` parameters of the PCA scores on the fitted rows (unused for
            k-means).
        dtype: numpy dtype the rows are cast to before ``transform``.
        components: (L, C) PCA axes (signed) or k-means centres, zero padded.
        mean: (C,) PCA mean (mean of the fitted rows when there are too few; zeros for k-means).
        explained_variance: (L,) PCA explained variance (k-means: cluster sizes).
    """

    method: str
    n_parts: int
    estimator: object
    signs: np.ndarray
    scale_low: np.ndarray
    scale: np.ndarray
    dtype: type
    components: np.ndarray
    mean: np.ndarray
    explained_variance: np.ndarray


def fit_part_model(
    features: Tensor,
    fg_mask: Tensor,
    method: str = "pca",
    n_parts: int = 5,
    grid_hw: tuple[int, int] | None = None,
    *,
    svd_solver: str = "covariance_eigh",
    dtype: type = np.float64,
    random_state: int | None = 0,
    n_init: int = 1,
    init: str = "random",
    max_iter: int = 500,
) -> PartModel:
    """Fit PCA or k-means parts on the foreground patches of all images of ``features`` jointly.

    See :func:`pca_parts` and :func:`kmeans_parts` for the two methods and their deviations from the reference.

    Args:
        features: (B, N, C) tokens or (B, C, h, w) maps of the fitting set.
        fg_mask: (B, h, w) bool foreground of the fitting set.
        method: ``"pca"`` or ``"kmeans"``.
        n_parts: L.
        grid_hw: (h, w) when ``features`` is (B, N, C); defaults to ``fg_mask``'s grid.
        svd_solver, dtype: PCA only (see :func:`pca_parts`).
        random_state: PCA (randomized solvers) and k-means seed.
        n_init, init, max_iter: k-means only (see :func:`kmeans_parts`).

    Returns:
        :class:`PartModel`.
    """
    if method not in ("pca", "kmeans"):
        raise ValueError(f"unknown part method {method!r}; use 'pca' or 'kmeans'")
    if n_parts < 1:
        raise ValueError(f"n_parts must be >= 1, got {n_parts}")
    rows, _, _, c = _foreground_rows(features, fg_mask, grid_hw)
    if rows.shape[0] < 2:
        # Nothing to decompose; a lone patch (if any) is part 0.
        mean = rows.mean(0) if rows.shape[0] else np.zeros(c)
        return PartModel(method, n_parts, None, np.ones(0), np.zeros(0), np.ones(0), dtype,
                         np.zeros((n_parts, c)), mean, np.zeros(n_parts))
    if method == "kmeans":
        rows = F.normalize(torch.from_numpy(rows), p=2, dim=-1).numpy()
        k = min(n_parts, rows.shape[0])
        km = KMeans(n_clusters=k, init=init, n_init=n_init, max_iter=max_iter, random_state=random_state)
        with warnings.catch_warnings():
            # Duplicate rows can leave fewer distinct clusters than requested; fewer parts is documented.
            warnings.simplefilter("ignore", ConvergenceWarning)
            km.fit(rows)
        pad = n_parts - k
        sizes = np.bincount(km.labels_, minlength=n_parts).astype(np.float32)
        return PartModel(method, n_parts, km, np.ones(k), np.zeros(k), np.ones(k), np.float32,
                         np.pad(km.cluster_centers_, ((0, pad), (0, 0))), np.zeros(c), sizes)

    k = min(n_parts, rows.shape[0], c)
    rows = rows.astype(dtype, copy=False)
    pca = PCA(n_components=k, svd_solver=svd_solver, random_state=random_state)
    with warnings.catch_warnings():
        # Zero total variance (identical foreground features) only makes sklearn's variance *ratio* 0/0; the
        # scores are then all 0 and every patch is part 0, which is the documented outcome.
        warnings.simplefilter("ignore", RuntimeWarning)
        pca.fit(rows)
    comps = pca.components_
    idx = np.abs(comps).argmax(axis=1)
    sign = np.sign(comps[np.arange(k), idx])
    sign[sign == 0] = 1
    # fit then transform, as the reference does (fit_transform would return U*S, which rounds differently).
    proj = pca.transform(rows) * sign[None, :].astype(rows.dtype)
    # MinMaxScaler(clip=True) fitted on the same rows, in its own arithmetic (x * scale + min_).
    lo = proj.min(axis=0)
    rng = proj.max(axis=0) - lo
    rng[rng == 0] = 1
    scale = (1.0 / rng).astype(proj.dtype)
    pad = n_parts - k
    return PartModel(method, n_parts, pca, sign, lo, scale, dtype, np.pad(comps * sign[:, None], ((0, pad), (0, 0))),
                     pca.mean_, np.pad(pca.explained_variance_, (0, pad)))


def assign_parts(
    model: PartModel, features: Tensor, fg_mask: Tensor, grid_hw: tuple[int, int] | None = None
) -> PartSegmentation:
    """Label the foreground patches of ``features`` with the parts of a fitted :class:`PartModel`.

    PCA: project, apply the fitted min-max scaler (``clip=True``), argmax. K-means: nearest centre in the
    L2-normalised space.

    Args:
        model: from :func:`fit_part_model`.
        features: (B, N, C) tokens or (B, C, h, w) maps.
        fg_mask: (B, h, w) bool foreground.
        grid_hw: (h, w) when ``features`` is (B, N, C); defaults to ``fg_mask``'s grid.

    Returns:
        :class:`PartSegmentation` (tensors on the device of ``features``).
    """
    rows, fg_index, bhw, c = _foreground_rows(features, fg_mask, grid_hw)
    if c != model.components.shape[1]:
        raise ValueError(f"features have {c} channels; the part model was fitted on {model.components.shape[1]}")
    device, n_parts = features.device, model.n_parts
    extras = (model.components, model.mean, model.explained_variance)
    if model.estimator is None:
        scores = np.zeros((rows.shape[0], n_parts), dtype=np.float32)
        scores[:, 0] = 1.0
        return _assemble(np.zeros(rows.shape[0], dtype=np.int64), fg_index, bhw, n_parts, device, scores, *extras)
    k = len(model.signs)
    if model.method == "kmeans":
        rows = F.normalize(torch.from_numpy(rows), p=2, dim=-1).numpy()
        labels = model.estimator.predict(rows) if rows.shape[0] else np.zeros(0, dtype=np.int64)
        dist = model.estimator.transform(rows) ** 2 if rows.shape[0] else np.zeros((0, k))
        scores = np.pad(-dist, ((0, 0), (0, n_parts - k)), constant_values=-np.inf)
        return _assemble(labels, fg_index, bhw, n_parts, device, scores, *extras)
    rows = rows.astype(model.dtype, copy=False)
    if rows.shape[0]:
        proj = model.estimator.transform(rows) * model.signs[None, :].astype(rows.dtype)
    else:
        proj = np.zeros((0, k), dtype=rows.dtype)
    scaled = np.clip(proj * model.scale + (-model.scale_low * model.scale), 0, 1)
    return _assemble(scaled.argmax(axis=1), fg_index, bhw, n_parts, device,
                     np.pad(scaled, ((0, 0), (0, n_parts - k))), *extras)


def pca_parts(
    features: Tensor,
    fg_mask: Tensor,
    n_parts: int = 5,
    grid_hw: tuple[int, int] | None = None,
    svd_solver: str = "covariance_eigh",
    dtype: type = np.float64,
    random_state: int | None = 0,
) -> PartSegmentation:
    """PCA parts: PCA(L) on the raw foreground features of all images, min-max scaled, argmax = part id.

    Deviations from the reference, both deliberate:

    * The solver is exact and pinned. The reference's unpinned ``PCA(5)`` goes randomized and unseeded above
      500 foreground rows, which changes a few to a hundred labels between runs. The default
      (``"covariance_eigh"`` in float64) is ~5x faster than ``"full"`` at 50 images x 768 channels and agrees
      with the golden ``"full"``/float32 reference to <= 1e-5 in the scaled scores; ``svd_solver="full",
      dtype=np.float32`` reproduces the reference arithmetic itself.
    * Axis signs are fixed to scikit-learn >= 1.5's convention (largest-magnitude entry of each axis positive)
      whatever the installed version: min-max scaling maps a flipped column x to 1 - x, so the sign changes the
      partition itself, and scikit-learn <= 1.4 used a different rule.

    Degenerate inputs: no foreground patch gives all -1 labels and ``n_concepts == 0``; a single foreground patch
    is part 0; fewer foreground rows (or channels) than ``n_parts`` fit that many components only, so fewer
    parts can appear.

    Args:
        features: (B, N, C) tokens or (B, C, h, w) maps; the raw (unnormalised) features.
        fg_mask: (B, h, w) (or (B, N)) bool foreground (from
            :func:`~captum_clip.mutual.foreground.prominent_patches`).
        n_parts: L, number of parts (5 in the paper).
        grid_hw: (h, w) when ``features`` is (B, N, C); defaults to ``fg_mask``'s grid.
        svd_solver: passed to ``sklearn.decomposition.PCA`` (``"covariance_eigh"`` needs scikit-learn >= 1.5).
        dtype: numpy dtype the PCA runs in (the scores are returned as float32).
        random_state: passed to ``PCA`` (only used by the randomized solvers).

    Returns:
        :class:`PartSegmentation` (tensors on the device of ``features``).
    """
    model = fit_part_model(features, fg_mask, "pca", n_parts, grid_hw, svd_solver=svd_solver, dtype=dtype,
                           random_state=random_state)
    return assign_parts(model, features, fg_mask, grid_hw)


def kmeans_parts(
    features: Tensor,
    fg_mask: Tensor,
    n_parts: int = 5,
    grid_hw: tuple[int, int] | None = None,
    random_state: int = 0,
    n_init: int = 1,
    init: str = "random",
    max_iter: int = 500,
) -> PartSegmentation:
    """K-means parts: Euclidean k-means on the L2-normalised foreground features of all images.

    The reference runs ``kmeans_pytorch`` (random initial centres drawn from the data, up to 500 iterations) with
    numpy's global, unseeded RNG, so it is not reproducible; the paper reports +-0.03 MI across seeds. This uses
    scikit-learn ``KMeans`` with the same kind of run (``init="random"``, one initialisation, ``max_iter=500``)
    and a fixed ``random_state``, so results are deterministic for a given scikit-learn version. Pass
    ``init="k-means++", n_init=10`` for a stabler but less reference-like clustering.

    Degenerate inputs: as :func:`pca_parts`; with fewer foreground rows than ``n_parts`` only that many clusters
    are fitted.

    Args:
        features: (B, N, C) tokens or (B, C, h, w) maps.
        fg_mask: (B, h, w) bool foreground.
        n_parts: L, number of clusters (5 in the paper).
        grid_hw: (h, w) when ``features`` is (B, N, C); defaults to ``fg_mask``'s grid.
        random_state, n_init, init, max_iter: passed to ``sklearn.cluster.KMeans``.

    Returns:
        :class:`PartSegmentation`; ``components`` are the (L, C) centres in the normalised space and ``scores``
        the negative squared distances to them.
    """
    model = fit_part_model(features, fg_mask, "kmeans", n_parts, grid_hw, random_state=random_state,
                           n_init=n_init, init=init, max_iter=max_iter)
    return assign_parts(model, features, fg_mask, grid_hw)


def _visit_rank(n_parts: int) -> np.ndarray:
    """rank[j] = position of part j in the reference's visiting order (parts beyond the palette come last)."""
    n_pal = min(n_parts, len(REFERENCE_PART_COLOURS))
    by_colour = sorted(range(n_pal), key=lambda j: REFERENCE_PART_COLOURS[j])
    rank = np.arange(n_parts, dtype=np.int64)
    rank[by_colour] = np.arange(n_pal)
    return rank


def concept_visit_order(labels: Tensor, n_parts: int) -> tuple[Tensor, Tensor]:
    """Present parts of each image, in the reference's visiting order (ascending display colour).

    Args:
        labels: (B, ...) integer part labels, -1 (or any negative) for background.
        n_parts: L, the number of part ids.

    Returns:
        ``(order, n_concepts)``: order (B, L) int64 part ids, -1 padded; n_concepts (B,) int64.
    """
    b = labels.shape[0]
    flat = labels.reshape(b, -1).long()
    valid = flat >= 0
    present = torch.zeros(b, n_parts + 1, dtype=torch.bool, device=labels.device)
    present.scatter_(1, torch.where(valid, flat, n_parts), True)
    present = present[:, :n_parts]
    rank = torch.as_tensor(_visit_rank(n_parts), device=labels.device)
    key = torch.where(present, rank[None, :], n_parts + rank[None, :])
    order = key.argsort(dim=1)
    n_concepts = present.sum(dim=1)
    slot = torch.arange(n_parts, device=labels.device)[None, :]
    order = torch.where(slot < n_concepts[:, None], order, -1)
    return order, n_concepts


def concept_pixel_masks(
    labels: Tensor,
    concept_order: Tensor,
    size: int | tuple[int, int],
    pixel_mask: Tensor | None = None,
) -> Tensor:
    """Pixel masks M_{b,j} of the visual concepts, in visiting order.

    The patch label map is nearest-upsampled; pixels outside ``pixel_mask`` (the CRF-refined foreground, when
    used) are dropped, which can empty a concept: its mask is then all False (downstream it has no ellipse).

    Args:
        labels: (B, h, w) int part labels, -1 background.
        concept_order: (B, L) part ids in visiting order, -1 padded (from :func:`concept_visit_order`).
        size: output S or (H, W).
        pixel_mask: optional (B, H, W) bool mask the concepts are restricted to.

    Returns:
        (B, L, H, W) bool; rows of padded slots are all False.
    """
    up = upsample_patch_map(labels.long(), size)
    if pixel_mask is not None:
        up = torch.where(pixel_mask.to(up.device, torch.bool), up, -1)
    masks = up[:, None] == concept_order[:, :, None, None]
    return masks & (concept_order >= 0)[:, :, None, None]
