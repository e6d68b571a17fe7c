"""The generated shape scenes as an evaluation set: pixel-exact masks and boxes, no files."""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from ...shipped.scenes import DEFAULT_IMAGE_SIZE, generate_scene, single_object_classnames
from ...shipped.zero_shot import HELD_OUT_SEED_START
from .base import EvalDataset, Sample


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Bounding boxes of boolean masks ``(n, H, W)`` -> ``(n, 4)`` float32 xyxy, x1 and y1 exclusive."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    height, width = masks.shape[1:]
    return np.stack([cols.argmax(1), rows.argmax(1), width - cols[:, ::-1].argmax(1),
                     height - rows[:, ::-1].argmax(1)], axis=1).astype(np.float32)


class ShapesDataset(EvalDataset):
    """``n`` scenes of :func:`captum_clip.shipped.scenes.generate_scene`, seeds ``seed .. seed + n - 1``.

    Classes are the 36 "colour shape" names of :func:`single_object_classnames`. The default seeds are the
    held-out ones, which the shipped model never saw in training.

    Args:
        root, split: unused (scenes are generated).
        n: number of scenes.
        seed: the first seed.
        image_size: side of the square images.
        n_objects: objects per scene, or None for 1-3 as the seed draws.
        first_object_only: keep only each scene's first object in the mask and boxes (the others are
            background), the query of ``captum-clip benchmark``.
    """

    kind = "shapes"
    has_masks = True
    has_boxes = True
    needs_root = False

    def __init__(self, root=None, split: Optional[str] = None, n: int = 200, seed: int = HELD_OUT_SEED_START,
                 image_size: int = DEFAULT_IMAGE_SIZE, n_objects: Optional[int] = None,
                 first_object_only: bool = False) -> None:
        self.seed, self.image_size, self.n_objects = int(seed), int(image_size), n_objects
        self.first_object_only = bool(first_object_only)
        EvalDataset.__init__(self, ".", None, single_object_classnames(),
                             [f"{self.seed + i:010d}" for i in range(int(n))])
        self.root = None
        self.index_of = {name: k + 1 for k, name in enumerate(self.classnames)}

    def load(self, index: int) -> Sample:
        """Sample with mask ``(S, S)`` uint8 and one box per object ``(n, 4)``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} scenes")
        scene = generate_scene(self.seed + index, image_size=self.image_size, n_objects=self.n_objects)
        labels = np.asarray([self.index_of[name] for name in scene.objects], np.int64)
        masks = scene.masks
        if self.first_object_only:
            labels, masks = labels[:1], masks[:1]
        # Objects are disjoint, so the maximum over objects is each pixel's class (0 outside all of them).
        mask = (masks * labels[:, None, None].astype(np.uint8)).max(axis=0).astype(np.uint8)
        return Sample(self.stems[index], Image.fromarray(scene.image), mask=mask, boxes=mask_boxes(masks),
                      box_labels=labels, difficult=np.zeros(len(labels), dtype=bool))
