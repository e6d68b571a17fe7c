"""Checks on what users pass to ``attribute``: images and targets, with errors that say what to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor

from ..core.classifier import ZeroShotClassifier

TargetLike = Union[None, int, str, Tensor, List[int], List[str], Tuple[int, ...]]



def unpack_inputs(inputs) -> Tuple[Tensor, bool]:
    """Accept a tensor or a 1-tuple of one (Captum's convention); return it and whether it was a tuple."""
    if isinstance(inputs, tuple):
        if len(inputs) != 1:
            raise ValueError(
                f"inputs must be one image tensor (or a 1-tuple of it); got a tuple of {len(inputs)} items."
            )
        return inputs[0], True
    return inputs, False


def check_images(images, minimum_size: Tuple[int, int] = (1, 1)) -> Tensor:
    """Validate a normalised image batch ``(N, 3, H, W)``.

    Raises:
        ValueError: not a tensor, wrong rank, not 3 channels, not floating point,
            an empty batch, non-finite values, or smaller than ``minimum_size``.
    """
    if not isinstance(images, Tensor):
        raise ValueError(
            f"inputs must be a torch.Tensor of shape (N, 3, H, W); got {type(images).__name__}. "
            "Turn PIL images into tensors with bundle.preprocess(image).unsqueeze(0)."
        )
    if images.dim() != 4:
        hint = " For a single image use image.unsqueeze(0)." if images.dim() == 3 else ""
        raise ValueError(f"inputs must have shape (N, 3, H, W); got {tuple(images.shape)}.{hint}")
    if images.shape[1] != 3:
        raise ValueError(
            f"inputs must have 3 (RGB) channels in dim 1, i.e. (N, 3, H, W); got {tuple(images.shape)}. "
            "Channels-last images need images.permute(0, 3, 1, 2); grey images need .expand(-1, 3, -1, -1)."
        )
    if not images.is_floating_point():
        raise ValueError(
            f"inputs must be a floating-point tensor normalised like the model's preprocess; got dtype "
            f"{images.dtype}. Use bundle.preprocess, or images.float() / 255 followed by the CLIP normalisation."
        )
    if images.shape[0] == 0:
        raise ValueError("inputs is an empty batch (N = 0).")
    if images.shape[-2] < minimum_size[0] or images.shape[-1] < minimum_size[1]:
        raise ValueError(
            f"inputs of {images.shape[-2]}x{images.shape[-1]} pixels are smaller than one token cell of this "
            f"model ({minimum_size[0]}x{minimum_size[1]}); resize them (e.g. with bundle.preprocess)."
        )
    if not torch.isfinite(images).all():
        raise ValueError("inputs contain NaN or infinite values.")
    return images


def refuse_additional_forward_args(value, method: str) -> None:
    """Captum methods pass ``additional_forward_args`` to the forward function; a classifier's forward takes only images.

    Raises:
        ValueError: whenever ``value`` is not None.
    """
    if value is not None:
        raise ValueError(
            f"{method} does not take additional_forward_args: the ZeroShotClassifier's forward takes only the images "
            "(its class embeddings are a buffer, so Captum's expansion of extra arguments cannot corrupt them). "
            "Explain other texts with target='some text', or build a classifier over them with "
            "classifier.with_classes([...])."
        )


def gradient_ready(images: Tensor, method: str) -> Tensor:
    """Images a gradient method can differentiate through.

    Raises:
        RuntimeError: under ``torch.inference_mode()``, where no gradient can be taken.
    """
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            f"{method} needs gradients, and torch.inference_mode() disables them; call it outside the "
            "inference_mode block (torch.no_grad() is fine: the method turns gradients back on where it needs them)."
        )
    # A tensor made under inference_mode cannot enter autograd; an ordinary copy of it can.
    return images.clone() if images.is_inference() else images


@dataclass
class Targets:
    """Per-image targets: class indices of ``classifier``, or texts (not every text is a class).

    Exactly one of ``indices`` ``(N,)`` and ``texts`` is set; both are None for "the predicted class".
    """

    indices: Optional[Tensor] = None
    texts: Optional[List[str]] = None

    @property
    def predicted(self) -> bool:
        return self.indices is None and self.texts is None


def _per_image(values: list, n_images: int) -> list:
    if len(values) == 1:
        return values * n_images
    if len(values) != n_images:
        raise ValueError(
            f"target has {len(values)} entries but inputs has {n_images} images; give one target per image, "
            "or a single target for all of them."
        )
    return values


def resolve_targets(target: TargetLike, n_images: int, classifier: ZeroShotClassifier) -> Targets:
    """Normalise every Captum target format (plus text) into :class:`Targets`.

    Text that names one of the classifier's classes becomes that class index.

    Raises:
        ValueError: out-of-range indices, wrong lengths, non-integer tensors, empty
            lists or strings, or a mix of indices and texts.
    """
    if target is None:
        return Targets()
    if isinstance(target, tuple) and len(target) == 1:
        target = target[0]
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"a target tensor must hold integer class indices; got dtype {target.dtype}.")
        if target.dim() > 1:
            raise ValueError(f"a target tensor must be 0-d or 1-d (one index per image); got {tuple(target.shape)}.")
        target = target.reshape(-1).tolist()
    if isinstance(target, (int, str)) and not isinstance(target, bool):
        target = [target]
    if not isinstance(target, list) or not target:
        raise ValueError(
            f"target must be None, an int, a str, a 1-d integer tensor, or a non-empty list of ints or strs; "
            f"got {target!r}."
        )
    values = _per_image(target, n_images)

    if all(isinstance(v, str) for v in values):
        if not all(v.strip() for v in values):
            raise ValueError("text targets must be non-empty strings.")
        indices = [classifier.class_index(v) for v in values]
        if all(i is not None for i in indices):
            return Targets(indices=torch.tensor(indices, dtype=torch.long))
        return Targets(texts=list(values))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        bad = [v for v in values if not 0 <= v < classifier.num_classes]
        if bad:
            raise ValueError(
                f"target {bad[0]} is out of range for a classifier with {classifier.num_classes} classes "
                f"(valid indices: 0..{classifier.num_classes - 1})."
            )
        return Targets(indices=torch.tensor(values, dtype=torch.long))
    raise ValueError(f"target must hold only ints or only strs; got {values!r}.")


def resolve_to_indices(target: TargetLike, images: Tensor, classifier: ZeroShotClassifier
                       ) -> Tuple[ZeroShotClassifier, Tensor]:
    """Targets as logit indices, for methods that differentiate a logit (Grad-CAM, IG).

    Free-text targets get a classifier over those texts that shares the model;
    ``None`` becomes the predicted class.

    Returns:
        ``(classifier, indices)`` with ``indices`` ``(N,)`` on the images' device.
    """
    targets = resolve_targets(target, images.shape[0], classifier)
    if targets.texts is not None:
        classes = list(dict.fromkeys(targets.texts))
        classifier = classifier.with_classes(classes)
        indices = torch.tensor([classes.index(t) for t in targets.texts])
    elif targets.predicted:
        with torch.no_grad():
            indices = classifier(images).argmax(dim=-1)
    else:
        indices = targets.indices
    return classifier, indices.to(images.device)
