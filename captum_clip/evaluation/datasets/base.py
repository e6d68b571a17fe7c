"""What every dataset reader returns, and how its ground truth follows the model's preprocessing.

A reader reads a user's local copy (nothing is downloaded) and yields :class:`Sample` objects in the original
image frame. :class:`PreparedDataset` turns them into model inputs: the image through the bundle's own
``preprocess``, masks and boxes through exactly the same resize and centre crop
(:func:`captum_clip.core.geometry.target_transform`, nearest for masks), so maps and ground truth share pixels.

Class indices are 1-based everywhere: class ``k`` is ``classnames[k - 1]``; in masks 0 is background and 255 is
ignored (VOC's ``SegmentationClass`` convention). The zero-shot classifier's logit index of class ``k`` is
``k - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ...core.geometry import target_transform
from ...errors import DatasetLayoutError

#: Mask value of pixels that no protocol scores.
IGNORE = 255
#: Mask value of background pixels.
BACKGROUND = 0


@dataclass
class Sample:
    """One image of a dataset, in its original frame.

    Attributes:
        stem: a name unique in the dataset (file stem, or COCO/ImageNet-Seg id); rows are sorted by it.
        image: the RGB image.
        mask: ``(H, W)`` uint8 class indices (0 background, 255 ignore), or None.
        boxes: ``(B, 4)`` float32 ``x0, y0, x1, y1`` in pixels (x1, y1 exclusive), or None.
        box_labels: ``(B,)`` int64 class indices of the boxes.
        difficult: ``(B,)`` bool, VOC's ``difficult`` flag (all False elsewhere).
        label: the image's class index for classification datasets (ImageNet, CUB), else None.
    """

    stem: str
    image: Image.Image
    mask: Optional[np.ndarray] = None
    boxes: Optional[np.ndarray] = None
    box_labels: Optional[np.ndarray] = None
    difficult: Optional[np.ndarray] = None
    label: Optional[int] = None

    def present_classes(self) -> List[int]:
        """The classes present in the image (from the mask, else the boxes, else the label), sorted."""
        if self.mask is not None:
            values = np.unique(self.mask)
            return [int(v) for v in values if v not in (BACKGROUND, IGNORE)]
        if self.boxes is not None and len(self.boxes):
            return sorted({int(c) for c in self.box_labels})
        return [self.label] if self.label is not None else []


class EvalDataset(Dataset):
    """Base of the readers: a list of samples and the class names.

    Subclasses set ``kind``, ``classnames``, ``root``, ``split`` and ``stems``, and implement :meth:`load`.
    """

    kind: str = ""
    #: What the dataset provides, for protocols to check before they run.
    has_masks: bool = False
    has_boxes: bool = False
    has_labels: bool = False

    def __init__(self, root, split: Optional[str], classnames: Sequence[str], stems: Sequence[str]) -> None:
        self.root = Path(root)
        self.split = split
        self.classnames = list(classnames)
        self.stems = list(stems)
        if not self.stems:
            raise DatasetLayoutError(f"{self.kind} dataset at {self.root} (split {split!r}) has no images.")

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> Sample:
        return self.load(index)

    def load(self, index: int) -> Sample:
        raise NotImplementedError


def require(path: Path, layout: str) -> Path:
    """``path`` if it exists, else a :class:`DatasetLayoutError` that shows the expected layout."""
    if not path.exists():
        raise DatasetLayoutError(f"{path} not found. Expected layout:\n{layout}")
    return path


class PreparedDataset(Dataset):
    """Samples as model inputs: ``bundle.preprocess`` on the image, the same geometry on masks and boxes.

    Items are dicts: ``index``, ``stem``, ``image`` ``(3, S, S)``, ``mask`` ``(S, S)`` int64 or None, ``boxes``
    ``(B, 4)`` float32 or None, ``box_labels`` ``(B,)``, ``difficult`` ``(B,)``, ``label`` (int or None),
    ``classes`` (the present classes), ``original_size`` ``(H, W)``.
    """

    def __init__(self, dataset: EvalDataset, bundle) -> None:
        self.dataset = dataset
        self.preprocess = bundle.preprocess
        self.targets = target_transform(bundle.geometry)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        try:
            sample = self.dataset[index]
            image = sample.image.convert("RGB")
        except DatasetLayoutError:
            raise
        except (OSError, SyntaxError) as error:  # PIL: not an image, truncated, or a broken header
            raise DatasetLayoutError(
                f"image {self.dataset.stems[index]!r} of the {self.dataset.kind} dataset at {self.dataset.root} "
                f"cannot be read ({type(error).__name__}: {error}). Replace the file with a readable copy, or "
                "remove it from the dataset.") from error
        height, width = image.height, image.width
        mask = boxes = None
        if sample.mask is not None:
            mask = tv_tensors.Mask(torch.from_numpy(np.asarray(sample.mask, dtype=np.int64))[None])
        if sample.boxes is not None:
            boxes = tv_tensors.BoundingBoxes(torch.as_tensor(np.asarray(sample.boxes, np.float32)).reshape(-1, 4),
                                             format="XYXY", canvas_size=(height, width))
        if mask is not None or boxes is not None:
            mask, boxes = self.targets(mask, boxes)
        n_boxes = 0 if sample.boxes is None else len(sample.boxes)
        return {
            "index": index,
            "stem": sample.stem,
            "image": self.preprocess(image),
            "mask": None if mask is None else mask.as_subclass(torch.Tensor)[0],
            "boxes": None if boxes is None else boxes.as_subclass(torch.Tensor),
            "box_labels": torch.as_tensor(sample.box_labels if sample.box_labels is not None else [], dtype=torch.long),
            "difficult": torch.as_tensor(sample.difficult if sample.difficult is not None else [False] * n_boxes,
                                         dtype=torch.bool),
            "label": sample.label,
            "classes": sample.present_classes(),
            "original_size": (height, width),
        }


def collate(items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Stack the images; keep everything else (masks, boxes of varying counts) as lists."""
    batch = {key: [item[key] for item in items] for key in items[0]}
    batch["image"] = torch.stack(batch["image"])
    return batch
