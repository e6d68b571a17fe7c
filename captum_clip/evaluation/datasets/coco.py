"""COCO instances (2014/2017) as semantic masks and boxes, through pycocotools."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from .base import IGNORE, EvalDataset, Sample, require
from .folder import open_rgb

LAYOUT = """\
ROOT/
  annotations/instances_<split>.json   e.g. instances_val2017.json
  <split>/<file_name>                  e.g. val2017/000000397133.jpg"""


class COCODataset(EvalDataset):
    """The images of a COCO split that have at least one annotation (layout in :data:`LAYOUT`).

    Categories sorted by id are classes 1..K (80 for COCO 2017). Masks paint the non-crowd instances by
    decreasing area, so that a small object on top of a large one keeps its pixels; crowd regions are 255.

    Args:
        root: the folder holding ``annotations/``.
        split: ``"val2017"``, ``"train2017"``, ``"val2014"``, ...
    """

    kind = "coco"
    has_masks = True
    has_boxes = True

    def __init__(self, root, split: str = "val2017") -> None:
        from pycocotools.coco import COCO

        root = Path(root)
        path = require(root / "annotations" / f"instances_{split}.json", LAYOUT)
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(path))
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.class_of = {c["id"]: k + 1 for k, c in enumerate(categories)}
        self.image_ids = sorted(i for i in self.coco.getImgIds() if self.coco.imgToAnns.get(i))
        EvalDataset.__init__(self, root, split, [c["name"] for c in categories],
                             [f"{i:012d}" for i in self.image_ids])

    def load(self, index: int) -> Sample:
        """Sample with mask ``(H, W)`` uint8, boxes ``(B, 4)`` of the B non-crowd instances."""
        info = self.coco.imgs[self.image_ids[index]]
        image = open_rgb(require(self.root / self.split / info["file_name"], LAYOUT))
        if (image.height, image.width) != (info["height"], info["width"]):
            raise ValueError(f"{self.root / self.split / info['file_name']} is {image.width}x{image.height} but its "
                             f"annotation says {info['width']}x{info['height']}; is it the image of this split?")
        annotations = self.coco.imgToAnns[info["id"]]
        crowd = [a for a in annotations if a.get("iscrowd", 0)]
        objects = sorted((a for a in annotations if not a.get("iscrowd", 0)), key=lambda a: -a["area"])
        mask = np.zeros((info["height"], info["width"]), dtype=np.uint8)
        with warnings.catch_warnings():
            # pycocotools' decoder predates NumPy 2's copy keyword; the warning is about its code, not the data.
            warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy keyword",
                                    DeprecationWarning)
            for annotation in objects:
                mask[self.coco.annToMask(annotation) > 0] = self.class_of[annotation["category_id"]]
            for annotation in crowd:
                mask[self.coco.annToMask(annotation) > 0] = IGNORE
        boxes = np.asarray([a["bbox"] for a in objects], np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        labels = np.asarray([self.class_of[a["category_id"]] for a in objects], np.int64)
        return Sample(self.stems[index], image, mask=mask, boxes=boxes, box_labels=labels,
                      difficult=np.zeros(len(objects), dtype=bool))
