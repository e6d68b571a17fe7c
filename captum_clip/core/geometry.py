"""The geometric part of a bundle's preprocessing, for the masks and boxes that go with its images.

open_clip's eval transform resizes the image (the short side to S, or both sides to (H, W) in "squash" mode) and
centre-crops it. Ground truth must get exactly that transform, nearest-neighbour for masks, so that a map and its
mask talk about the same pixels. :func:`preprocess_geometry` reads the two steps off the transform and
:func:`target_transform` replays them on ``tv_tensors.Mask`` and ``tv_tensors.BoundingBoxes`` with torchvision's
transforms v2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

from torchvision.transforms import v2


@dataclass(frozen=True)
class PreprocessGeometry:
    """Resize then centre crop, as the preprocessing applies them.

    Attributes:
        resize: an int (the short side becomes this) or ``(h, w)`` (both sides, aspect not kept).
        crop: ``(h, w)`` of the centre crop, or None for no crop.
    """

    resize: Union[int, Tuple[int, int]]
    crop: Optional[Tuple[int, int]]


def preprocess_geometry(preprocess: Callable) -> PreprocessGeometry:
    """The resize and centre crop of an open_clip (or torchvision) eval transform.

    Raises:
        ValueError: a transform without a ``Resize`` step (its geometry cannot be replayed on masks); pass
            images already at the model's input size, or a torchvision ``Compose`` with ``Resize``/``CenterCrop``.
    """
    resize, crop = None, None
    for step in getattr(preprocess, "transforms", []):
        name = type(step).__name__
        if name == "Resize" and resize is None:
            size = step.size
            resize = int(size[0]) if isinstance(size, (list, tuple)) and len(size) == 1 else (
                tuple(int(s) for s in size) if isinstance(size, (list, tuple)) else int(size))
        elif name == "CenterCrop" and crop is None:
            size = step.size
            crop = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[-1]))
        elif name in ("ResizeKeepRatio", "RandomResizedCrop", "ResizeMaxSize"):
            raise ValueError(f"the preprocessing's {name} step cannot be replayed on masks and boxes; evaluate with "
                             "an open_clip model whose eval transform is Resize + CenterCrop (resize_mode "
                             "'shortest' or 'squash').")
    if resize is None:
        raise ValueError("the bundle's preprocessing has no Resize step, so its geometry cannot be replayed on masks "
                         "and boxes; use the preprocess that load_clip returns.")
    return PreprocessGeometry(resize, crop)


def target_transform(geometry: PreprocessGeometry) -> v2.Transform:
    """The v2 transform that moves masks (nearest) and boxes exactly as the images are moved."""
    steps = [v2.Resize(geometry.resize, interpolation=v2.InterpolationMode.NEAREST, antialias=False)]
    if geometry.crop is not None:
        steps.append(v2.CenterCrop(geometry.crop))
    return v2.Compose(steps)
