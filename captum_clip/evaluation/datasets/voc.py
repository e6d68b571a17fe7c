"""PASCAL VOC 2007/2012: ``SegmentationClass`` masks and ``Annotations`` boxes of a local VOCdevkit."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Tuple

import numpy as np

from .base import EvalDataset, Sample, require
from .folder import check_mask, open_rgb, read_mask

LAYOUT = """\
VOCdevkit/                         (ROOT may be this folder or VOC<year>/ itself)
  VOC<year>/
    ImageSets/Segmentation/<split>.txt   one stem a line (masks and boxes)
    ImageSets/Main/<split>.txt           used when the Segmentation list is missing (boxes only)
    JPEGImages/<stem>.jpg
    SegmentationClass/<stem>.png         palette PNG: 0 background, 1..20 classes, 255 object borders
    Annotations/<stem>.xml"""

#: The 20 classes in VOC's order: mask value and box class ``k`` is ``VOC_CLASSES[k - 1]``.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# Prompts read better with VOC's run-together names split into words.
_READABLE = {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}
VOC_CLASSNAMES = tuple(_READABLE.get(name, name) for name in VOC_CLASSES)
_INDEX = {name: k + 1 for k, name in enumerate(VOC_CLASSES)}


def read_voc_xml(path: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The objects of a VOC annotation -> boxes ``(B, 4)`` float32 (0-based, x1/y1 exclusive), labels ``(B,)``
    int64, difficult ``(B,)`` bool."""
    objects = ElementTree.parse(path).getroot().findall("object")
    boxes, labels, difficult = [], [], []
    for obj in objects:
        name = obj.findtext("name", "").strip()
        if name not in _INDEX:
            raise ValueError(f"{path}: object name {name!r} is not a VOC class ({', '.join(VOC_CLASSES)}).")
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"{path}: object {name!r} has no complete bndbox (xmin, ymin, xmax, ymax).") from None
        # VOC counts pixels from 1 and includes xmax: pixel columns xmin..xmax are 0-based xmin-1 .. xmax-1.
        boxes.append((xmin - 1, ymin - 1, xmax, ymax))
        labels.append(_INDEX[name])
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
            np.asarray(difficult, bool))


def _year_folder(root: Path, year: str, layout: str) -> Path:
    # torchvision's VOC readers take the folder above VOCdevkit, so that one is accepted too.
    for folder in (root, root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"):
        if (folder / "ImageSets").is_dir():
            return folder
    return require(root / f"VOC{year}" / "ImageSets", layout).parent


class VOCDataset(EvalDataset):
    """A VOC split (layout in :data:`LAYOUT`).

    Args:
        root: the ``VOCdevkit`` folder or the ``VOC<year>`` folder.
        split: a list under ``ImageSets`` (``"val"``, ``"train"``, ``"trainval"``, ``"test"``).
        year: ``"2012"`` or ``"2007"``, to find ``VOC<year>`` below ``VOCdevkit``.
    """

    kind = "voc"

    def __init__(self, root, split: str = "val", year: str = "2012") -> None:
        year = str(year)
        self.layout = LAYOUT.replace("<year>", year)
        folder = _year_folder(Path(root), year, self.layout)
        segmentation = folder / "ImageSets" / "Segmentation" / f"{split}.txt"
        main = folder / "ImageSets" / "Main" / f"{split}.txt"
        # VOC2007's detection splits (and the test split) have only a Main list: boxes without masks.
        self.has_masks = segmentation.is_file() or not main.is_file()
        listing = require(segmentation if self.has_masks else main, self.layout)
        self.has_boxes = (folder / "Annotations").is_dir() or not self.has_masks
        stems = sorted({line.split()[0] for line in listing.read_text().splitlines() if line.strip()})
        EvalDataset.__init__(self, folder, split, VOC_CLASSNAMES, stems)

    def load(self, index: int) -> Sample:
        stem = self.stems[index]
        image = open_rgb(require(self.root / "JPEGImages" / f"{stem}.jpg", self.layout))
        mask = boxes = labels = difficult = None
        if self.has_masks:
            path = require(self.root / "SegmentationClass" / f"{stem}.png", self.layout)
            mask = check_mask(read_mask(path), len(VOC_CLASSES), path, (image.height, image.width))
        if self.has_boxes:
            boxes, labels, difficult = read_voc_xml(require(self.root / "Annotations" / f"{stem}.xml", self.layout))
        return Sample(stem, image, mask=mask, boxes=boxes, box_labels=labels, difficult=difficult)
