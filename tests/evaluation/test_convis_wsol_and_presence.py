"""Hand-made cases for the localisation arithmetic (boxes, components, MaxBoxAcc), the boxes file, and the
all-concepts subtree minimum behind the concept browser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_clip.convis.frames import box_to_square_frame
from captum_clip.evaluation.image_folders import folder_synset, read_boxes_file
from captum_clip.convis.presence import subtree_min_all
from captum_clip.convis.ranks import subtree_min
from captum_clip.evaluation.convis_wsol import box_iou, boxes_from_masks, largest_component_box, max_box_accuracy


def test_box_iou_uses_inclusive_pixel_corners():
    assert box_iou(np.array([0, 0, 1, 1]), np.array([[0, 0, 1, 1]]))[0] == 1
    # 2x2 and 2x2 sharing one column: 2 / (4 + 4 - 2).
    assert box_iou(np.array([0, 0, 1, 1]), np.array([[1, 0, 2, 1]]))[0] == pytest.approx(2 / 6)
    assert box_iou(np.array([0, 0, 1, 1]), np.array([[5, 5, 6, 6], [0, 0, 0, 0]])).tolist() == [0, 0.25]


def test_largest_component_is_four_connected():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # diagonal chain: three 1-pixel components under 4-connectivity
    mask[3:6, 3:5] = True  # 6 pixels
    assert largest_component_box(mask).tolist() == [3, 3, 4, 5]
    assert largest_component_box(np.zeros((3, 3), bool)) is None


def test_boxes_from_masks():
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 1:3, 2:4] = True
    masks[1, 4, 0] = masks[1, 0, 4] = True  # two pieces: the box spans both
    assert boxes_from_masks(masks).tolist() == [[2, 1, 3, 2], [0, 0, 4, 4]]
    with pytest.raises(ValueError, match="empty"):
        boxes_from_masks(np.zeros((1, 3, 3), bool))


def test_max_box_accuracy_on_hand_made_maps():
    # Image 0: a bright 4x4 square on the object at (2..5, 2..5) and a dimmer blob elsewhere.
    first = np.zeros((10, 10))
    first[2:6, 2:6] = 1.0
    first[7:10, 7:10] = 0.5
    # Image 1: the peak is off the object.
    second = np.zeros((10, 10))
    second[0:2, 0:2] = 1.0
    gt = [np.array([[2, 2, 5, 5]]), np.array([[6, 6, 9, 9]])]
    result = max_box_accuracy([first, second], gt, thresholds=np.array([0.0, 0.4, 0.6]))
    # t=0 keeps the two blobs of image 0; the 4x4 one is larger and exact. t=0.6 keeps only it too.
    assert result.accuracy.tolist() == [0.5, 0.5, 0.5]
    assert result.max_box_acc == 0.5 and result.best_threshold == 0.0
    assert result.iou[0].tolist() == [1.0, 1.0, 1.0] and result.iou[1, 0] == 0
    # A map that is all zero keeps nothing above any threshold: no box, IoU 0.
    empty = max_box_accuracy([np.zeros((4, 4))], [np.array([[0, 0, 3, 3]])], thresholds=np.array([0.0]))
    assert empty.max_box_acc == 0
    with pytest.raises(ValueError, match="2 maps for 1"):
        max_box_accuracy([first, second], gt[:1])


def test_boxes_file_and_square_frame(tmp_path):
    path = tmp_path / "boxes.txt"
    path.write_text("# image x y width height\na.png 10 20 30 40\nb/c.jpg,0,0,5,5\na.png 0 0 1 1  # second box\n")
    boxes = read_boxes_file(path)
    assert boxes["a.png"].tolist() == [[10, 20, 39, 59], [0, 0, 0, 0]] and boxes["b/c.jpg"].tolist() == [[0, 0, 4, 4]]
    path.write_text("a.png 1 2 3\n")
    with pytest.raises(ValueError, match=":1: expected"):
        read_boxes_file(path)
    path.write_text("a.png 1 2 0 3\n")
    with pytest.raises(ValueError, match="positive"):
        read_boxes_file(path)
    # A 100x200 (H x W) image keeps columns 50..149; a box in them moves left by 50 and scales by 224/100.
    moved = box_to_square_frame([60, 10, 69, 19], 100, 200, 224)
    np.testing.assert_allclose(moved, [10 * 2.24, 10 * 2.24, 20 * 2.24 - 1, 20 * 2.24 - 1])
    assert box_to_square_frame([0, 0, 10, 10], 100, 200, 224) is None  # entirely in the cropped margin


def test_folder_names_resolve_to_synsets(real_wordnet):
    assert folder_synset("n01530575", real_wordnet) == "brambling.n.01"
    assert folder_synset("goldfinch.n.01", real_wordnet) == "new_world_goldfinch.n.01"  # aliases resolve
    assert folder_synset("not_a_class", real_wordnet) is None


def test_subtree_min_all_matches_per_concept_gathers(real_wordnet):
    from captum_clip.convis.vocabulary import ConceptVocabulary

    vocabulary = ConceptVocabulary.from_synsets(["dog.n.01", "cat.n.01", "square.n.01", "bird.n.01"],
                                                wordnet=real_wordnet)
    values = torch.randint(0, 1000, (5, len(vocabulary)))
    every = subtree_min_all(values, vocabulary)
    expected = subtree_min(values, [vocabulary.subtree(n) for n in vocabulary.names], pad_value=10**6)
    assert torch.equal(every, expected)
    floats = torch.rand(3, len(vocabulary), dtype=torch.float64)
    assert torch.equal(subtree_min_all(floats, vocabulary),
                       subtree_min(floats, [vocabulary.subtree(n) for n in vocabulary.names], float("inf")))
