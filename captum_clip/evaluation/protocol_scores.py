"""The scoring arithmetic of the papers' evaluation protocols: pure, batched functions on tensors.

Each protocol is split into per-image (or per-query) *sufficient statistics*, which add up or concatenate across
images and distributed shards, and a separate reduction to the reported numbers, so that a run split over shards
reports exactly what one process would:

* Pointing Game (TorchRay): :func:`pointing_hits` -> :func:`pointing_counts` -> :func:`pointing_from_counts`
  (or :func:`pointing_summary`).
* CAM mIoU (CLIP Surgery / the WSSS literature): :func:`cam_confusion` (add the matrices) ->
  :func:`miou_from_confusion`, :func:`best_threshold`.
* ImageNet-Segmentation (Chefer et al., TextSpan): :func:`binary_segmentation_stats` (concatenate) ->
  :func:`segmentation_summary`.
* Deletion / insertion (Grad-ECLIP): :func:`perturbation_inputs` -> the model's scores -> :func:`curve_auc`
  (average over images).

WSOL (MaxBoxAcc, MaxBoxAccV2) is in :mod:`.convis_wsol`.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CAM_THRESHOLDS",
    "average_precision",
    "best_threshold",
    "binary_segmentation_stats",
    "cam_confusion",
    "curve_auc",
    "miou_from_confusion",
    "peak_points",
    "perturbation_counts",
    "perturbation_inputs",
    "pointing_counts",
    "pointing_from_counts",
    "pointing_hits",
    "pointing_summary",
    "relevance_order",
    "scaled_tolerance",
    "segmentation_summary",
]

#: The CAM threshold sweep: 0.05, 0.10, ..., 0.95.
CAM_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_maps(maps: Tensor, name: str = "maps") -> None:
    _require(isinstance(maps, Tensor), f"{name} must be a torch.Tensor; got {type(maps).__name__}")
    _require(maps.dim() == 3, f"{name} must be (N, H, W); got shape {tuple(maps.shape)}")
    _require(maps.numel() > 0, f"{name} is empty (shape {tuple(maps.shape)})")
    _require(bool(torch.isfinite(maps).all()), f"{name} contain NaN or Inf")


def _check_same_shape(maps: Tensor, other: Tensor, name: str) -> None:
    _require(isinstance(other, Tensor), f"{name} must be a torch.Tensor; got {type(other).__name__}")
    _require(tuple(other.shape) == tuple(maps.shape),
             f"{name} of shape {tuple(other.shape)} do not match the maps' {tuple(maps.shape)}")


# ---------------------------------------------------------------------------------------------------------------
# Pointing Game
# ---------------------------------------------------------------------------------------------------------------


def scaled_tolerance(size: int, at_224: float = 15.0) -> float:
    """The pointing tolerance for maps of side ``size``: ``at_224`` pixels at 224, scaled linearly.

    TorchRay's 15 px are pixels of the image at its own resolution (its maps are resized to the image); for maps
    at a model's input size this keeps the same fraction of a 224 px image.
    """
    _require(size > 0, f"the map side must be positive; got {size}")
    return float(at_224) * size / 224.0


def peak_points(maps: Tensor) -> Tensor:
    """Each map's maximiser as TorchRay's ``_saliency_to_point``: the argmax of the flattened map.

    Args:
        maps: ``(Q, H, W)``.

    Returns:
        ``(Q, 2)`` int64 ``(x, y)``. Ties: the first maximum in row-major order (``torch.argmax``'s rule).
    """
    _check_maps(maps)
    flat = maps.flatten(1).argmax(dim=1)
    width = maps.shape[-1]
    return torch.stack([flat % width, flat // width], dim=1)


def pointing_hits(maps: Tensor, masks: Tensor, tolerance: float, ties: str = "first") -> Tensor:
    """Pointing Game hits as TorchRay's ``PointingGame.evaluate`` (Zhang et al. 2016).

    The point is :func:`peak_points`; it hits when a mask pixel lies at squared distance ``< tolerance**2``
    (TorchRay's strict ``(v + u) < tolerance**2`` disk) from it. An empty mask is a miss.

    Args:
        maps: ``(Q, H, W)`` one map per query (image, class).
        masks: ``(Q, H, W)`` bool, the query class's pixels.
        tolerance: in pixels, > 0 (see :func:`scaled_tolerance`).
        ties: ``"first"`` (TorchRay: the first maximum in raster order) or ``"any"`` (Quantus's PointingGame:
            a hit when any maximal pixel is within tolerance).

    Returns:
        ``(Q,)`` bool.
    """
    _require(ties in ("first", "any"), f"ties is 'first' or 'any'; got {ties!r}")
    if ties == "any":
        return _any_peak_hits(maps, masks, tolerance)
    _check_maps(maps)
    _check_same_shape(maps, masks, "masks")
    _require(masks.dtype == torch.bool, f"masks must be bool; got {masks.dtype}")
    _require(float(tolerance) > 0 and np.isfinite(float(tolerance)), f"tolerance must be positive; got {tolerance}")
    points = peak_points(maps)
    _, height, width = maps.shape
    rows = torch.arange(height, device=maps.device)
    cols = torch.arange(width, device=maps.device)
    # Integer squared distances are exact; compare against the float radius squared as TorchRay does.
    d2 = ((rows[None, :, None] - points[:, 1, None, None]) ** 2
          + (cols[None, None, :] - points[:, 0, None, None]) ** 2)
    accept = d2.double() < float(tolerance) ** 2
    return (masks.to(maps.device) & accept).flatten(1).any(dim=1)


def _any_peak_hits(maps: Tensor, masks: Tensor, tolerance: float) -> Tensor:
    _check_maps(maps)
    _check_same_shape(maps, masks, "masks")
    _require(float(tolerance) > 0 and np.isfinite(float(tolerance)), f"tolerance must be positive; got {tolerance}")
    peaks = (maps == maps.flatten(1).amax(dim=1).view(-1, 1, 1)).float()
    reach = int(np.ceil(float(tolerance)))
    offsets = torch.arange(-reach, reach + 1, device=maps.device)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2).double() < float(tolerance) ** 2).float()
    # A mask pixel within tolerance of some peak is a peak within tolerance of the mask: one convolution.
    near = torch.nn.functional.conv2d(peaks[:, None], disk[None, None], padding=reach)[:, 0] > 0
    return (near & masks.to(maps.device)).flatten(1).any(dim=1)


def pointing_counts(hits: Tensor, classes: Tensor, n_classes: int) -> Tensor:
    """Per-class hit and trial counts, which add up over batches and shards.

    Args:
        hits: ``(Q,)`` bool.
        classes: ``(Q,)`` int class ids in ``[0, n_classes)``.
        n_classes: the number of class slots (K + 1 for 1-based ids).

    Returns:
        ``(n_classes, 2)`` int64: column 0 hits, column 1 trials.
    """
    hits, classes = torch.as_tensor(hits), torch.as_tensor(classes)
    _require(hits.dim() == 1 and classes.shape == hits.shape,
             f"hits {tuple(hits.shape)} and classes {tuple(classes.shape)} must both be (Q,)")
    _require(not classes.is_floating_point(), f"classes must be integer ids; got {classes.dtype}")
    classes = classes.long()
    if len(classes):
        _require(int(classes.min()) >= 0 and int(classes.max()) < n_classes,
                 f"class ids must lie in [0, {n_classes}); got [{int(classes.min())}, {int(classes.max())}]")
    hit_counts = torch.bincount(classes, weights=hits.double(), minlength=n_classes).round().long()
    return torch.stack([hit_counts, torch.bincount(classes, minlength=n_classes)], dim=1)


def pointing_from_counts(counts: Tensor) -> Dict[str, float]:
    """``{"pointing": mean over classes with trials of the class hit rate, "pointing_overall": hit rate}``.

    TorchRay's ``accuracy`` averages over all the dataset's classes, counting a class without trials as 0; on VOC
    and COCO every class has trials, where the two agree. Here a class without trials is left out.

    Args:
        counts: ``(C, 2)`` from :func:`pointing_counts`, summed.
    """
    counts = torch.as_tensor(counts).double()
    _require(counts.dim() == 2 and counts.shape[1] == 2, f"counts must be (C, 2); got {tuple(counts.shape)}")
    seen = counts[:, 1] > 0
    _require(bool(seen.any()), "no pointing trials were counted")
    per_class = counts[seen, 0] / counts[seen, 1]
    return {"pointing": float(per_class.mean()), "pointing_overall": float(counts[:, 0].sum() / counts[:, 1].sum())}


def pointing_summary(hits: Tensor, classes: Tensor) -> Dict[str, float]:
    """:func:`pointing_from_counts` of these queries.

    Args:
        hits: ``(Q,)`` bool; classes: ``(Q,)`` the query class ids (any non-negative ints).
    """
    classes = torch.as_tensor(classes)
    _require(classes.numel() > 0, "no pointing queries")
    return pointing_from_counts(pointing_counts(hits, classes, int(classes.max()) + 1))


# ---------------------------------------------------------------------------------------------------------------
# CAM mIoU
# ---------------------------------------------------------------------------------------------------------------


def _min_max(flat: Tensor) -> Tuple[Tensor, Tensor]:
    """``(normalised, ok)`` per row of ``(N, M)``; a constant row is all 0 and not ok (0/0 has no order)."""
    low = flat.amin(dim=1, keepdim=True)
    span = flat.amax(dim=1, keepdim=True) - low
    ok = span > 0
    return torch.where(ok, (flat - low) / torch.where(ok, span, torch.ones_like(span)), torch.zeros_like(flat)), ok


def cam_confusion(maps: Tensor, classes: Tensor, gt: Tensor, n_classes: int,
                  thresholds: Union[Tensor, Sequence[float]] = CAM_THRESHOLDS, ignore_index: int = 255) -> Tensor:
    """One image's confusion matrices at every threshold, as the WSSS CAM evaluation builds them.

    Follows IRN's ``eval_cam.py`` (Ahn et al. 2019; ReCAM, CLIMS and CLIP-ES copy it): the class maps are stacked
    under a constant background plane at the threshold and the argmax taken (``np.argmax`` picks the first, so
    the background wins ties): a pixel takes the arg-max class where the maximum normalised map value is
    *strictly* above the threshold, else background. Ties between classes go to the first map. Each map is
    min-max normalised on its own first (CLIP Surgery's ``get_similarity_map``); a constant map is all 0. Pixels
    labelled ``ignore_index`` are not counted (chainercv's ``calc_semantic_segmentation_confusion``, which
    counts ``gt >= 0`` after VOC's 255 became -1).

    Args:
        maps: ``(P, H, W)`` one map per class present (P may be 0: all background).
        classes: ``(P,)`` their 1-based class ids in ``[1, n_classes]``.
        gt: ``(H, W)`` integer labels: 0 background, 1..K classes, ``ignore_index`` ignored.
        n_classes: K (without background).
        thresholds: ``(T,)``, compared in the maps' dtype (as the reference's float32 padding).

    Returns:
        ``(T, K + 1, K + 1)`` int64, ``[t, gt class, predicted class]``; sums over images give the dataset's.
    """
    _require(isinstance(maps, Tensor) and maps.dim() == 3, f"maps must be a (P, H, W) tensor; got "
             f"{tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__}")
    _require(isinstance(gt, Tensor) and gt.dim() == 2, "gt must be an (H, W) tensor")
    _require(tuple(gt.shape) == tuple(maps.shape[1:]),
             f"gt of shape {tuple(gt.shape)} does not match the maps' {tuple(maps.shape[1:])}")
    _require(gt.numel() > 0, "the image is empty")
    _require(not gt.is_floating_point(), f"gt must hold integer labels; got {gt.dtype}")
    _require(n_classes >= 1, f"n_classes must be at least 1; got {n_classes}")
    _require(bool(torch.isfinite(maps).all()), "maps contain NaN or Inf")
    classes = torch.as_tensor(classes, device=maps.device).long().reshape(-1)
    _require(len(classes) == len(maps), f"{len(classes)} class ids for {len(maps)} maps")
    if len(classes):
        _require(int(classes.min()) >= 1 and int(classes.max()) <= n_classes,
                 f"class ids must lie in [1, {n_classes}] (1-based, 0 is background); got "
                 f"[{int(classes.min())}, {int(classes.max())}]")
    dtype = maps.dtype if maps.is_floating_point() else torch.float32
    thresholds = torch.as_tensor(thresholds, dtype=dtype, device=maps.device).reshape(-1)
    _require(len(thresholds) > 0, "no thresholds")
    gt = gt.to(maps.device).long().reshape(-1)
    keep = gt != ignore_index
    labels = gt[keep]
    if len(labels):
        _require(int(labels.min()) >= 0 and int(labels.max()) <= n_classes,
                 f"gt labels must lie in [0, {n_classes}] or be {ignore_index}; got "
                 f"[{int(labels.min())}, {int(labels.max())}]")
    size = n_classes + 1
    n_thresholds = len(thresholds)
    if len(maps):
        normalised, _ = _min_max(maps.flatten(1).to(dtype))
        winner = normalised.argmax(dim=0)
        value = normalised.gather(0, winner[None])[0][keep]
        predicted = classes[winner][keep]
    else:
        value = torch.full((len(labels),), -float("inf"), dtype=dtype, device=maps.device)
        predicted = torch.zeros_like(labels)
    order = torch.argsort(thresholds)
    # level = how many thresholds lie strictly below the pixel's value: it is its class at those, background above.
    level = torch.searchsorted(thresholds[order].contiguous(), value.contiguous(), right=False)
    # One histogram over (level, gt, class) instead of T label maps: O(HW + T K^2) whatever T is.
    hist = torch.bincount((level * size + labels) * size + predicted, minlength=(n_thresholds + 1) * size * size)
    hist = hist.view(n_thresholds + 1, size, size)
    at_or_below = hist.cumsum(dim=0)[:n_thresholds]
    confusion = hist.sum(dim=0) - at_or_below
    confusion[:, :, 0] += at_or_below.sum(dim=2)
    out = torch.empty_like(confusion)
    out[order] = confusion
    return out


def _iou(confusion: Tensor) -> Tensor:
    confusion = confusion.double()
    inter = torch.diagonal(confusion, dim1=-2, dim2=-1)
    union = confusion.sum(dim=-1) + confusion.sum(dim=-2) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))


def miou_from_confusion(confusion: Tensor) -> Tuple[float, Tensor]:
    """mIoU as IRN's ``eval_cam.py`` reduces the dataset's confusion matrix.

    IoU of class j is ``C[j, j] / (sum_i C[j, i] + sum_i C[i, j] - C[j, j])`` for all K + 1 classes (background
    included); a class with zero union (never in gt nor predicted) is NaN and left out by ``np.nanmean``
    (chainercv's matrix only reaches the largest class seen, which comes to the same).

    Args:
        confusion: ``(K + 1, K + 1)``, ``[gt, predicted]``.

    Returns:
        ``(miou, iou)``: a float (NaN when no class occurs) and ``(K + 1,)`` float64 with NaN for absent classes.
    """
    confusion = torch.as_tensor(confusion)
    _require(confusion.dim() == 2 and confusion.shape[0] == confusion.shape[1],
             f"a confusion matrix must be square (K+1, K+1); got {tuple(confusion.shape)}")
    iou = _iou(confusion)
    return float(torch.nanmean(iou)), iou


def best_threshold(confusion: Tensor, thresholds: Union[Tensor, Sequence[float]] = CAM_THRESHOLDS
                   ) -> Tuple[float, float]:
    """The best mIoU over a threshold sweep and its threshold (the lowest on ties).

    Args:
        confusion: ``(T, K + 1, K + 1)`` summed over the dataset.
        thresholds: ``(T,)``.

    Returns:
        ``(miou, threshold)``; ``(nan, thresholds[0])`` when no class occurs.
    """
    confusion = torch.as_tensor(confusion)
    thresholds = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    _require(confusion.dim() == 3 and confusion.shape[1] == confusion.shape[2],
             f"confusions must be (T, K+1, K+1); got {tuple(confusion.shape)}")
    _require(len(thresholds) == len(confusion) > 0,
             f"{len(confusion)} confusion matrices for {len(thresholds)} thresholds")
    mious = torch.nanmean(_iou(confusion), dim=-1)
    best = int(torch.nan_to_num(mious, nan=-float("inf")).argmax())
    return float(mious[best]), float(thresholds[best])


# ---------------------------------------------------------------------------------------------------------------
# ImageNet-Segmentation
# ---------------------------------------------------------------------------------------------------------------


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Row-wise average precision, equal to ``sklearn.metrics.average_precision_score`` (step-wise, no
    interpolation: ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds).

    Args:
        scores: ``(N, M)``; targets: ``(N, M)`` bool.

    Returns:
        ``(N,)`` float64; 0 for a row without positives (sklearn's value there, with its warning).
    """
    _require(scores.dim() == 2 and targets.shape == scores.shape,
             f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (N, M)")
    _require(scores.shape[1] > 0, "no scores to rank")
    ranked, order = torch.sort(scores, dim=1, descending=True, stable=True)
    hits = targets.gather(1, order).double()
    true_positives = hits.cumsum(dim=1)
    count = scores.shape[1]
    index = torch.arange(count, device=scores.device)
    precision = true_positives / (index + 1)
    # sklearn evaluates precision once per distinct score, at the last position of a run of ties; every positive
    # of the run adds 1/P recall at that precision.
    last = torch.ones_like(ranked, dtype=torch.bool)
    last[:, :-1] = ranked[:, :-1] != ranked[:, 1:]
    run_end = torch.where(last, index.expand_as(last), torch.full_like(last, count, dtype=torch.long))
    run_end = run_end.flip(1).cummin(dim=1).values.flip(1)
    positives = hits.sum(dim=1)
    total = (hits * precision.gather(1, run_end)).sum(dim=1)
    return torch.where(positives > 0, total / positives.clamp(min=1), torch.zeros_like(total))


def binary_segmentation_stats(maps: Tensor, gt: Tensor, *, clip_negative: bool = True) -> Dict[str, Tensor]:
    """Per-image statistics of the ImageNet-Segmentation test (Chefer et al. 2021,
    ``baselines/ViT/imagenet_seg_eval.py``; TextSpan, Gandelsman et al. 2024, ``compute_segmentations.py``).

    Per image, as the references do at batch size 1: clip negatives to 0 (TextSpan's ``torch.clip(Res, 0,
    Res.max())``; Chefer's script does not clip: ``clip_negative=False``), min-max normalise, foreground where
    the value is strictly above the map's mean (``Res.gt(Res.mean())``), computed in the maps' dtype. A constant
    map (0/0 there: NaN, then zeroed) predicts background everywhere and has soft scores 0. The AP is Chefer's
    ``get_ap_scores``: sklearn's AP over *both* channels at once, scores ``(1 - Res, Res)`` against the one-hot
    targets ``(1 - gt, gt)``, so it is defined even when the mask is all foreground or all background.

    Args:
        maps: ``(N, H, W)`` maps of the explained class.
        gt: ``(N, H, W)`` bool foreground.
        clip_negative: clamp the maps at 0 before normalising.

    Returns:
        Per-image tensors: ``correct`` ``(N,)`` int64, ``labeled`` ``(N,)`` int64 (all pixels are labelled),
        ``intersection`` and ``union`` ``(N, 2)`` int64 for (background, foreground), ``ap`` ``(N,)`` float64.
        Concatenate them over batches and shards for :func:`segmentation_summary`.
    """
    _check_maps(maps)
    _check_same_shape(maps, gt, "gt")
    _require(gt.dtype == torch.bool, f"gt must be bool foreground masks; got {gt.dtype}")
    flat = maps.flatten(1)
    flat = flat if flat.is_floating_point() else flat.float()
    if clip_negative:
        flat = flat.clamp(min=0)
    res, ok = _min_max(flat)
    foreground = (res > res.mean(dim=1, keepdim=True)) & ok
    truth = gt.to(maps.device).flatten(1)
    background, truth_bg = ~foreground, ~truth
    stats = {
        "correct": (foreground == truth).sum(dim=1),
        "labeled": torch.full((len(flat),), flat.shape[1], dtype=torch.long, device=maps.device),
        "intersection": torch.stack([(background & truth_bg).sum(1), (foreground & truth).sum(1)], dim=1),
        "union": torch.stack([(background | truth_bg).sum(1), (foreground | truth).sum(1)], dim=1),
    }
    scores = torch.cat([torch.where(ok, 1 - res, torch.zeros_like(res)), res], dim=1)
    stats["ap"] = average_precision(scores, torch.cat([truth_bg, truth], dim=1))
    return stats


def segmentation_summary(stats: Dict[str, Tensor]) -> Dict[str, float]:
    """Chefer's aggregation of :func:`binary_segmentation_stats` over a dataset.

    ``pixel_accuracy = sum(correct) / (eps + sum(labeled))``; ``miou`` = the mean over background and foreground
    of ``sum(intersection) / (eps + sum(union))``; ``map`` = the mean of the per-image APs (``eps`` is
    ``np.spacing(1)``, as in the reference).
    """
    missing = {"correct", "labeled", "intersection", "union", "ap"} - set(stats)
    _require(not missing, f"segmentation stats lack {sorted(missing)}")
    n = len(stats["ap"])
    _require(n > 0, "no images in the segmentation stats")
    for key in ("correct", "labeled", "intersection", "union"):
        _require(len(stats[key]) == n, f"{len(stats[key])} rows of {key!r} for {n} APs")
    eps = float(np.spacing(1, dtype=np.float64))
    correct = torch.as_tensor(stats["correct"]).double().sum()
    labeled = torch.as_tensor(stats["labeled"]).double().sum()
    inter = torch.as_tensor(stats["intersection"]).double().sum(dim=0)
    union = torch.as_tensor(stats["union"]).double().sum(dim=0)
    return {"pixel_accuracy": float(correct / (eps + labeled)), "miou": float((inter / (eps + union)).mean()),
            "map": float(torch.as_tensor(stats["ap"]).double().mean())}


# ---------------------------------------------------------------------------------------------------------------
# Deletion / insertion
# ---------------------------------------------------------------------------------------------------------------


def relevance_order(maps: Tensor) -> Tensor:
    """Pixels from most to least relevant: ``(N, H*W)`` flat indices.

    Grad-ECLIP uses ``np.argsort(-heatmap)``, whose order among equal values is unspecified; here a stable sort
    breaks ties by raster order, so runs are reproducible.
    """
    _check_maps(maps)
    return torch.sort(maps.flatten(1), dim=1, descending=True, stable=True).indices


def perturbation_counts(n_pixels: int, mode: str = "deletion", *, steps: int = 100,
                        pixels_per_step: Optional[int] = None, every: int = 10) -> Tensor:
    """How many pixels each image of :func:`perturbation_inputs` has deleted (deletion) or restored (insertion).

    Returns:
        ``(S,)`` int64, ``S = steps // every + 1``.
    """
    _require(mode in ("deletion", "insertion"), f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    _require(n_pixels > 0, f"an image needs pixels; got {n_pixels}")
    _require(steps > 0 and 0 < every <= steps, f"need steps > 0 and 0 < every <= steps; got {steps}, {every}")
    if pixels_per_step is None:
        # Grad-ECLIP: pixel_once = max(1, int(area / (2 * L))), so L steps perturb half of the image.
        pixels_per_step = max(1, n_pixels // (2 * steps))
    _require(pixels_per_step > 0, f"pixels_per_step must be positive; got {pixels_per_step}")
    done = (torch.arange(every, steps + 1, every) * pixels_per_step).clamp(max=n_pixels)
    # The reference scores the intact image apart from the perturbed ones: first for deletion (step 0), last for
    # insertion (the image every insertion tends to); it never scores the empty start of insertion.
    if mode == "deletion":
        return torch.cat([torch.zeros(1, dtype=torch.long), done])
    return torch.cat([done, torch.full((1,), n_pixels, dtype=torch.long)])


def perturbation_inputs(images: Tensor, maps: Tensor, mean: Sequence[float], std: Sequence[float],
                        mode: str = "deletion", *, steps: int = 100, pixels_per_step: Optional[int] = None,
                        every: int = 10, generator: Optional[torch.Generator] = None,
                        insertion_start: str = "black") -> Tensor:
    """The images Grad-ECLIP scores for deletion or insertion (Zhao et al., ICML 2024; Cyang-Zhao/Grad-Eclip
    ``imagenet_eval_deletion.py`` and ``imagenet_eval_insertion.py``).

    Pixels go in :func:`relevance_order`, ``pixels_per_step`` per step (default ``max(1, H*W // (2*steps))``,
    the reference's ``area / 200`` for 100 steps), and the image is kept every ``every`` steps. Deletion replaces
    them with uniform random RGB; insertion starts from a black image (the reference's ``np.zeros``: 0 in pixel
    space) and puts the original pixels back. Images returned, as the reference scores them:

    * deletion: the intact image (step 0), then steps ``every, 2*every, ..., steps``;
    * insertion: steps ``every, ..., steps``, then the intact image.

    The reference draws a colour for each pixel when it deletes it (``torch.rand(n, 3) * 255``, then ``uint8``);
    drawing one noise image per image up front is the same distribution. It is drawn with ``generator`` (on the
    generator's device, then moved), quantised to the reference's 8-bit values ``floor(255 u) / 255``, and
    normalised with ``mean`` / ``std``. (The reference perturbs the image at its own size before CLIP's resize and
    crop; here the perturbation is in the model's input frame.)

    Args:
        images: ``(N, C, H, W)`` normalised model inputs.
        maps: ``(N, H, W)`` relevance at the input resolution.
        mean, std: the per-channel normalisation of ``images`` (length C).
        mode: ``"deletion"`` or ``"insertion"``.
        insertion_start: ``"black"`` (the reference) or ``"random"`` (insertion into the same noise deletion uses).

    Returns:
        ``(N, S, C, H, W)``, ``S = steps // every + 1``, in ``images``' dtype and device.
    """
    _require(isinstance(images, Tensor) and images.dim() == 4, f"images must be an (N, C, H, W) tensor; got "
             f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    _check_maps(maps)
    _require(tuple(maps.shape) == (images.shape[0], *images.shape[2:]),
             f"maps of shape {tuple(maps.shape)} do not match the images' (N, H, W) "
             f"{(images.shape[0], *images.shape[2:])}")
    _require(insertion_start in ("black", "random"), f"insertion_start is 'black' or 'random'; got {insertion_start!r}")
    n, channels, height, width = images.shape
    counts = perturbation_counts(height * width, mode, steps=steps, pixels_per_step=pixels_per_step, every=every)
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(-1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).reshape(-1)
    _require(len(mean) == channels and len(std) == channels,
             f"mean and std need {channels} values (one per channel); got {len(mean)} and {len(std)}")
    mean, std = mean.view(1, 1, -1, 1, 1), std.view(1, 1, -1, 1, 1)
    order = relevance_order(maps.to(images.device))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(height * width, device=order.device).expand_as(order))
    changed = rank.view(n, 1, 1, height, width) < counts.to(rank.device).view(1, -1, 1, 1, 1)
    intact = images[:, None]
    if mode == "insertion" and insertion_start == "black":
        start = ((0 - mean) / std).expand(n, 1, channels, height, width)
        return torch.where(changed, intact, start)
    device = generator.device if generator is not None else images.device
    noise = torch.rand((n, 1, channels, height, width), generator=generator, device=device)
    noise = (torch.floor(noise * 255) / 255).to(images.device, images.dtype)
    noise = (noise - mean) / std
    if mode == "deletion":
        return torch.where(changed, noise, intact)
    return torch.where(changed, intact, noise)


def curve_auc(scores: Tensor, x: Optional[Tensor] = None) -> Tensor:
    """Area under each perturbation curve by the trapezoid rule, on an x-axis from 0 to 1.

    Grad-ECLIP's scripts print the accuracy at each scored image and leave the AUC to the paper; here the S points
    are equally spaced on [0, 1] (so the AUC is the curve's trapezoidal mean), or placed at ``x`` (e.g. the
    fractions :func:`perturbation_counts` gives) and normalised by its span.

    Args:
        scores: ``(N, S)``, S >= 2 (e.g. top-1 correctness of the target).
        x: optional ``(S,)`` increasing positions.

    Returns:
        ``(N,)``; their mean over images is the AUC of the mean curve.
    """
    _require(isinstance(scores, Tensor) and scores.dim() == 2 and scores.shape[1] >= 2, f"scores must be (N, S) "
             f"with S >= 2; got {tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    values = scores if scores.is_floating_point() else scores.double()
    if x is None:
        return torch.trapezoid(values, dx=1.0 / (scores.shape[1] - 1), dim=1)
    x = torch.as_tensor(x, dtype=values.dtype, device=values.device).reshape(-1)
    _require(len(x) == scores.shape[1], f"{len(x)} positions for {scores.shape[1]} scores")
    _require(bool((x[1:] > x[:-1]).all()), "positions must increase")
    return torch.trapezoid(values, x=x, dim=1) / (x[-1] - x[0])
