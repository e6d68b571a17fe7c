"""Every reader on a tiny dataset written here in its real on-disk format, checked against values set by hand.

Images are generated shape scenes (some padded to non-square sizes, so that a swapped height and width shows);
masks, boxes and labels are written by the test, so each expected value is known exactly.
"""

from __future__ import annotations

import json
import pickle
import xml.etree.ElementTree as ElementTree

import h5py
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from captum_clip.errors import DatasetLayoutError, WordNetNotFoundError
from captum_clip.evaluation.datasets import DATASETS, EvalDataset, read_dataset
from captum_clip.evaluation.datasets import coco, cub, folder, imagenet, imagenet_seg, voc
from captum_clip.shipped.scenes import generate_scene, single_object_classnames
from captum_clip.shipped.zero_shot import HELD_OUT_SEED_START

CLASSNAMES = single_object_classnames()


def scene(seed: int, width: int = 64):
    """A 64-px scene padded on the right with grey to ``width`` -> image (64, width, 3), masks (n, 64, width),
    class indices (n,) of its objects in CLASSNAMES."""
    s = generate_scene(seed, image_size=64)
    pad = ((0, 0), (0, width - 64))
    image = np.pad(s.image, pad + ((0, 0),), constant_values=128)
    masks = np.stack([np.pad(m, pad) for m in s.masks])
    return image, masks, np.asarray([CLASSNAMES.index(o) + 1 for o in s.objects])


def paint(masks, classes) -> np.ndarray:
    """The class-index mask of disjoint object masks -> (H, W) uint8."""
    labels = np.zeros(masks.shape[1:], np.uint8)
    for m, k in zip(masks, classes):
        labels[m] = k
    return labels


def bbox(m) -> list:
    """xyxy of a boolean mask, x1/y1 exclusive."""
    ys, xs = np.nonzero(m)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def layout_error(excinfo, layout: str) -> None:
    assert isinstance(excinfo.value, DatasetLayoutError)
    assert layout in str(excinfo.value)


# --------------------------------------------------------------------------
# folder
# --------------------------------------------------------------------------


def write_folder(root, masks=True, boxes=True):
    """Two images: "a" (PNG, one-channel mask) and "b" (64x96 JPEG, palette mask). Returns the label masks."""
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(CLASSNAMES) + "\n")
    image_a, masks_a, classes_a = scene(3)
    image_b, masks_b, classes_b = scene(5, width=96)
    Image.fromarray(image_a).save(root / "images" / "a.png")
    Image.fromarray(image_b).save(root / "images" / "b.jpg", quality=95)
    labels_a, labels_b = paint(masks_a, classes_a), paint(masks_b, classes_b)
    labels_b[0, :5] = 255  # an ignored strip
    if masks:
        (root / "masks").mkdir()
        Image.fromarray(labels_a).save(root / "masks" / "a.png")
        palette = Image.fromarray(labels_b)
        palette.putpalette(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8).tolist())
        palette.save(root / "masks" / "b.png")
    if boxes:
        rows = ["stem,class_index,x0,y0,x1,y1", "b,36,0.5,1.5,10,12"]
        rows += [f"a,{k},{','.join(str(v) for v in bbox(m))}" for m, k in zip(masks_a, classes_a)]
        (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    return (labels_a, masks_a, classes_a), labels_b


def test_folder_reads_masks_boxes_and_classes(tmp_path):
    (labels_a, masks_a, classes_a), labels_b = write_folder(tmp_path)
    assert Image.open(tmp_path / "masks" / "b.png").mode == "P"
    dataset = read_dataset("folder", tmp_path)
    assert isinstance(dataset, DATASETS["folder"]) and dataset.kind == "folder" and dataset.split is None
    assert dataset.stems == ["a", "b"] and dataset.classnames == CLASSNAMES
    assert dataset.has_masks and dataset.has_boxes and not dataset.has_labels
    a, b = dataset[0], dataset[1]
    np.testing.assert_array_equal(a.mask, labels_a)
    assert a.mask.dtype == np.uint8
    np.testing.assert_array_equal(a.boxes, [bbox(m) for m in masks_a])
    np.testing.assert_array_equal(a.box_labels, classes_a)
    assert a.boxes.dtype == np.float32 and not a.difficult.any()
    assert a.present_classes() == sorted(classes_a.tolist())
    assert b.image.size == (96, 64) and b.image.mode == "RGB"
    np.testing.assert_array_equal(b.mask, labels_b)
    assert b.mask[0, 0] == 255 and b.mask[63, 95] == 0
    np.testing.assert_array_equal(b.boxes, [[0.5, 1.5, 10, 12]])
    np.testing.assert_array_equal(b.box_labels, [36])


def test_folder_without_masks_or_boxes(tmp_path):
    write_folder(tmp_path, masks=False, boxes=False)
    dataset = folder.FolderDataset(tmp_path)
    assert not dataset.has_masks and not dataset.has_boxes
    sample = dataset[1]
    assert sample.mask is None and sample.boxes is None and sample.present_classes() == []


def test_folder_image_without_box_rows_has_no_boxes(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "boxes.csv").write_text("stem,class_index,x0,y0,x1,y1\nb,1,0,0,4,4\n")
    sample = folder.FolderDataset(tmp_path)[0]
    assert sample.boxes.shape == (0, 4) and sample.box_labels.shape == (0,)


@pytest.mark.parametrize("missing", ["classes.txt", "images", "masks/a.png"])
def test_folder_missing_file_shows_the_layout(tmp_path, missing):
    write_folder(tmp_path)
    target = tmp_path / missing
    if target.is_dir():
        for path in target.iterdir():
            path.unlink()
        target.rmdir()
    else:
        target.unlink()
    with pytest.raises(DatasetLayoutError) as excinfo:
        folder.FolderDataset(tmp_path)[0]
    layout_error(excinfo, folder.LAYOUT)
    assert missing in str(excinfo.value)


def test_folder_rejects_a_blank_class_line(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "classes.txt").write_text("red circle\n\nred square\n")
    with pytest.raises(ValueError, match="line 2 is blank"):
        folder.FolderDataset(tmp_path)


def test_folder_rejects_an_rgb_mask(tmp_path):
    write_folder(tmp_path)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"'RGB'.*one-channel \('L'\) or palette \('P'\) PNG"):
        folder.FolderDataset(tmp_path)[0]


def test_folder_rejects_mask_values_that_are_no_class(tmp_path):
    write_folder(tmp_path)
    labels = np.zeros((64, 64), np.uint8)
    labels[1, 1], labels[2, 2], labels[3, 3] = 37, 99, 255
    Image.fromarray(labels).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=r"a\.png: mask values \[37, 99\] are not class indices.*1\.\.36"):
        folder.FolderDataset(tmp_path)[0]


def test_folder_rejects_a_mask_of_another_size(tmp_path):
    write_folder(tmp_path)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png: mask is 64x64 \(WxH\) but its image is 96x64"):
        folder.FolderDataset(tmp_path)[1]


@pytest.mark.parametrize("row, message", [
    ("a,0,0,0,4,4", r"line 2: class_index 0 is not in 1\.\.36"),
    ("a,37,0,0,4,4", r"line 2: class_index 37 is not in 1\.\.36"),
    ("a,1.5,0,0,4,4", r"line 2: class_index 1\.5 is not in 1\.\.36"),
    ("c,1,0,0,4,4", r"line 2: no image images/c"),
    ("a,1,0,0,4", r"line 2: expected a stem and five numbers"),
])
def test_folder_rejects_bad_box_rows(tmp_path, row, message):
    write_folder(tmp_path)
    (tmp_path / "boxes.csv").write_text(f"stem,class_index,x0,y0,x1,y1\n{row}\n")
    with pytest.raises(ValueError, match=message):
        folder.FolderDataset(tmp_path)


def test_folder_rejects_a_bad_box_header(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "boxes.csv").write_text("stem,label,x,y,w,h\na,1,0,0,4,4\n")
    with pytest.raises(ValueError, match="expected 'stem,class_index,x0,y0,x1,y1'"):
        folder.FolderDataset(tmp_path)


# --------------------------------------------------------------------------
# VOC
# --------------------------------------------------------------------------


def voc_palette() -> list:
    """VOC's colour map: bits of the index spread over the high bits of R, G and B."""
    index = np.arange(256)
    colours = np.zeros((256, 3), np.int64)
    for bit in range(8):
        for channel in range(3):
            colours[:, channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8).ravel().tolist()


def voc_xml(path, filename, width, height, objects) -> None:
    annotation = ElementTree.Element("annotation")
    ElementTree.SubElement(annotation, "filename").text = filename
    size = ElementTree.SubElement(annotation, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ElementTree.SubElement(size, key).text = str(value)
    for name, box, difficult in objects:
        obj = ElementTree.SubElement(annotation, "object")
        ElementTree.SubElement(obj, "name").text = name
        ElementTree.SubElement(obj, "pose").text = "Unspecified"
        ElementTree.SubElement(obj, "truncated").text = "0"
        ElementTree.SubElement(obj, "difficult").text = str(difficult)
        bndbox = ElementTree.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ElementTree.SubElement(bndbox, key).text = str(value)
    ElementTree.ElementTree(annotation).write(path)


VOC_OBJECTS = {
    # VOC boxes are 1-based and inclusive: xmin 11 .. xmax 40 are 0-based columns 10..39, i.e. [10, 40).
    "2007_000032": [("cat", (11, 21, 40, 50), 0), ("diningtable", (1, 1, 80, 64), 1)],
    "2007_000039": [("tvmonitor", (5, 6, 7, 8), 0)],
}
VOC_BOXES = {"2007_000032": [[10, 20, 40, 50], [0, 0, 80, 64]], "2007_000039": [[4, 5, 7, 8]]}
VOC_LABELS = {"2007_000032": [8, 11], "2007_000039": [20]}


def write_voc(tmp_path):
    """VOCdevkit/VOC2012 with two segmentation images (one 64x80) and one detection-only train image."""
    year = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("ImageSets/Segmentation", "ImageSets/Main", "JPEGImages", "SegmentationClass", "Annotations"):
        (year / sub).mkdir(parents=True)
    labels = {}
    for stem, seed, width in (("2007_000032", 3, 80), ("2007_000039", 5, 64)):
        image, masks, _ = scene(seed, width)
        classes = [8, 12, 15][: len(masks)]  # cat, dog, person
        label = paint(masks, classes)
        label[masks.any(0) & ~ndimage.binary_erosion(masks.any(0))] = 255  # VOC's object borders
        png = Image.fromarray(label)
        png.putpalette(voc_palette())
        png.save(year / "SegmentationClass" / f"{stem}.png")
        Image.fromarray(image).save(year / "JPEGImages" / f"{stem}.jpg", quality=95)
        voc_xml(year / "Annotations" / f"{stem}.xml", f"{stem}.jpg", width, 64, VOC_OBJECTS[stem])
        labels[stem] = (label, masks, classes)
    (year / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000039\n2007_000032\n")
    (year / "ImageSets" / "Main" / "train.txt").write_text("2007_000039\n")
    return year, labels


def test_voc_reads_palette_masks_and_one_based_boxes(tmp_path):
    year, labels = write_voc(tmp_path)
    assert Image.open(year / "SegmentationClass" / "2007_000032.png").mode == "P"
    dataset = read_dataset("voc", tmp_path / "VOCdevkit")
    assert dataset.kind == "voc" and dataset.split == "val" and dataset.root == year
    assert dataset.stems == ["2007_000032", "2007_000039"]
    assert dataset.has_masks and dataset.has_boxes
    for index, stem in enumerate(dataset.stems):
        sample = dataset[index]
        label, masks, classes = labels[stem]
        np.testing.assert_array_equal(sample.mask, label)
        np.testing.assert_array_equal(sample.boxes, VOC_BOXES[stem])
        np.testing.assert_array_equal(sample.box_labels, VOC_LABELS[stem])
        interior = ndimage.binary_erosion(masks[0])
        assert sample.mask[tuple(np.argwhere(interior)[0])] == classes[0]
        border = masks[0] & ~ndimage.binary_erosion(masks.any(0))
        assert sample.mask[tuple(np.argwhere(border)[0])] == 255
        assert sample.present_classes() == sorted(classes)
    first = dataset[0]
    assert first.image.size == (80, 64)
    np.testing.assert_array_equal(first.difficult, [False, True])
    assert first.boxes.dtype == np.float32


def test_voc_class_names_are_prompt_friendly(tmp_path):
    write_voc(tmp_path)
    names = voc.VOCDataset(tmp_path / "VOCdevkit").classnames
    assert len(names) == 20
    assert (names[0], names[10], names[13], names[15], names[19]) == (
        "aeroplane", "dining table", "motorbike", "potted plant", "tv monitor")
    assert names[7] == "cat" and names[14] == "person"


@pytest.mark.parametrize("where", ["VOC2012", ".", "parent"])
def test_voc_root_may_be_the_year_folder_or_above(tmp_path, where):
    year, _ = write_voc(tmp_path)
    root = {"VOC2012": year, ".": year.parent, "parent": tmp_path}[where]
    assert voc.VOCDataset(root).stems == ["2007_000032", "2007_000039"]


def test_voc_main_list_gives_boxes_without_masks(tmp_path):
    write_voc(tmp_path)
    dataset = voc.VOCDataset(tmp_path / "VOCdevkit", split="train")
    assert not dataset.has_masks and dataset.has_boxes and dataset.stems == ["2007_000039"]
    sample = dataset[0]
    assert sample.mask is None
    np.testing.assert_array_equal(sample.boxes, VOC_BOXES["2007_000039"])


def test_voc_missing_files_show_the_layout(tmp_path):
    year, _ = write_voc(tmp_path)
    with pytest.raises(DatasetLayoutError) as excinfo:
        voc.VOCDataset(year, split="test")
    layout_error(excinfo, voc.LAYOUT.replace("<year>", "2012"))
    assert "ImageSets/Segmentation/test.txt" in str(excinfo.value)
    with pytest.raises(DatasetLayoutError, match="VOC2007"):
        voc.VOCDataset(tmp_path / "VOCdevkit", year="2007")
    (year / "JPEGImages" / "2007_000039.jpg").unlink()
    with pytest.raises(DatasetLayoutError) as excinfo:
        voc.VOCDataset(year)[1]
    layout_error(excinfo, voc.LAYOUT.replace("<year>", "2012"))


def test_voc_rejects_an_unknown_object_name(tmp_path):
    year, _ = write_voc(tmp_path)
    voc_xml(year / "Annotations" / "2007_000039.xml", "x.jpg", 64, 64, [("kitten", (1, 1, 2, 2), 0)])
    with pytest.raises(ValueError, match="'kitten' is not a VOC class"):
        voc.VOCDataset(year)[1]


# --------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------


def rle(mask) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def write_coco(tmp_path):
    """val2017 with image 42 (64x80: an RLE person on a larger polygon dog, a crowd of cars), image 9 (a polygon
    car) and image 7 (no annotations)."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    image42, masks, _ = scene(3, width=80)
    person = masks[0]
    x0, y0, x1, y1 = bbox(person)
    dx0, dy0, dx1, dy1 = max(x0 - 2, 0), max(y0 - 2, 0), x1 + 2, y1 + 2
    crowd = np.zeros((64, 80), bool)
    crowd[:, 70:] = True
    image9, _, _ = scene(5)
    images = [(42, image42), (9, image9), (7, image9)]
    for image_id, pixels in images:
        Image.fromarray(pixels).save(tmp_path / "val2017" / f"{image_id:012d}.jpg", quality=95)
    instances = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": p.shape[0], "width": p.shape[1]}
                   for i, p in images],
        "categories": [{"id": 18, "name": "dog", "supercategory": "animal"},
                       {"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 3, "name": "car", "supercategory": "vehicle"}],
        "annotations": [
            # The smaller person comes first, so painting in file order would bury it under the dog.
            {"id": 1, "image_id": 42, "category_id": 1, "iscrowd": 0, "segmentation": rle(person),
             "area": float(person.sum()), "bbox": mask_utils.toBbox(mask_utils.encode(
                 np.asfortranarray(person.astype(np.uint8)))).tolist()},
            {"id": 2, "image_id": 42, "category_id": 18, "iscrowd": 0,
             "segmentation": [[dx0, dy0, dx1, dy0, dx1, dy1, dx0, dy1]],
             "area": float((dx1 - dx0) * (dy1 - dy0)), "bbox": [dx0, dy0, dx1 - dx0, dy1 - dy0]},
            {"id": 3, "image_id": 42, "category_id": 3, "iscrowd": 1, "segmentation": rle(crowd),
             "area": float(crowd.sum()), "bbox": [70, 0, 10, 64]},
            {"id": 4, "image_id": 9, "category_id": 3, "iscrowd": 0,
             "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "area": 400.0, "bbox": [10, 10, 20, 20]},
        ],
    }
    (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(instances, default=int))
    return person, (dx0, dy0, dx1, dy1)


def test_coco_masks_boxes_and_crowd(tmp_path, capsys):
    person, (dx0, dy0, dx1, dy1) = write_coco(tmp_path)
    dataset = read_dataset("coco", tmp_path)
    assert capsys.readouterr().out == ""  # pycocotools' progress prints are swallowed
    assert dataset.kind == "coco" and dataset.split == "val2017"
    assert dataset.classnames == ["person", "car", "dog"]  # category ids 1, 3, 18
    assert dataset.stems == ["000000000009", "000000000042"]  # image 7 has no annotation
    car, big = dataset[0], dataset[1]
    assert car.mask[20, 20] == 2 and car.mask[5, 5] == 0 and car.mask[29, 29] == 2 and car.mask[30, 30] == 0
    np.testing.assert_array_equal(car.boxes, [[10, 10, 30, 30]])
    np.testing.assert_array_equal(car.box_labels, [2])
    assert big.image.size == (80, 64) and big.mask.shape == (64, 80)
    assert (big.mask[person] == 1).all()  # on top of the larger dog
    assert big.mask[dy0 + 1, dx0 + 1] == 3 and big.mask[dy1 - 1, dx1 - 1] == 3
    assert (big.mask[:, 70:] == 255).all()  # crowd: ignored
    assert big.mask[63, 68] == 0
    assert np.array_equal(np.unique(big.mask), [0, 1, 3, 255])
    x0, y0, x1, y1 = bbox(person)
    np.testing.assert_array_equal(big.boxes, [[dx0, dy0, dx1, dy1], [x0, y0, x1, y1]])  # crowd has no box
    np.testing.assert_array_equal(big.box_labels, [3, 1])
    assert big.present_classes() == [1, 3] and not big.difficult.any()


def test_coco_missing_files_show_the_layout(tmp_path):
    with pytest.raises(DatasetLayoutError) as excinfo:
        coco.COCODataset(tmp_path)
    layout_error(excinfo, coco.LAYOUT)
    assert "instances_val2017.json" in str(excinfo.value)
    write_coco(tmp_path)
    (tmp_path / "val2017" / "000000000009.jpg").unlink()
    with pytest.raises(DatasetLayoutError) as excinfo:
        coco.COCODataset(tmp_path)[0]
    layout_error(excinfo, coco.LAYOUT)


# --------------------------------------------------------------------------
# ImageNet-Segmentation
# --------------------------------------------------------------------------


def write_gtsegs(path, items, cell=True) -> None:
    """``items`` (image (H, W, 3), mask (H, W)) as MATLAB v7.3 stores a struct of cells: a 512-byte user block,
    column-major arrays (axes reversed) under ``#refs#``, and ``value/img`` / ``value/gt`` of (N, 1) references;
    each ``gt`` entry is itself a cell, whose first reference is the mask."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        images = f.create_dataset("value/img", (len(items), 1), dtype=h5py.ref_dtype)
        gts = f.create_dataset("value/gt", (len(items), 1), dtype=h5py.ref_dtype)
        targets = f.create_dataset("value/target", (len(items), 1), dtype=h5py.ref_dtype)
        for i, (image, mask) in enumerate(items):
            images[i, 0] = refs.create_dataset(f"img{i}", data=image.transpose(2, 1, 0)).ref
            gt = refs.create_dataset(f"gt{i}", data=mask.astype(np.uint8).T)
            if cell:
                wrapper = refs.create_dataset(f"cell{i}", (1, 1), dtype=h5py.ref_dtype)
                wrapper[0, 0] = gt.ref
                gt = wrapper
            gts[i, 0] = gt.ref
            wnid = np.frombuffer("n01440764".encode("utf-16-le"), "<u2")[:, None]
            targets[i, 0] = refs.create_dataset(f"target{i}", data=wnid).ref


@pytest.mark.parametrize("cell", [True, False])
def test_imagenet_seg_reads_matlab_layout(tmp_path, cell):
    items = []
    for seed, width in ((3, 96), (5, 64)):
        image, masks, _ = scene(seed, width)
        items.append((image, masks.any(0)))
    write_gtsegs(tmp_path / "gtsegs_ijcv.mat", items, cell=cell)
    dataset = read_dataset("imagenet-seg", tmp_path)
    assert dataset.kind == "imagenet-seg" and dataset.classnames == ["object"] and dataset.has_masks
    assert dataset.stems == ["0000", "0001"] and dataset._file is None  # opened on first load only
    for sample, (image, foreground) in zip(dataset, items):
        assert sample.image.size == (image.shape[1], image.shape[0])
        np.testing.assert_array_equal(np.asarray(sample.image), image)
        np.testing.assert_array_equal(sample.mask, foreground.astype(np.uint8))
        assert sample.present_classes() == [1]
    clone = pickle.loads(pickle.dumps(dataset))  # as DataLoader workers receive it
    assert clone._file is None
    np.testing.assert_array_equal(clone[1].mask, items[1][1])
    assert imagenet_seg.ImageNetSegDataset(tmp_path / "gtsegs_ijcv.mat").stems == dataset.stems


def test_imagenet_seg_missing_file_shows_the_layout(tmp_path):
    with pytest.raises(DatasetLayoutError) as excinfo:
        imagenet_seg.ImageNetSegDataset(tmp_path)
    layout_error(excinfo, imagenet_seg.LAYOUT)


# --------------------------------------------------------------------------
# CUB-200-2011
# --------------------------------------------------------------------------


def write_cub(tmp_path):
    root = tmp_path / "CUB_200_2011"
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    files = {1: (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg"),
             2: (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg"),
             3: (2, "002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg"),
             4: (2, "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg")}
    for i, (_, name) in files.items():
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene(i, width=64 + 8 * i)[0]).save(root / "images" / name)
    (root / "classes.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)))
    (root / "images.txt").write_text("".join(f"{i} {name}\n" for i, (_, name) in files.items()))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {k}\n" for i, (k, _) in files.items()))
    (root / "bounding_boxes.txt").write_text(
        "1 27.0 51.0 30.0 12.0\n2 10.5 4.0 20.0 30.0\n3 0.0 0.0 80.0 64.0\n4 60.0 33.0 7.0 2.5\n")
    (root / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n4 0\n")
    return root


def test_cub_boxes_labels_and_splits(tmp_path):
    root = write_cub(tmp_path)
    dataset = read_dataset("cub", root)
    assert dataset.kind == "cub" and dataset.split == "test" and dataset.has_boxes and dataset.has_labels
    assert dataset.classnames == ["Black footed Albatross", "Laysan Albatross"]
    assert dataset.stems == ["00002", "00004"]
    second, fourth = dataset[0], dataset[1]
    np.testing.assert_array_equal(second.boxes, [[10.5, 4.0, 30.5, 34.0]])  # x, y, w, h -> x0, y0, x0+w, y0+h
    assert second.label == 1 and second.box_labels.tolist() == [1] and second.image.size == (80, 64)
    np.testing.assert_array_equal(fourth.boxes, [[60.0, 33.0, 67.0, 35.5]])
    assert fourth.label == 2 and fourth.present_classes() == [2] and not fourth.difficult.any()
    assert cub.CUBDataset(root, split="train").stems == ["00001", "00003"]
    assert read_dataset("cub", root, split="all").stems == ["00001", "00002", "00003", "00004"]


def test_cub_errors(tmp_path):
    root = write_cub(tmp_path)
    with pytest.raises(ValueError, match="split 'val' is unknown"):
        cub.CUBDataset(root, split="val")
    (root / "bounding_boxes.txt").write_text("1 27.0 51.0 30.0 12.0\n")
    with pytest.raises(ValueError, match=r"bounding_boxes\.txt has no line for image id\(s\) \[2, 3, 4\]"):
        cub.CUBDataset(root)
    (root / "images.txt").unlink()
    with pytest.raises(DatasetLayoutError) as excinfo:
        cub.CUBDataset(root)
    layout_error(excinfo, cub.LAYOUT)


# --------------------------------------------------------------------------
# ImageNet
# --------------------------------------------------------------------------

IMAGENET_FILES = ["n02084071/ILSVRC2012_val_00000001", "n01440764/ILSVRC2012_val_00002138",
                  "n01440764/ILSVRC2012_val_00000293"]


def write_imagenet(tmp_path, folders=IMAGENET_FILES):
    for seed, stem in enumerate(folders):
        path = tmp_path / "val" / f"{stem}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene(seed)[0]).save(path, format="JPEG")
    return tmp_path


def test_imagenet_labels_stems_and_classnames_file(tmp_path):
    root = write_imagenet(tmp_path)
    (root / "classnames.txt").write_text("tench fish\nhound\n")
    dataset = read_dataset("imagenet", root)
    assert dataset.kind == "imagenet" and dataset.split == "val" and dataset.has_labels and not dataset.has_masks
    assert dataset.stems == ["n01440764/ILSVRC2012_val_00000293", "n01440764/ILSVRC2012_val_00002138",
                             "n02084071/ILSVRC2012_val_00000001"]
    assert dataset.classnames == ["tench fish", "hound"]
    assert [s.label for s in dataset] == [1, 1, 2]
    assert dataset[2].present_classes() == [2] and dataset[2].mask is None and dataset[2].boxes is None


def test_imagenet_names_from_wordnet(tmp_path):
    from captum_clip.wordnet import load_wordnet

    try:
        load_wordnet()
    except WordNetNotFoundError:
        pytest.skip("no WordNet on this machine (apt-get install wordnet-base), so the names of wnid folders "
                    "cannot be looked up")
    assert imagenet.ImageNetDataset(write_imagenet(tmp_path)).classnames == ["tench", "dog"]


def test_imagenet_without_wordnet_asks_for_classnames(tmp_path, monkeypatch):
    import captum_clip.wordnet

    def missing():
        raise WordNetNotFoundError("WordNet 3.0 was not found.")

    monkeypatch.setattr(captum_clip.wordnet, "load_wordnet", missing)
    with pytest.raises(ValueError, match=r"classnames\.txt.*apt-get install wordnet-base") as excinfo:
        imagenet.ImageNetDataset(write_imagenet(tmp_path))
    assert not isinstance(excinfo.value, DatasetLayoutError)


def test_imagenet_errors(tmp_path):
    with pytest.raises(DatasetLayoutError) as excinfo:
        imagenet.ImageNetDataset(tmp_path)
    layout_error(excinfo, imagenet.LAYOUT)
    (tmp_path / "val" / "n01440764").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError) as excinfo:
        imagenet.ImageNetDataset(tmp_path)
    layout_error(excinfo, imagenet.LAYOUT)
    write_imagenet(tmp_path, ["cats/a", "dogs/b"])
    (tmp_path / "val" / "n01440764").rmdir()
    with pytest.raises(ValueError, match=r"\['cats', 'dogs'\] are not WordNet ids"):
        imagenet.ImageNetDataset(tmp_path)
    (tmp_path / "classnames.txt").write_text("cat\n")
    with pytest.raises(ValueError, match="names 1 classes but"):
        imagenet.ImageNetDataset(tmp_path)


# --------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------


def test_shapes_masks_and_boxes_match_the_scenes():
    dataset = read_dataset("shapes", n=3, seed=1000)
    assert dataset.kind == "shapes" and dataset.root is None and dataset.split is None
    assert dataset.stems == ["0000001000", "0000001001", "0000001002"]
    assert dataset.classnames == CLASSNAMES and len(CLASSNAMES) == 36
    for index, sample in enumerate(dataset):
        s = generate_scene(1000 + index, image_size=64)
        expected = [CLASSNAMES.index(o) + 1 for o in s.objects]
        labels = paint(s.masks, expected)
        np.testing.assert_array_equal(sample.mask, labels)
        np.testing.assert_array_equal(sample.boxes, [bbox(m) for m in s.masks])
        np.testing.assert_array_equal(sample.box_labels, expected)
        np.testing.assert_array_equal(np.asarray(sample.image), s.image)
    with pytest.raises(IndexError):
        dataset[3]


def test_shapes_defaults_and_options():
    dataset = DATASETS["shapes"]()
    assert len(dataset) == 200 and dataset.stems[0] == f"{HELD_OUT_SEED_START:010d}"
    sample = read_dataset("shapes", n=1, image_size=48, n_objects=2)[0]
    assert sample.image.size == (48, 48) and sample.boxes.shape == (2, 4)


# --------------------------------------------------------------------------
# read_dataset
# --------------------------------------------------------------------------


def test_read_dataset_errors(tmp_path):
    assert set(DATASETS) == {"folder", "voc", "coco", "imagenet-seg", "cub", "imagenet", "shapes"}
    assert all(issubclass(reader, EvalDataset) and reader.kind == kind for kind, reader in DATASETS.items())
    with pytest.raises(ValueError, match="unknown dataset kind 'pascal'.*folder, voc, coco, imagenet-seg, cub"):
        read_dataset("pascal", tmp_path)
    with pytest.raises(ValueError, match="pass its folder as root"):
        read_dataset("voc")
