"""Weakly supervised object localisation (WSOL) from saliency maps: MaxBoxAcc (ConVis spec §2b).

For every threshold t of a sweep, each map is cut at t, its largest 4-connected component is boxed, and the box is
correct when its IoU with a ground-truth box of the image exceeds 0.5. MaxBoxAcc is the best accuracy over the
sweep (Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020; the ConVis
authors' ``wsol_evaluation.py``). Boxes are inclusive pixel corners ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from skimage.measure import label

__all__ = [
    "DEFAULT_THRESHOLDS",
    "BoxAccuracy",
    "box_iou",
    "boxes_from_masks",
    "largest_component_box",
    "max_box_accuracy",
]

#: The reference sweep: t ∈ {0, 0.01, …, 0.99} on maps in [0, 1].
DEFAULT_THRESHOLDS = np.round(np.arange(0, 1, 0.01), 2)


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


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one inclusive pixel box with ``(M, 4)`` others.

    Args:
        box: ``(4,)`` ``(x0, y0, x1, y1)``, inclusive.
        boxes: ``(M, 4)``.

    Returns:
        ``(M,)`` IoU in [0, 1].
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    box = np.asarray(box, dtype=np.float64)
    # +1: inclusive corners, so a one-pixel box has area 1.
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1, 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1, 0, None)
    inter = iw * ih
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / (area + areas - inter)


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
        # The kept set only changes where t crosses a map value, so equal masks are boxed once.
        levels = np.searchsorted(np.unique(saliency), thresholds, side="right")
        cache: dict[int, float] = {}
        for j, (t, level) in enumerate(zip(thresholds, levels)):
            if level not in cache:
                box = largest_component_box(saliency > t)
                cache[level] = 0.0 if box is None else float(box_iou(box, boxes).max())
            iou[i, j] = cache[level]
    accuracy = (iou > iou_threshold).mean(0)
    best = int(np.argmax(accuracy))
    return BoxAccuracy(float(accuracy[best]), float(thresholds[best]), thresholds, accuracy, iou)
