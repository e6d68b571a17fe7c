"""Hand-computed cases for the protocols' scoring arithmetic (protocol_scores, and MaxBoxAccV2 in convis_wsol),
plus equality with small transcriptions of the references (TorchRay, IRN, sklearn, wsolevaluation + OpenCV)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_clip.evaluation import protocol_scores as ps
from captum_clip.evaluation.convis_wsol import (
    V2_THRESHOLDS,
    box_hits_v2,
    box_iou_curve_v2,
    contour_boxes,
    inclusive_boxes,
    max_box_accuracy,
    max_box_accuracy_stats,
    max_box_accuracy_v2,
    max_box_accuracy_v2_from_counts,
    normalize_scoremap,
    pairwise_box_iou,
    summarise_box_accuracy,
)

# ----------------------------------------------------------------------------------------------- pointing game


def _peak_map(row: int, col: int, size: int = 5) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[row, col] = 1.0
    return m


def test_pointing_disk_is_strict_like_torchray():
    maps = _peak_map(2, 0)[None].repeat(4, 1, 1)
    masks = torch.zeros(4, 5, 5, dtype=torch.bool)
    masks[:, 2, 3] = True  # 3 px to the right of the peak: d^2 = 9
    assert ps.pointing_hits(maps, masks, 2).tolist() == [False] * 4
    assert ps.pointing_hits(maps, masks, 3).tolist() == [False] * 4  # 9 < 9 is false
    assert ps.pointing_hits(maps, masks, 3.01).tolist() == [True] * 4
    diagonal = torch.zeros(1, 5, 5, dtype=torch.bool)
    diagonal[0, 4, 2] = True  # d^2 = 2^2 + 2^2 = 8 < 9
    assert ps.pointing_hits(maps[:1], diagonal, 3).tolist() == [True]
    assert ps.pointing_hits(maps[:1], torch.zeros_like(diagonal), 100).tolist() == [False]  # empty mask: a miss


def test_peak_is_first_maximum_in_raster_order():
    m = torch.zeros(1, 4, 5)
    m[0, 3, 1] = m[0, 1, 4] = 2.0
    assert ps.peak_points(m).tolist() == [[4, 1]]  # (x, y) of flat index 9, before flat index 16


def _torchray_evaluate(mask: torch.Tensor, point, tolerance: float) -> bool:
    # TorchRay's PointingGame.evaluate, transcribed.
    v, u = torch.meshgrid((torch.arange(mask.shape[0], dtype=torch.float32) - point[1]) ** 2,
                          (torch.arange(mask.shape[1], dtype=torch.float32) - point[0]) ** 2, indexing="ij")
    return bool((mask & ((v + u) < tolerance ** 2)).view(-1).any())


def test_pointing_batch_equals_loop_and_torchray():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(12, 17, 23, generator=g)
    masks = torch.rand(12, 17, 23, generator=g) > 0.97
    hits = ps.pointing_hits(maps, masks, 4)
    points = ps.peak_points(maps)
    for q in range(12):
        assert hits[q] == ps.pointing_hits(maps[q:q + 1], masks[q:q + 1], 4)[0]
        assert bool(hits[q]) == _torchray_evaluate(masks[q], points[q].tolist(), 4)


def test_pointing_tolerance_and_summary():
    assert ps.scaled_tolerance(224) == 15 and ps.scaled_tolerance(336) == 22.5 and ps.scaled_tolerance(448) == 30
    hits = torch.tensor([True, False, True, True])
    classes = torch.tensor([1, 1, 2, 3])
    counts = ps.pointing_counts(hits, classes, 4)
    assert counts.tolist() == [[0, 0], [1, 2], [1, 1], [1, 1]]
    summary = ps.pointing_summary(hits, classes)
    assert summary["pointing"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert summary["pointing_overall"] == pytest.approx(3 / 4)
    # Shards add their counts.
    both = ps.pointing_counts(hits[:2], classes[:2], 4) + ps.pointing_counts(hits[2:], classes[2:], 4)
    assert ps.pointing_from_counts(both) == summary


def test_pointing_errors():
    maps = torch.rand(2, 5, 5)
    with pytest.raises(ValueError, match="do not match"):
        ps.pointing_hits(maps, torch.zeros(2, 5, 4, dtype=torch.bool), 3)
    with pytest.raises(ValueError, match="bool"):
        ps.pointing_hits(maps, torch.zeros(2, 5, 5), 3)
    with pytest.raises(ValueError, match="empty"):
        ps.pointing_hits(torch.zeros(0, 5, 5), torch.zeros(0, 5, 5, dtype=torch.bool), 3)
    with pytest.raises(ValueError, match="positive"):
        ps.pointing_hits(maps, torch.zeros(2, 5, 5, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match="NaN"):
        ps.pointing_hits(torch.full((1, 2, 2), float("nan")), torch.zeros(1, 2, 2, dtype=torch.bool), 1)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        ps.pointing_counts(torch.tensor([True]), torch.tensor([2]), 2)
    with pytest.raises(ValueError, match="no pointing"):
        ps.pointing_summary(torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long))


# ---------------------------------------------------------------------------------------------------- CAM mIoU

# Normalised class maps (min 0, max 1 each); the test scales them to check the per-map normalisation.
_A = torch.tensor([[1.0, 0.8, 0.0, 0.0], [0.6, 0.4, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
_B = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.7, 0.5], [0.0, 0.0, 0.3, 1.0]])
_GT = torch.tensor([[1, 1, 0, 0], [1, 255, 0, 0], [0, 0, 2, 2], [0, 1, 2, 2]])


def test_cam_confusion_by_hand():
    maps = torch.stack([4 * _A - 3, 10 * _B + 2])
    conf = ps.cam_confusion(maps, torch.tensor([1, 2]), _GT, 2, thresholds=[0.5, 0.25])
    assert conf.dtype == torch.int64 and conf.shape == (2, 3, 3)
    # t = 0.5: (2, 3) sits exactly at 0.5 and goes to background (IRN's argmax puts the background plane first);
    # (1, 1) is ignored.
    assert conf[0].tolist() == [[7, 0, 0], [1, 3, 0], [2, 0, 2]]
    assert conf[1].tolist() == [[7, 0, 0], [1, 3, 0], [0, 0, 4]]
    miou, iou = ps.miou_from_confusion(conf[0])
    assert iou.tolist() == pytest.approx([7 / 10, 3 / 4, 2 / 4]) and miou == pytest.approx(0.65)
    assert ps.miou_from_confusion(conf[1])[0] == pytest.approx((7 / 8 + 3 / 4 + 1) / 3)
    assert ps.best_threshold(conf, [0.5, 0.25]) == (pytest.approx(0.875), 0.25)


def test_cam_confusion_without_classes_and_absent_classes():
    conf = ps.cam_confusion(torch.zeros(0, 4, 4), torch.zeros(0, dtype=torch.long), _GT, 3, thresholds=[0.5])
    assert conf[0].tolist() == [[7, 0, 0, 0], [4, 0, 0, 0], [4, 0, 0, 0], [0, 0, 0, 0]]
    miou, iou = ps.miou_from_confusion(conf[0])
    # Background 7 / 15; classes 1, 2 never predicted: 0; class 3 in neither gt nor prediction: NaN, left out.
    assert iou[:3].tolist() == pytest.approx([7 / 15, 0, 0]) and torch.isnan(iou[3])
    assert miou == pytest.approx(7 / 45)
    # A constant map is all 0 after normalisation: never above a threshold.
    flat = ps.cam_confusion(torch.ones(1, 4, 4), torch.tensor([2]), _GT, 3, thresholds=[0.05])
    assert torch.equal(flat, conf)


def _irn_confusion(maps: np.ndarray, keys: np.ndarray, gt: np.ndarray, threshold: float, size: int) -> np.ndarray:
    # IRN's eval_cam.py for one image: a background plane at the threshold, argmax, chainercv's confusion.
    cams = np.pad(maps, ((1, 0), (0, 0), (0, 0)), mode="constant", constant_values=threshold)
    labels = np.pad(keys, (1, 0), mode="constant")[np.argmax(cams, axis=0)]
    keep = gt != 255
    return np.bincount(size * gt[keep] + labels[keep], minlength=size * size).reshape(size, size)


def test_cam_confusion_matches_irn_and_sums_over_images():
    g = torch.Generator().manual_seed(1)
    total = torch.zeros(len(ps.CAM_THRESHOLDS), 6, 6, dtype=torch.long)
    expected = np.zeros((len(ps.CAM_THRESHOLDS), 6, 6), dtype=np.int64)
    for _ in range(3):
        maps = torch.rand(3, 9, 11, generator=g) * 5 - 1
        classes = torch.randperm(5, generator=g)[:3] + 1
        gt = torch.randint(0, 6, (9, 11), generator=g)
        gt[torch.rand(9, 11, generator=g) < 0.1] = 255
        conf = ps.cam_confusion(maps, classes, gt, 5)
        normalised = maps.flatten(1)
        normalised = ((normalised - normalised.min(1, keepdim=True).values)
                      / (normalised.max(1, keepdim=True).values - normalised.min(1, keepdim=True).values))
        for t, threshold in enumerate(ps.CAM_THRESHOLDS):
            ref = _irn_confusion(normalised.view(3, 9, 11).numpy(), classes.numpy(), gt.numpy(),
                                 np.float32(threshold), 6)
            assert conf[t].tolist() == ref.tolist()
            # Vectorised over thresholds = one threshold at a time.
            assert torch.equal(conf[t], ps.cam_confusion(maps, classes, gt, 5, thresholds=[threshold])[0])
            expected[t] += ref
        total += conf
    assert total.numpy().tolist() == expected.tolist()
    best, threshold = ps.best_threshold(total)
    assert threshold in ps.CAM_THRESHOLDS and best == max(ps.miou_from_confusion(c)[0] for c in total)


def test_cam_errors():
    maps, classes = torch.rand(2, 4, 4), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="does not match"):
        ps.cam_confusion(maps, classes, torch.zeros(4, 5, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="1-based"):
        ps.cam_confusion(maps, torch.tensor([0, 1]), _GT, 2)
    with pytest.raises(ValueError, match="gt labels"):
        ps.cam_confusion(maps, classes, torch.full((4, 4), 7), 2)
    with pytest.raises(ValueError, match="2 class ids for 1 maps"):
        ps.cam_confusion(maps[:1], classes, _GT, 2)
    with pytest.raises(ValueError, match="square"):
        ps.miou_from_confusion(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="2 confusion matrices for 3"):
        ps.best_threshold(torch.zeros(2, 3, 3), [0.1, 0.2, 0.3])


# ----------------------------------------------------------------------------------------- binary segmentation


def test_binary_segmentation_by_hand():
    maps = torch.tensor([[[-1.0, 0.0, 2.0], [4.0, 1.0, 3.0]], [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]])
    gt = torch.tensor([[[False, False, True], [False, True, True]], [[True, False, False], [False, False, False]]])
    stats = ps.binary_segmentation_stats(maps, gt)
    # Image 0 clips to [[0, 0, 2], [4, 1, 3]] / 4, mean 2.5 / 6: foreground [[F, F, T], [T, F, T]].
    # Image 1 is constant: background everywhere.
    assert stats["correct"].tolist() == [4, 5] and stats["labeled"].tolist() == [6, 6]
    assert stats["intersection"].tolist() == [[2, 2], [5, 0]]
    assert stats["union"].tolist() == [[4, 4], [6, 1]]
    # AP over both channels: distinct scores 1, .75, .5, .25, 0 reach tp / n = 2/3, 3/5, 4/7, 5/9, 6/12 of 6.
    ap0 = (2 / 6) * (2 / 3) + (1 / 6) * (3 / 5) + (1 / 6) * (4 / 7) + (1 / 6) * (5 / 9) + (1 / 6) * (6 / 12)
    assert stats["ap"].tolist() == pytest.approx([ap0, 0.5])  # all-tied scores: AP = positive rate
    summary = ps.segmentation_summary(stats)
    assert summary["pixel_accuracy"] == pytest.approx(9 / 12)
    assert summary["miou"] == pytest.approx(((2 + 5) / (4 + 6) + (2 + 0) / (4 + 1)) / 2)
    assert summary["map"] == pytest.approx((ap0 + 0.5) / 2)
    # Without clipping (Chefer's script) image 0 normalises (x + 1) / 5: mean 14 / 30, foreground unchanged here.
    unclipped = ps.binary_segmentation_stats(maps[:1], gt[:1], clip_negative=False)
    assert unclipped["correct"].tolist() == [4]


def test_average_precision_equals_sklearn_and_batch_equals_loop():
    from sklearn.metrics import average_precision_score

    g = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 6, (5, 40), generator=g).float() / 5  # many ties
    targets = torch.rand(5, 40, generator=g) > 0.6
    ap = ps.average_precision(scores, targets)
    for row in range(5):
        assert ap[row].item() == pytest.approx(average_precision_score(targets[row].numpy(), scores[row].numpy()),
                                               abs=1e-12)
    maps = torch.randn(4, 7, 9, generator=g)
    gt = torch.rand(4, 7, 9, generator=g) > 0.5
    batch = ps.binary_segmentation_stats(maps, gt)
    for i in range(4):
        one = ps.binary_segmentation_stats(maps[i:i + 1], gt[i:i + 1])
        for key, value in one.items():
            assert torch.equal(batch[key][i:i + 1], value), key
        # Chefer's get_ap_scores: sklearn on the two stacked channels.
        res = maps[i].clamp(min=0)
        res = (res - res.min()) / (res.max() - res.min())
        reference = average_precision_score(torch.cat([~gt[i].flatten(), gt[i].flatten()]).numpy(),
                                            torch.cat([1 - res.flatten(), res.flatten()]).numpy())
        assert batch["ap"][i].item() == pytest.approx(reference, abs=1e-12)


def test_binary_segmentation_errors():
    with pytest.raises(ValueError, match="do not match"):
        ps.binary_segmentation_stats(torch.rand(2, 4, 4), torch.zeros(2, 4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        ps.binary_segmentation_stats(torch.rand(2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        ps.binary_segmentation_stats(torch.rand(4, 4), torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no images"):
        ps.segmentation_summary({k: torch.zeros(0) for k in ("correct", "labeled", "intersection", "union", "ap")})
    with pytest.raises(ValueError, match="lack"):
        ps.segmentation_summary({"ap": torch.zeros(1)})


# ------------------------------------------------------------------------------------------------ MaxBoxAccV2


def _reference_v2_ious(scoremap: np.ndarray, gt_inclusive: np.ndarray, thresholds) -> np.ndarray:
    # wsolevaluation's compute_bboxes_from_scoremaps(multi_contour_eval=True) + calculate_multiple_iou, transcribed.
    import cv2

    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    best = []
    for t in thresholds:
        _, binary = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        best.append(pairwise_box_iou(np.asarray(boxes or [[0, 0, 0, 0]]), gt_inclusive).max())
    return np.asarray(best)


def _two_box_maps():
    first = np.zeros((10, 10))
    first[2:6, 2:6] = 1.0  # on the object [2, 2, 6, 6)
    first[7:9, 7:9] = 0.5
    second = np.zeros((12, 12))
    second[0:5, 0:5] = 1.0  # the largest component, off the object
    second[8:11, 8:11] = 0.8  # on the object [8, 8, 11, 11)
    return [first, second], [np.array([[2.0, 2, 6, 6]]), np.array([[8.0, 8, 11, 11], [0, 9, 2, 12]])]


def test_max_box_accuracy_v2_by_hand():
    maps, boxes = _two_box_maps()
    thresholds = np.array([0.0, 0.5, 0.9])
    # Image 0: the square's contour box is (2, 2, 6, 6) used as inclusive (25 px) against (2, 2, 5, 5): 16 / 25.
    assert box_iou_curve_v2(maps[0], boxes[0], thresholds).tolist() == pytest.approx([0.64] * 3)
    # Image 1: the small blob's box (8, 8, 11, 11) against (8, 8, 10, 10): 9 / 16, while it is kept (q = 204 >
    # int(0.5 * 255) = 127, not > int(0.9 * 255) = 229); then only the square, off both boxes.
    assert box_iou_curve_v2(maps[1], boxes[1], thresholds).tolist() == pytest.approx([9 / 16, 9 / 16, 0])
    result = max_box_accuracy_v2(maps, boxes, thresholds=thresholds)
    assert result.accuracy.tolist() == [[1, 1, 0], [1, 1, 0], [0.5, 0.5, 0]]
    assert result.per_iou.tolist() == [1, 1, 0] and result.max_box_acc_v2 == pytest.approx(2 / 3)
    assert result.best_thresholds.tolist() == [0, 0, 0]
    # MaxBoxAcc on the same maps: image 1's largest component is the square, a miss at every threshold.
    v1 = max_box_accuracy(maps, [inclusive_boxes(b) for b in boxes], thresholds=np.array([0.0, 0.5, 0.9]))
    assert v1.accuracy.tolist() == [0.5, 0.5, 0.5]


def test_v2_boxes_include_holes():
    ring = np.zeros((9, 9))
    ring[1:8, 1:8] = 1.0
    ring[2:5, 2:5] = 0.0  # a hole near the top-left corner of the block
    boxes, box_cut, threshold_cut = contour_boxes(ring, [0.5])
    # Outer contour (1..7) -> (1, 1, 8, 8); hole border (1..5) -> (1, 1, 6, 6).
    assert sorted(boxes.tolist()) == [[1, 1, 6, 6], [1, 1, 8, 8]] and box_cut.tolist() == [0, 0]
    assert threshold_cut.tolist() == [0]
    # The object [1, 1, 7, 7) is inclusive (1, 1, 6, 6): the hole's box matches it exactly.
    assert box_iou_curve_v2(ring, np.array([[1, 1, 7, 7]]), [0.5]).tolist() == [1.0]
    # An all-zero map has no contour: the reference's [0, 0, 0, 0] box (1 pixel), IoU 1/4 with (0, 0, 1, 1).
    assert box_iou_curve_v2(np.zeros((4, 4)), np.array([[0, 0, 2, 2]]), [0.0, 0.5]).tolist() == [0.25, 0.25]


def test_v2_matches_wsolevaluation_with_opencv():
    pytest.importorskip("cv2")
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    for trial in range(4):
        raw = rng.random((20, 24))
        if trial % 2:
            raw = gaussian_filter(raw, 1.5)  # smooth maps: nested components, holes
        scoremap = normalize_scoremap(raw)
        gt = np.array([[3, 2, 12, 15], [10, 9, 24, 20]], dtype=np.float64)
        ours = box_iou_curve_v2(scoremap, gt)
        assert ours.shape == (1000,)
        np.testing.assert_allclose(ours, _reference_v2_ious(scoremap, inclusive_boxes(gt), V2_THRESHOLDS))


def test_box_statistics_add_up_and_summarise():
    maps, boxes = _two_box_maps()
    # Raw maps are normalised first: an affine change of the map changes nothing.
    stats = [max_box_accuracy_stats(3 * m - 1, b) for m, b in zip(maps, boxes)]
    assert stats[0]["hits"].shape == (100,) and stats[0]["hits_v2"].shape == (1000, 3)
    assert stats[0]["hits"].dtype == bool and stats[0]["hits_v2"].dtype == bool
    assert stats[0]["hits"].all() and not stats[1]["hits"].any()  # IoU 1 vs the largest component off the object
    stacked = {k: np.stack([s[k] for s in stats]) for k in stats[0]}
    summary = summarise_box_accuracy(stacked, np.array([[1.0, 1.0], [2.0, 0.0]]))
    assert summary["maxboxacc"].tolist() == [0.5, 1.0]
    # Image 1 hits at IoU 30 and 50 (9/16) until its blob (0.8) is cut away; image 0 at 30, 50 (0.64) everywhere.
    assert summary["maxboxacc_v2_iou30"].tolist() == [1.0, 1.0]
    assert summary["maxboxacc_v2_iou70"].tolist() == [0.0, 0.0]
    assert summary["maxboxacc_v2"].tolist() == pytest.approx([2 / 3, 2 / 3])
    counts = stacked["hits_v2"].sum(0)
    assert max_box_accuracy_v2_from_counts(counts, 2).max_box_acc_v2 == pytest.approx(2 / 3)
    assert box_hits_v2(np.array([0.3, 0.5, 0.69])).tolist() == [[True, False, False], [True, True, False],
                                                                [True, True, False]]


def test_inclusive_boxes_and_v2_errors():
    assert inclusive_boxes(np.array([[2, 2, 6, 6]])).tolist() == [[2, 2, 5, 5]]
    assert inclusive_boxes(np.array([[0.4, 1.6, 3.5, 4.49]])).tolist() == [[0, 2, 3, 3]]
    assert inclusive_boxes(torch.tensor([[2.2, 2.2, 2.4, 2.4]])).tolist() == [[2, 2, 2, 2]]  # at least a pixel
    with pytest.raises(ValueError, match="x1 > x0"):
        inclusive_boxes(np.array([[3, 0, 3, 4]]))
    with pytest.raises(ValueError, match="non-negative"):
        inclusive_boxes(np.array([[-1, 0, 3, 4]]))
    with pytest.raises(ValueError, match="at least one"):
        inclusive_boxes(np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        box_iou_curve_v2(np.full((3, 3), 2.0), np.array([[0, 0, 2, 2]]))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        box_iou_curve_v2(np.zeros((3, 3)), np.array([[0, 0, 2, 2]]), [1.0])
    with pytest.raises(ValueError, match="2 maps for 1"):
        max_box_accuracy_v2([np.zeros((3, 3))] * 2, [np.array([[0, 0, 2, 2]])])
    with pytest.raises(ValueError, match="hit counts"):
        max_box_accuracy_v2_from_counts(np.zeros((3, 3)), 2)


# ------------------------------------------------------------------------------------------ deletion/insertion

_MAP = torch.tensor([[0.1, 0.9, 0.9, 0.2], [0.5, 0.5, 0.3, 0.0], [0.8, 0.0, 0.7, 0.6], [0.4, 0.95, 0.0, 0.1]])
_MEAN, _STD = (0.5, 0.4, 0.3), (0.25, 0.5, 0.2)
# Stable descending order: 13, 1, 2, 8, 10, 11, 4, 5, 12, 6, 3, 0, 15, 7, 9, 14 (ties by raster index).
_FIRST_6 = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
_FIRST_12 = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)


def _image() -> torch.Tensor:
    pixels = torch.linspace(0.0123, 0.9871, 48).view(1, 3, 4, 4)  # off the 8-bit grid, so changes show
    return (pixels - torch.tensor(_MEAN).view(1, 3, 1, 1)) / torch.tensor(_STD).view(1, 3, 1, 1)


def test_deletion_schedule_pixel_by_pixel():
    image = _image()
    # 5 steps of 3 pixels, kept every 2 steps: step 0 (intact), step 2 (6 pixels), step 4 (12); step 5 is not kept.
    out = ps.perturbation_inputs(image, _MAP[None], _MEAN, _STD, "deletion", steps=5, pixels_per_step=3, every=2,
                                 generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 3, 4, 4)
    assert ps.perturbation_counts(16, "deletion", steps=5, pixels_per_step=3, every=2).tolist() == [0, 6, 12]
    changed = (out[0] != image).any(dim=1)  # (S, H, W)
    assert not changed[0].any()
    assert torch.equal(changed[1], _FIRST_6) and torch.equal(changed[2], _FIRST_12)
    # One colour per pixel, drawn once: a pixel deleted at step 2 keeps its colour at step 4.
    assert torch.equal(out[0, 2][:, _FIRST_6], out[0, 1][:, _FIRST_6])
    # The colours are the reference's 8-bit values k / 255, k in 0..254, normalised.
    pixels = out[0, 2][:, _FIRST_12] * torch.tensor(_STD)[:, None] + torch.tensor(_MEAN)[:, None]
    levels = pixels * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.min() >= -1e-4 and levels.max() <= 254.001
    # Tie at 0.5 (pixels 4 and 5): 7 pixels take the first in raster order.
    seven = ps.perturbation_inputs(image, _MAP[None], _MEAN, _STD, "deletion", steps=1, pixels_per_step=7, every=1)
    assert (seven[0, 1] != image[0]).any(dim=0)[1].tolist() == [True, False, False, False]


def test_insertion_schedule_pixel_by_pixel():
    image = _image()
    out = ps.perturbation_inputs(image, _MAP[None], _MEAN, _STD, "insertion", steps=5, pixels_per_step=3, every=2)
    assert ps.perturbation_counts(16, "insertion", steps=5, pixels_per_step=3, every=2).tolist() == [6, 12, 16]
    black = ((0 - torch.tensor(_MEAN)) / torch.tensor(_STD)).view(3, 1, 1).expand(3, 4, 4)
    for s, restored in enumerate([_FIRST_6, _FIRST_12, torch.ones(4, 4, dtype=torch.bool)]):
        assert torch.equal(out[0, s], torch.where(restored, image[0], black))
    noisy = ps.perturbation_inputs(image, _MAP[None], _MEAN, _STD, "insertion", steps=5, pixels_per_step=3, every=2,
                                   insertion_start="random", generator=torch.Generator().manual_seed(0))
    deleted = ps.perturbation_inputs(image, _MAP[None], _MEAN, _STD, "deletion", steps=5, pixels_per_step=3, every=2,
                                     generator=torch.Generator().manual_seed(0))
    both = _FIRST_12 & ~_FIRST_6  # still noise in the insertion, already noise in the deletion
    assert torch.equal(noisy[0, 0][:, both], deleted[0, 2][:, both])  # the same noise image
    assert torch.equal(noisy[0, -1], image[0])


def test_perturbation_defaults_shapes_and_batch_equals_loop():
    counts = ps.perturbation_counts(224 * 224)
    assert counts.tolist() == [0] + [250 * s for s in range(10, 101, 10)]  # area // 200 = 250 pixels a step
    assert ps.perturbation_counts(224 * 224, "insertion")[-1] == 224 * 224
    g = torch.Generator().manual_seed(4)
    images, maps = torch.randn(3, 3, 20, 20, generator=g), torch.rand(3, 20, 20, generator=g)
    for mode in ("deletion", "insertion"):
        batch = ps.perturbation_inputs(images, maps, _MEAN, _STD, mode, generator=torch.Generator().manual_seed(5))
        assert batch.shape == (3, 11, 3, 20, 20)
        loop_generator = torch.Generator().manual_seed(5)
        for i in range(3):
            one = ps.perturbation_inputs(images[i:i + 1], maps[i:i + 1], _MEAN, _STD, mode, generator=loop_generator)
            assert torch.equal(batch[i:i + 1], one)


def test_curve_auc():
    scores = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert ps.curve_auc(scores).tolist() == pytest.approx([0.25 * 1.5, 1.0])
    x = torch.tensor([0.0, 0.1, 0.2, 0.5, 1.0])
    assert ps.curve_auc(scores, x).tolist() == pytest.approx([0.15, 1.0])
    assert ps.curve_auc(torch.tensor([[1, 0]])).tolist() == [0.5]  # integer correctness counts work too


def test_perturbation_errors():
    image, maps = _image(), _MAP[None]
    with pytest.raises(ValueError, match="'deletion' or 'insertion'"):
        ps.perturbation_inputs(image, maps, _MEAN, _STD, "blur")
    with pytest.raises(ValueError, match="do not match"):
        ps.perturbation_inputs(image, maps[:, :3], _MEAN, _STD)
    with pytest.raises(ValueError, match="one per channel"):
        ps.perturbation_inputs(image, maps, _MEAN[:2], _STD)
    with pytest.raises(ValueError, match="every <= steps"):
        ps.perturbation_inputs(image, maps, _MEAN, _STD, steps=5, every=10)
    with pytest.raises(ValueError, match="insertion_start"):
        ps.perturbation_inputs(image, maps, _MEAN, _STD, "insertion", insertion_start="grey")
    with pytest.raises(ValueError, match="S >= 2"):
        ps.curve_auc(torch.ones(3, 1))
    with pytest.raises(ValueError, match="increase"):
        ps.curve_auc(torch.ones(1, 3), torch.tensor([0.0, 0.5, 0.5]))
