"""ImageNet (or any ImageFolder tree of WordNet ids): one folder per class, the class is the image's label."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from ...errors import DatasetLayoutError, WordNetNotFoundError
from .base import EvalDataset, Sample, require
from .folder import open_rgb, read_classnames

LAYOUT = """\
ROOT/
  <split>/<wnid>/<image>   e.g. val/n01440764/ILSVRC2012_val_00000293.JPEG (class k = k-th wnid, sorted)
  classnames.txt           optional: one class name per line, in the sorted order of the wnid folders"""

_WNID = re.compile(r"n\d{8}")


def wordnet_names(wnids: Sequence[str]) -> List[str]:
    """The first lemma of each noun synset ``wnid`` ("n01440764" -> "tench")."""
    from ... import wordnet

    if not all(_WNID.fullmatch(w) for w in wnids):
        odd = [w for w in wnids if not _WNID.fullmatch(w)]
        raise ValueError(f"class folders {odd[:5]} are not WordNet ids (n + 8 digits), so their names cannot be "
                         "looked up; add ROOT/classnames.txt with one name per line, in sorted folder order.")
    try:
        wn = wordnet.load_wordnet()
    except WordNetNotFoundError as error:
        raise ValueError("ImageNet class names come from ROOT/classnames.txt or, without it, from WordNet, which "
                         "is not installed here. Add classnames.txt (one name per line, in sorted wnid order) or "
                         "install WordNet (apt-get install wordnet-base).") from error
    return [wn.synset_from_pos_and_offset("n", int(w[1:])).lemmas()[0].name().replace("_", " ") for w in wnids]


class ImageNetDataset(EvalDataset):
    """An ImageFolder split of wnid folders (layout in :data:`LAYOUT`); stems are ``"<wnid>/<file stem>"``.

    Args:
        root: the folder holding ``<split>/``.
        split: ``"val"`` (50 images in each of 1,000 classes) or any other folder of wnid folders.
    """

    kind = "imagenet"
    has_labels = True

    def __init__(self, root, split: str = "val") -> None:
        root = Path(root)
        folder = require(root / split, LAYOUT)
        try:
            self.wnids, class_to_idx = find_classes(folder)
            self.samples = make_dataset(folder, class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as error:
            raise DatasetLayoutError(f"{error} Expected layout:\n{LAYOUT}") from None
        names_file = root / "classnames.txt"
        if names_file.is_file():
            classnames = read_classnames(names_file)
            if len(classnames) != len(self.wnids):
                raise ValueError(f"{names_file} names {len(classnames)} classes but {folder} has {len(self.wnids)} "
                                 "class folders; write one name per folder, in sorted folder order.")
        else:
            classnames = wordnet_names(self.wnids)
        stems = [f"{self.wnids[k]}/{Path(path).stem}" for path, k in self.samples]
        EvalDataset.__init__(self, root, split, classnames, stems)

    def load(self, index: int) -> Sample:
        """Sample with ``label`` = the 1-based class of its folder."""
        path, k = self.samples[index]
        return Sample(self.stems[index], open_rgb(Path(path)), label=k + 1)
