"""ImageNet-Segmentation (Guillaumin et al.): the 4,276 foreground masks of ``gtsegs_ijcv.mat``.

The file is MATLAB v7.3 (HDF5). Its layout, as the loader of Chefer et al. reads it (Transformer-Explainability,
``data/Imagenet.py``): ``value/img`` and ``value/gt`` are ``(N, 1)`` object references; an image reference points
to a ``(3, W, H)`` uint8 array (MATLAB stores column-major, so the axes come reversed), a ``gt`` reference points
to a cell of references whose first entry is the ``(W, H)`` mask, 1 = foreground.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base import EvalDataset, Sample, require
from .folder import check_mask

FILENAME = "gtsegs_ijcv.mat"
LAYOUT = f"""\
ROOT/                 (ROOT may also be the file itself)
  {FILENAME}     MATLAB v7.3 (HDF5): value/img and value/gt, one reference per image"""


class ImageNetSegDataset(EvalDataset):
    """The images of ``gtsegs_ijcv.mat`` with binary masks: 1 = the object, 0 = background.

    The set has no class labels, so there is one class, ``"object"``; protocols explain the predicted class.
    The HDF5 file is opened on the first :meth:`load` of each process, so that DataLoader workers can pickle
    the dataset.

    Args:
        root: the folder holding ``gtsegs_ijcv.mat``, or the file.
    """

    kind = "imagenet-seg"
    has_masks = True

    def __init__(self, root, split=None) -> None:
        import h5py

        root = Path(root)
        self.path = root if root.is_file() else require(root / FILENAME, LAYOUT)
        with h5py.File(self.path, "r") as handle:
            if "value/img" not in handle or "value/gt" not in handle:
                raise ValueError(f"{self.path} has no value/img and value/gt; is it ImageNet-Segmentation's "
                                 f"{FILENAME}?")
            count = handle["value/img"].shape[0]
        self._file = None
        EvalDataset.__init__(self, self.path.parent, split, ["object"],
                             [f"{i:0{max(4, len(str(count - 1)))}d}" for i in range(count)])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # an open h5py file does not pickle
        return state

    def load(self, index: int) -> Sample:
        """Sample with the image and mask ``(H, W)`` uint8 in {0, 1}."""
        import h5py

        stem = self.stems[index]
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        f = self._file
        image = np.array(f[f["value/img"][index, 0]]).transpose((2, 1, 0))
        gt = f[f["value/gt"][index, 0]]
        if h5py.check_dtype(ref=gt.dtype) is not None:  # a MATLAB cell: its first entry is the mask
            gt = f[gt[0, 0]]
        mask = np.array(gt, dtype=np.uint8).transpose((1, 0))
        check_mask(mask, 1, f"{self.path} (image {index})", image.shape[:2])
        return Sample(stem, Image.fromarray(np.ascontiguousarray(image)).convert("RGB"), mask=mask)
