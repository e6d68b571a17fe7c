"""Readers of local evaluation datasets (nothing is downloaded), all yielding :class:`Sample` objects.

Typical use::

    from captum_clip.evaluation.datasets import PreparedDataset, collate, read_dataset

    dataset = read_dataset("voc", "/data/VOCdevkit", split="val")
    loader = DataLoader(PreparedDataset(dataset, bundle), batch_size=16, collate_fn=collate)

pycocotools and h5py are imported by the readers that need them, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

from .base import EvalDataset, PreparedDataset, Sample, collate
from .coco import COCODataset
from .cub import CUBDataset
from .folder import FolderDataset
from .imagenet import ImageNetDataset
from .imagenet_seg import ImageNetSegDataset
from .shapes import ShapesDataset
from .voc import VOCDataset

DATASETS: Dict[str, Type[EvalDataset]] = {
    "folder": FolderDataset,
    "voc": VOCDataset,
    "coco": COCODataset,
    "imagenet-seg": ImageNetSegDataset,
    "cub": CUBDataset,
    "imagenet": ImageNetDataset,
    "shapes": ShapesDataset,
}


def read_dataset(kind: str, root=None, split: Optional[str] = None, **options) -> EvalDataset:
    """The reader of ``kind`` on the local copy at ``root``.

    Args:
        kind: a key of :data:`DATASETS`.
        root: the dataset's folder (see each reader's ``LAYOUT``); not needed for ``"shapes"``.
        split: the reader's split (its default when None).
        options: reader options, e.g. ``year="2007"`` for VOC or ``n=50`` for shapes.

    Raises:
        ValueError: an unknown ``kind``, or no ``root`` for a kind that reads files.
        DatasetLayoutError: a file or folder of the expected layout is missing.
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {', '.join(DATASETS)}.")
    reader = DATASETS[kind]
    if root is None and getattr(reader, "needs_root", True):
        raise ValueError(f"the {kind!r} dataset reads a local copy: pass its folder as root (nothing is downloaded).")
    if split is not None:
        options["split"] = split
    return reader(root, **options)


__all__ = ["read_dataset", "DATASETS", "Sample", "EvalDataset", "PreparedDataset", "collate"]
