"""Weakly supervised object localisation (WSOL) from saliency maps: MaxBoxAcc (ConVis spec §2b) and MaxBoxAccV2.

MaxBoxAcc: for every threshold t of a sweep, each map is cut at t, its largest 4-connected component is boxed, and
the box is correct when its IoU with a ground-truth box of the image exceeds 0.5. MaxBoxAcc is the best accuracy
over the sweep (Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020; the
ConVis authors' ``wsol_evaluation.py``). Boxes are inclusive pixel corners ``(x0, y0, x1, y1)``.

MaxBoxAccV2 (Choe et al. 2020 and their journal version; clovaai/wsolevaluation ``evaluation.py``,
``compute_bboxes_from_scoremaps`` with ``multi_contour_eval=True`` and ``BoxEvaluator`` with
``iou_threshold_list=[30, 50, 70]``): thresholds ``np.arange(0, 1, 0.001)``, a box for *every* OpenCV contour of
the cut map, the best IoU of any of them with any ground-truth box, a hit when that IoU is >= 0.3 / 0.5 / 0.7;
MaxBoxAccV2 is the mean over the three IoU thresholds of the best accuracy over the sweep. The per-image statistics
(:func:`max_box_accuracy_stats`: boolean hit tables) add up over images and shards; :func:`summarise_box_accuracy`
reduces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from skimage.measure import label

__all__ = [
    "DEFAULT_THRESHOLDS",
    "V2_IOU_THRESHOLDS",
    "V2_THRESHOLDS",
    "BoxAccuracy",
    "BoxAccuracyV2",
    "box_hits_v2",
    "box_iou",
    "box_iou_curve_v2",
    "boxes_from_masks",
    "contour_boxes",
    "inclusive_boxes",
    "largest_component_box",
    "max_box_accuracy",
    "max_box_accuracy_stats",
    "max_box_accuracy_v2",
    "max_box_accuracy_v2_from_counts",
    "normalize_scoremap",
    "pairwise_box_iou",
    "summarise_box_accuracy",
]

#: The reference sweep: t ∈ {0, 0.01, …, 0.99} on maps in [0, 1].
DEFAULT_THRESHOLDS = np.round(np.arange(0, 1, 0.01), 2)

#: wsolevaluation's MaxBoxAccV2 sweep, ``np.arange(0, 1, 0.001)`` exactly as ``evaluate_wsol`` builds it: not
#: rounded, because the reference cuts at ``int(t * max)`` and rounding t would move some cuts by one grey level.
V2_THRESHOLDS = np.arange(0, 1, 0.001)

#: The IoU thresholds of MaxBoxAccV2, in percent as the reference's ``iou_threshold_list``.
V2_IOU_THRESHOLDS = (30, 50, 70)


@dataclass(frozen=True)
class BoxAccuracy:
    """MaxBoxAcc and the sweep behind it.

    Attributes:
        max_box_acc: the best accuracy over the thresholds (fraction of images, in [0, 1]).
        best_threshold: the threshold reaching it (the lowest one on ties).
        thresholds: ``(T,)`` the sweep.
        accuracy: ``(T,)`` accuracy at each threshold.
        iou: ``(N, T)`` each image's best IoU with its ground truth at each threshold (0 when no box).
    """

    max_box_acc: float
    best_threshold: float
    thresholds: np.ndarray = field(repr=False)
    accuracy: np.ndarray = field(repr=False)
    iou: np.ndarray = field(repr=False)


def pairwise_box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every inclusive pixel box of one set with every box of another (wsolevaluation's
    ``calculate_multiple_iou``).

    Args:
        boxes_a: ``(M, 4)`` ``(x0, y0, x1, y1)``, inclusive.
        boxes_b: ``(B, 4)``.

    Returns:
        ``(M, B)`` IoU in [0, 1]; 0 where the union is not positive (an inverted box), as the reference does.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(1, -1, 4)
    # +1: inclusive corners, so a one-pixel box has area 1.
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1, 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1, 0, None)
    inter = iw * ih
    union = ((a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
             + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1) - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one inclusive pixel box with ``(M, 4)`` others.

    Args:
        box: ``(4,)`` ``(x0, y0, x1, y1)``, inclusive.
        boxes: ``(M, 4)``.

    Returns:
        ``(M,)`` IoU in [0, 1].
    """
    return pairwise_box_iou(np.asarray(box).reshape(1, 4), boxes)[0]


def largest_component_box(mask: np.ndarray) -> np.ndarray | None:
    """Bounding box of the largest 4-connected component of a boolean mask.

    Args:
        mask: ``(H, W)`` bool.

    Returns:
        ``(4,)`` int64 inclusive box, or None for an empty mask. Equal-sized components: the first in raster order.
    """
    if not mask.any():
        return None
    components = label(mask, connectivity=1)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0  # background
    rows, cols = np.nonzero(components == int(np.argmax(sizes)))
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.int64)


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Ground-truth boxes of object masks (e.g. generated scenes).

    Args:
        masks: ``(M, H, W)`` bool, each non-empty.

    Returns:
        ``(M, 4)`` int64 inclusive boxes (the whole mask, not only its largest component).
    """
    out = []
    for mask in np.asarray(masks, dtype=bool):
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            raise ValueError("an object mask is empty: it has no box")
        out.append([cols.min(), rows.min(), cols.max(), rows.max()])
    return np.asarray(out, dtype=np.int64).reshape(-1, 4)


def max_box_accuracy(
    maps: Sequence[np.ndarray] | np.ndarray,
    gt_boxes: Sequence[np.ndarray],
    *,
    thresholds: np.ndarray = DEFAULT_THRESHOLDS,
    iou_threshold: float = 0.5,
) -> BoxAccuracy:
    """MaxBoxAcc of maps against ground-truth boxes.

    Args:
        maps: N maps ``(H_i, W_i)`` in [0, 1] (min-max normalised, as ConVis returns them).
        gt_boxes: N arrays ``(M_i, 4)`` of inclusive boxes in the same frame as the maps; a prediction is correct
            when it overlaps *any* of its image's boxes with IoU > *iou_threshold* (strict).
        thresholds: the sweep; a pixel is kept when its value is strictly above t.
        iou_threshold: the IoU a box must exceed.

    Returns:
        :class:`BoxAccuracy`.
    """
    if len(maps) != len(gt_boxes):
        raise ValueError(f"{len(maps)} maps for {len(gt_boxes)} ground-truth box sets")
    if len(maps) == 0:
        raise ValueError("no maps to evaluate")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    iou = np.zeros((len(maps), len(thresholds)))
    for i, (saliency, boxes) in enumerate(zip(maps, gt_boxes)):
        saliency = np.asarray(saliency, dtype=np.float64)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if saliency.ndim != 2 or len(boxes) == 0:
            raise ValueError(f"map {i} must be (H, W) with at least one ground-truth box")
        iou[i] = _largest_component_ious(saliency, boxes, thresholds)
    accuracy = (iou > iou_threshold).mean(0)
    best = int(np.argmax(accuracy))
    return BoxAccuracy(float(accuracy[best]), float(thresholds[best]), thresholds, accuracy, iou)


def _largest_component_ious(saliency: np.ndarray, boxes: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``(T,)`` best IoU of the largest component of ``saliency > t`` with the inclusive ``boxes`` (0: no box)."""
    # The kept set only changes where t crosses a map value, so equal masks are boxed once.
    levels = np.searchsorted(np.unique(saliency), thresholds, side="right")
    cache: dict[int, float] = {}
    iou = np.zeros(len(thresholds))
    for j, (t, level) in enumerate(zip(thresholds, levels)):
        if level not in cache:
            box = largest_component_box(saliency > t)
            cache[level] = 0.0 if box is None else float(box_iou(box, boxes).max())
        iou[j] = cache[level]
    return iou


# ---------------------------------------------------------------------------------------------------------------
# MaxBoxAccV2 (wsolevaluation, multi-contour) and the per-image statistics of both accuracies.
# ---------------------------------------------------------------------------------------------------------------


def _numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def normalize_scoremap(saliency) -> np.ndarray:
    """Min-max normalise a map to [0, 1] as wsolevaluation's ``inference.normalize_scoremap`` does.

    Args:
        saliency: ``(H, W)`` array or tensor.

    Returns:
        ``(H, W)`` float64; all zeros for a constant map or one with a NaN (the reference's choice: such a map
        keeps nothing above any threshold and, for V2, scores the ``[0, 0, 0, 0]`` box).
    """
    cam = _numpy(saliency).astype(np.float64, copy=True)
    if cam.ndim != 2:
        raise ValueError(f"a score map must be (H, W); got shape {cam.shape}")
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def inclusive_boxes(boxes) -> np.ndarray:
    """Ground-truth boxes with exclusive ends ``(x0, y0, x1, y1)`` (torchvision's XYXY, this package's datasets)
    as the inclusive integer corners wsolevaluation compares against.

    The pixel edges are rounded to the nearest integer and the end pixel is ``x1 - 1``: integer boxes convert
    exactly (``[2, 2, 6, 6]`` covers pixels 2..5), and boxes moved by a resize (fractional edges) keep the pixels
    they mostly cover, at least one. (The reference instead floors the rescaled inclusive corners; the two differ
    by at most a pixel on fractional boxes.)

    Args:
        boxes: ``(B, 4)``, ``x1 > x0`` and ``y1 > y0``, non-negative.

    Returns:
        ``(B, 4)`` int64 inclusive boxes.
    """
    boxes = _numpy(boxes).astype(np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError("an image needs at least one ground-truth box")
    if not np.isfinite(boxes).all() or (boxes < 0).any():
        raise ValueError("ground-truth boxes must be finite and non-negative (the reference refuses negative corners)")
    if (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ValueError("ground-truth boxes must have x1 > x0 and y1 > y0 (x1, y1 exclusive)")
    # floor(v + 0.5): round half up, not numpy's round-half-to-even, so that x.5 edges move the same way.
    edges = np.floor(boxes + 0.5).astype(np.int64)
    ends = np.maximum(edges[:, 2:] - 1, edges[:, :2])
    return np.concatenate([edges[:, :2], ends], axis=1)


def _v2_levels(scoremap, thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(q, cuts, threshold_level)``: the reference's 8-bit map, its distinct grey-level cuts and, per threshold,
    the index of its cut."""
    s = _numpy(scoremap)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"a score map must be a non-empty (H, W) array; got shape {s.shape}")
    # float64 as the reference (its t2n casts to np.float before check_scoremap_validity).
    s = s.astype(np.float64)
    if np.isnan(s).any():
        raise ValueError("the score map contains NaN")
    if (s < 0).any() or (s > 1).any():
        raise ValueError(f"the score map must lie in [0, 1] (normalize_scoremap it first); it spans "
                         f"[{s.min():g}, {s.max():g}]")
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if len(thresholds) == 0 or (thresholds < 0).any() or (thresholds >= 1).any():
        raise ValueError("MaxBoxAccV2 thresholds must be a non-empty sweep in [0, 1)")
    q = (s * 255).astype(np.uint8)
    # cv2.threshold keeps q > int(t * max(q)); only these <= 256 distinct cuts need contours.
    cuts = (thresholds * float(q.max())).astype(np.int64)
    cuts, threshold_level = np.unique(cuts, return_inverse=True)
    return q, cuts, threshold_level.reshape(-1)


def contour_boxes(scoremap, thresholds=V2_THRESHOLDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every contour's box at every threshold, as wsolevaluation's ``compute_bboxes_from_scoremaps`` with
    ``multi_contour_eval=True`` computes them.

    The map is quantised ``uint8(s * 255)``, cut at ``q > int(t * max(q))``, and each contour that
    ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)`` finds gives ``x, y, w, h = cv2.boundingRect`` and the box
    ``(x, y, min(x + w, W - 1), min(y + h, H - 1))``. That is the reference's box, kept as it is: it is used as
    inclusive, so it reaches one pixel past the contour on the right and bottom (except at the image border). RETR_TREE
    also returns the contours of holes, which are boxes too. A cut with no foreground gives the reference's
    ``[0, 0, 0, 0]``. Thresholds that give the same cut share one contour search.

    Args:
        scoremap: ``(H, W)`` in [0, 1].
        thresholds: ``(T,)`` in [0, 1).

    Returns:
        ``(boxes, box_cut, threshold_cut)``: ``(M, 4)`` int64 boxes, ``(M,)`` the cut each belongs to (sorted,
        every cut has at least one box), ``(T,)`` each threshold's cut.
    """
    import cv2  # only MaxBoxAccV2 needs OpenCV

    q, cuts, threshold_level = _v2_levels(scoremap, thresholds)
    height, width = q.shape
    if q.max() == 0:
        return np.zeros((1, 4), np.int64), np.zeros(1, np.int64), threshold_level
    contours, owner = [], []
    for j, cut in enumerate(cuts):
        found = cv2.findContours((q > cut).astype(np.uint8) * 255, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        contours.extend(found)
        owner.extend([j] * len(found))
    # boundingRect of a contour is the min/max of its points: one reduceat over all contours at once.
    sizes = np.fromiter((len(c) for c in contours), dtype=np.int64, count=len(contours))
    points = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    low = np.minimum.reduceat(points, starts, axis=0)
    high = np.maximum.reduceat(points, starts, axis=0)
    boxes = np.stack([low[:, 0], low[:, 1], np.minimum(high[:, 0] + 1, width - 1),
                      np.minimum(high[:, 1] + 1, height - 1)], axis=1)
    return boxes, np.asarray(owner, dtype=np.int64), threshold_level


def box_iou_curve_v2(scoremap, gt_boxes, thresholds=V2_THRESHOLDS) -> np.ndarray:
    """One image's best IoU at each threshold: over all its contour boxes and all its ground-truth boxes.

    Args:
        scoremap: ``(H, W)`` in [0, 1] (see :func:`normalize_scoremap`).
        gt_boxes: ``(B, 4)`` ``x0, y0, x1, y1`` with x1, y1 exclusive, in the map's pixels (see
            :func:`inclusive_boxes` for the conversion).
        thresholds: ``(T,)`` in [0, 1).

    Returns:
        ``(T,)`` float64 IoU.
    """
    return _contour_ious(scoremap, inclusive_boxes(gt_boxes), thresholds)


def _contour_ious(scoremap, inclusive: np.ndarray, thresholds) -> np.ndarray:
    boxes, box_cut, threshold_cut = contour_boxes(scoremap, thresholds)
    best = pairwise_box_iou(boxes, inclusive).max(axis=1)
    starts = np.flatnonzero(np.r_[True, box_cut[1:] != box_cut[:-1]])
    return np.maximum.reduceat(best, starts)[threshold_cut]


def box_hits_v2(iou_curves, iou_thresholds: Sequence[float] = V2_IOU_THRESHOLDS) -> np.ndarray:
    """Hit tables from IoU curves: IoU >= threshold / 100 (the reference's ``>=``, unlike MaxBoxAcc's ``>``).

    Args:
        iou_curves: ``(..., T)`` from :func:`box_iou_curve_v2`.
        iou_thresholds: in percent.

    Returns:
        ``(..., T, len(iou_thresholds))`` bool.
    """
    levels = np.asarray(iou_thresholds, dtype=np.float64) / 100
    return np.asarray(iou_curves, dtype=np.float64)[..., None] >= levels


@dataclass(frozen=True)
class BoxAccuracyV2:
    """MaxBoxAccV2 and the sweep behind it.

    Attributes:
        max_box_acc_v2: mean over the IoU thresholds of the best accuracy over the sweep (a fraction in [0, 1];
            the reference prints percent).
        per_iou: ``(K,)`` the best accuracy at each IoU threshold.
        best_thresholds: ``(K,)`` the map threshold reaching it (the lowest one on ties).
        iou_thresholds: ``(K,)`` in percent.
        thresholds: ``(T,)`` the sweep.
        accuracy: ``(T, K)``.
    """

    max_box_acc_v2: float
    per_iou: np.ndarray
    best_thresholds: np.ndarray
    iou_thresholds: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)
    accuracy: np.ndarray = field(repr=False)


def max_box_accuracy_v2_from_counts(hit_counts, n_images: float, *, thresholds=V2_THRESHOLDS,
                                    iou_thresholds: Sequence[float] = V2_IOU_THRESHOLDS) -> BoxAccuracyV2:
    """MaxBoxAccV2 from hit tables summed over images (and shards): ``BoxEvaluator.compute``.

    Args:
        hit_counts: ``(T, K)`` number of images hit at each (threshold, IoU threshold).
        n_images: the number of images summed.
    """
    counts = np.asarray(hit_counts, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if counts.shape != (len(thresholds), len(iou_thresholds)):
        raise ValueError(f"hit counts of shape {counts.shape} for {len(thresholds)} thresholds and "
                         f"{len(iou_thresholds)} IoU thresholds")
    if n_images <= 0:
        raise ValueError("no images were counted")
    accuracy = counts / n_images
    best = accuracy.argmax(axis=0)
    per_iou = accuracy.max(axis=0)
    return BoxAccuracyV2(float(per_iou.mean()), per_iou, thresholds[best], np.asarray(iou_thresholds),
                         thresholds, accuracy)


def max_box_accuracy_v2(maps, gt_boxes: Sequence, *, thresholds=V2_THRESHOLDS,
                        iou_thresholds: Sequence[float] = V2_IOU_THRESHOLDS) -> BoxAccuracyV2:
    """MaxBoxAccV2 of maps against ground-truth boxes.

    Args:
        maps: N maps ``(H_i, W_i)`` in [0, 1] (arrays or tensors; an ``(N, H, W)`` batch works too).
        gt_boxes: N arrays ``(B_i, 4)``, x1 and y1 exclusive.
    """
    if len(maps) != len(gt_boxes):
        raise ValueError(f"{len(maps)} maps for {len(gt_boxes)} ground-truth box sets")
    if len(maps) == 0:
        raise ValueError("no maps to evaluate")
    hits = sum(box_hits_v2(box_iou_curve_v2(m, b, thresholds), iou_thresholds).astype(np.int64)
               for m, b in zip(maps, gt_boxes))
    return max_box_accuracy_v2_from_counts(hits, len(maps), thresholds=thresholds, iou_thresholds=iou_thresholds)


def max_box_accuracy_stats(saliency, gt_boxes) -> dict[str, np.ndarray]:
    """One image's sufficient statistics for MaxBoxAcc and MaxBoxAccV2: boolean hit tables that add up.

    The map is first :func:`normalize_scoremap`-ed (the reference's inference does it; raw attributions are not in
    [0, 1]). Both accuracies use the same boxes, converted by :func:`inclusive_boxes`.

    Args:
        saliency: ``(H, W)`` raw map (array or tensor).
        gt_boxes: ``(B, 4)`` x1, y1 exclusive.

    Returns:
        ``{"hits": (100,) bool`` MaxBoxAcc (largest 4-connected component at t = 0, 0.01, ..., 0.99; IoU > 0.5),
        ``"hits_v2": (1000, 3) bool`` MaxBoxAccV2 (all contours at ``V2_THRESHOLDS``; IoU >= 0.3, 0.5, 0.7)``}``.
    """
    scoremap = normalize_scoremap(saliency)
    boxes = inclusive_boxes(gt_boxes)
    hits = _largest_component_ious(scoremap, boxes, DEFAULT_THRESHOLDS) > 0.5
    hits_v2 = box_hits_v2(_contour_ious(scoremap, boxes, V2_THRESHOLDS))
    return {"hits": hits, "hits_v2": hits_v2}


def summarise_box_accuracy(stats: dict, weights=None) -> dict[str, np.ndarray]:
    """MaxBoxAcc and MaxBoxAccV2 from per-image hit tables, under image weights (bootstrap resamplings).

    Args:
        stats: ``{"hits": (n, 100), "hits_v2": (n, 1000, 3)}`` stacked :func:`max_box_accuracy_stats`.
        weights: ``(R, n)`` non-negative image weights (row 0 usually all ones); None for one row of ones.

    Returns:
        ``(R,)`` arrays, fractions in [0, 1]: ``maxboxacc``, ``maxboxacc_v2``, ``maxboxacc_v2_iou30`` / ``50`` /
        ``70``, and ``maxboxacc_threshold`` (the best MaxBoxAcc threshold of each row).
    """
    hits = np.asarray(stats["hits"], dtype=np.float64)
    hits_v2 = np.asarray(stats["hits_v2"], dtype=np.float64)
    n = len(hits)
    if n == 0 or len(hits_v2) != n:
        raise ValueError(f"{n} MaxBoxAcc rows and {len(hits_v2)} MaxBoxAccV2 rows; need the same, at least one")
    weights = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1, n)
    total = weights.sum(axis=1)
    accuracy = (weights @ hits) / total[:, None]
    accuracy_v2 = np.einsum("rn,ntk->rtk", weights, hits_v2) / total[:, None, None]
    per_iou = accuracy_v2.max(axis=1)
    out = {"maxboxacc": accuracy.max(axis=1), "maxboxacc_v2": per_iou.mean(axis=1),
           "maxboxacc_threshold": DEFAULT_THRESHOLDS[accuracy.argmax(axis=1)]}
    for k, level in enumerate(V2_IOU_THRESHOLDS[:per_iou.shape[1]]):
        out[f"maxboxacc_v2_iou{level}"] = per_iou[:, k]
    return out
