"""CUB-200-2011: 200 bird species, one box per image (the WSOL localisation benchmark)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np

from .base import EvalDataset, Sample, require
from .folder import open_rgb

LAYOUT = """\
CUB_200_2011/
  images.txt              <id> <path below images/>
  image_class_labels.txt  <id> <class id>
  classes.txt             <class id> <NNN.Name_With_Underscores>
  bounding_boxes.txt      <id> <x> <y> <width> <height>   (0-based pixels)
  train_test_split.txt    <id> <1 for train, 0 for test>
  images/<NNN.Name>/<file>.jpg"""

SPLITS = ("test", "train", "all")


def _table(path: Path) -> Dict[int, str]:
    """``<id> <rest>`` lines -> ``{id: rest}``."""
    rows = {}
    for number, line in enumerate(require(path, LAYOUT).read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) < 2 or not parts[0].isdigit():
            raise ValueError(f"{path}, line {number}: expected '<id> <value>', got {line!r}.")
        rows[int(parts[0])] = parts[1].strip()
    return rows


def readable_name(name: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"``."""
    return name.split(".", 1)[-1].replace("_", " ")


class CUBDataset(EvalDataset):
    """A CUB-200-2011 split (layout in :data:`LAYOUT`); class ``k`` is CUB's class id ``k``.

    Args:
        root: the ``CUB_200_2011`` folder.
        split: ``"test"`` (5,794 images), ``"train"`` (5,994) or ``"all"``.
    """

    kind = "cub"
    has_boxes = True
    has_labels = True

    def __init__(self, root, split: str = "test") -> None:
        if split not in SPLITS:
            raise ValueError(f"CUB split {split!r} is unknown; use one of {SPLITS}.")
        root = Path(root)
        classes = _table(root / "classes.txt")
        self.paths = _table(root / "images.txt")
        self.labels = {i: int(value) for i, value in _table(root / "image_class_labels.txt").items()}
        self.boxes = {i: [float(v) for v in value.split()] for i, value in _table(root / "bounding_boxes.txt").items()}
        is_train = {i: value == "1" for i, value in _table(root / "train_test_split.txt").items()}
        ids = sorted(i for i in self.paths if split == "all" or is_train.get(i) == (split == "train"))
        for name, table in (("image_class_labels.txt", self.labels), ("bounding_boxes.txt", self.boxes),
                            ("train_test_split.txt", is_train)):
            missing = [i for i in self.paths if i not in table]
            if missing:
                raise ValueError(f"{root / name} has no line for image id(s) {missing[:5]} of images.txt; the files "
                                 "of a CUB copy must list the same ids.")
        if sorted(classes) != list(range(1, len(classes) + 1)):
            raise ValueError(f"{root / 'classes.txt'}: class ids must be 1..{len(classes)} in order.")
        self.ids = ids
        EvalDataset.__init__(self, root, split, [readable_name(classes[k]) for k in sorted(classes)],
                             [f"{i:05d}" for i in ids])

    def load(self, index: int) -> Sample:
        """Sample with ``label``, one box ``(1, 4)`` xyxy and ``box_labels`` ``[label]``."""
        i = self.ids[index]
        image = open_rgb(require(self.root / "images" / self.paths[i], LAYOUT))
        x, y, width, height = self.boxes[i]
        label = self.labels[i]
        return Sample(self.stems[index], image, boxes=np.asarray([[x, y, x + width, y + height]], np.float32),
                      box_labels=np.asarray([label], np.int64), difficult=np.zeros(1, dtype=bool), label=label)
