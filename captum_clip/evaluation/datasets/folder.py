"""A plain folder of images with optional class-index masks and boxes: the format for a user's own data.

The other readers that store masks as PNGs (VOC) read them with :func:`read_mask`, so the mode rules and the
value checks are the same everywhere.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .base import BACKGROUND, IGNORE, EvalDataset, Sample, require

LAYOUT = """\
ROOT/
  classes.txt        one class name per line; line i (1-based) is class index i
  images/<stem>.png  (or .jpg / .jpeg)
  masks/<stem>.png   optional: one-channel ("L") or palette ("P") PNG of class indices,
                     0 = background, 255 = ignore, same size as the image
  boxes.csv          optional: header stem,class_index,x0,y0,x1,y1 (pixels, x1 and y1 exclusive)"""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
BOX_COLUMNS = ["stem", "class_index", "x0", "y0", "x1", "y1"]


def read_classnames(path: Path) -> List[str]:
    """The class names of ``path``, one a line; a blank line is an error (it would shift every later index)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
    if blank:
        raise ValueError(f"{path}: line {blank[0]} is blank. Every line names one class (line i is class index i); "
                         "remove the blank line or name the class.")
    if not lines:
        raise ValueError(f"{path} names no classes; write one class name per line.")
    return [line.strip() for line in lines]


def read_mask(path: Path) -> np.ndarray:
    """The class indices of a one-channel or palette PNG -> ``(H, W)`` uint8.

    A palette PNG stores the indices and draws them with its palette (VOC's ``SegmentationClass``), so the
    indices are the pixel values of both modes; an RGB PNG holds colours, not indices.
    """
    with Image.open(path) as image:
        if image.mode not in ("L", "P"):
            raise ValueError(
                f"{path} is a {image.mode!r} image; a mask must hold class indices in one channel. Save it as a "
                "one-channel ('L') or palette ('P') PNG, e.g. Image.fromarray(mask.astype(np.uint8)).save(path).")
        return np.array(image, dtype=np.uint8)


def check_mask(mask: np.ndarray, n_classes: int, path, size: Tuple[int, int]) -> np.ndarray:
    """``mask`` if it is ``size`` ``(H, W)`` and holds only 0, 1..n_classes and 255, else a ValueError naming
    ``path``."""
    if mask.shape != tuple(size):
        raise ValueError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
                         f"{size[1]}x{size[0]}; masks must have their image's size.")
    values = np.unique(mask)
    bad = values[(values > n_classes) & (values != IGNORE)]
    if bad.size:
        raise ValueError(f"{path}: mask values {bad.tolist()} are not class indices; expected {BACKGROUND} "
                         f"(background), 1..{n_classes} (the classes) or {IGNORE} (ignore).")
    return mask


def read_boxes(path: Path, stems: Sequence[str], n_classes: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """The rows of ``boxes.csv`` per stem -> ``{stem: (boxes (B, 4) float32, labels (B,) int64)}``."""
    known = set(stems)
    rows: Dict[str, List[List[float]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [column.strip() for column in next(reader, [])]
        if header != BOX_COLUMNS:
            raise ValueError(f"{path}: the header is {','.join(header)!r}; expected {','.join(BOX_COLUMNS)!r}.")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                stem, numbers = row[0].strip(), [float(v) for v in row[1:]]
            except ValueError:
                numbers = []
            if len(numbers) != 5:
                raise ValueError(f"{path}, line {line}: expected a stem and five numbers, got {row}.")
            if stem not in known:
                raise ValueError(f"{path}, line {line}: no image images/{stem}.(png|jpg|jpeg) for stem {stem!r}.")
            if numbers[0] != int(numbers[0]) or not 1 <= numbers[0] <= n_classes:
                raise ValueError(f"{path}, line {line}: class_index {row[1].strip()} is not in 1..{n_classes} "
                                 "(the lines of classes.txt).")
            rows.setdefault(stem, []).append(numbers)
    table = {}
    for stem, values in rows.items():
        array = np.asarray(values, dtype=np.float64)
        table[stem] = array[:, 1:].astype(np.float32), array[:, 0].astype(np.int64)
    return table


def open_rgb(path: Path) -> Image.Image:
    """The image at ``path`` as RGB, read now so that no file handle stays open."""
    with Image.open(path) as image:
        return image.convert("RGB")


def _image_paths(folder: Path) -> Dict[str, Path]:
    paths: Dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in paths:
            raise ValueError(f"{folder} holds two images with stem {path.stem!r} ({paths[path.stem].name} and "
                             f"{path.name}); stems must be unique.")
        paths[path.stem] = path
    return paths


class FolderDataset(EvalDataset):
    """Images under ``ROOT/images`` with optional masks and ``boxes.csv`` (layout in :data:`LAYOUT`).

    Args:
        root: the folder holding ``classes.txt``.
        split: ignored (a folder is one split).
    """

    kind = "folder"

    def __init__(self, root, split: Optional[str] = None) -> None:
        root = Path(root)
        classnames = read_classnames(require(root / "classes.txt", LAYOUT))
        self.images = _image_paths(require(root / "images", LAYOUT))
        self.has_masks = (root / "masks").is_dir()
        self.has_boxes = (root / "boxes.csv").is_file()
        stems = sorted(self.images)
        EvalDataset.__init__(self, root, None, classnames, stems)
        self.boxes = read_boxes(root / "boxes.csv", stems, len(classnames)) if self.has_boxes else {}

    def load(self, index: int) -> Sample:
        stem = self.stems[index]
        image = open_rgb(self.images[stem])
        mask = boxes = labels = None
        if self.has_masks:
            path = require(self.root / "masks" / f"{stem}.png", LAYOUT)
            mask = check_mask(read_mask(path), len(self.classnames), path, (image.height, image.width))
        if self.has_boxes:
            boxes, labels = self.boxes.get(stem, (np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
        difficult = None if boxes is None else np.zeros(len(boxes), dtype=bool)
        return Sample(stem, image, mask=mask, boxes=boxes, box_labels=labels, difficult=difficult)
