"""The one target parser: every Captum target format, plus text, into one resolved-targets object.

A target is, per image or one for all: a class index, a class name, free text, or None (the predicted class);
an integer tensor of indices or a list of indices and strings also works. Text that names one of the
classifier's classes becomes that class. A method that explains something other than the classifier's logits (ConVis's
WordNet concepts) maps the resolved targets onward through its own hook; it never parses targets itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

TargetLike = Union[None, int, str, Tensor, List[int], List[str], Tuple[int, ...]]


@dataclass(frozen=True)
class ResolvedTargets:
    """What each of N images is explained for.

    Exactly one of ``indices`` and ``texts`` is set, or neither for the predicted class (``target=None``).

    Attributes:
        n_images: N.
        indices: ``(N,)`` class indices, when every target names a class.
        texts: N strings, when any target is not one of the classes (class names among them stay names;
            :meth:`class_rows` finds them).
        classnames: the classifier's classes (empty without a classifier).
    """

    n_images: int
    indices: Optional[Tensor] = None
    texts: Optional[List[str]] = None
    classnames: Tuple[str, ...] = ()

    @property
    def predicted(self) -> bool:
        """True for ``target=None``: the predicted class of each image."""
        return self.indices is None and self.texts is None

    def class_rows(self) -> List[Optional[int]]:
        """Per image, its class index, or None where the target is free text."""
        if self.texts is None:
            return [int(i) for i in self.indices] if self.indices is not None else [None] * self.n_images
        return [self.classnames.index(t) if t in self.classnames else None for t in self.texts]


def _per_image(values: list, n_images: int) -> list:
    if len(values) == 1:
        return values * n_images
    if len(values) != n_images:
        raise ValueError(
            f"target has {len(values)} entries but inputs has {n_images} images; give one target per image, "
            "or a single target for all of them."
        )
    return values


def _as_list(target) -> list:
    if isinstance(target, tuple) and len(target) == 1:
        target = target[0]
    if isinstance(target, Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(f"a target tensor must hold integer class indices; got dtype {target.dtype}.")
        if target.dim() > 1:
            raise ValueError(f"a target tensor must be 0-d or 1-d (one index per image); got {tuple(target.shape)}.")
        target = target.reshape(-1).tolist()
    if isinstance(target, tuple):
        target = list(target)
    if isinstance(target, (int, str)) and not isinstance(target, bool):
        target = [target]
    if not isinstance(target, list) or not target:
        raise ValueError(
            f"target must be None, an int, a str, a 1-d integer tensor, or a non-empty list of ints or strs; "
            f"got {target!r}."
        )
    return target


def parse_targets(target: TargetLike, n_images: int, classnames: Optional[Sequence[str]],
                  coerce: Optional[Callable[[object], object]] = None, method: str = "this method") -> ResolvedTargets:
    """Normalise every supported target format into :class:`ResolvedTargets`.

    Args:
        target: see the module docstring.
        n_images: N.
        classnames: the classifier's classes, or None for a method built without a classifier (then only texts
            are targets).
        coerce: turns other objects into ints or strs first (ConVis: an nltk ``Synset`` into its name).
        method: the method's name, for messages.

    Raises:
        ValueError: out-of-range indices, wrong lengths, non-integer tensors, empty lists or strings, entries
            that are neither ints nor strs, or an index without a classifier.
    """
    if target is None:
        return ResolvedTargets(n_images, classnames=tuple(classnames or ()))
    values = _as_list(target)
    if coerce is not None:
        values = [coerce(v) for v in values]
    values = _per_image(values, n_images)
    names = tuple(classnames or ())
    is_index = [isinstance(v, int) and not isinstance(v, bool) for v in values]
    if not all(i or isinstance(v, str) for i, v in zip(is_index, values)):
        bad = next(v for i, v in zip(is_index, values) if not (i or isinstance(v, str)))
        raise ValueError(f"target entries must be class indices (int) or texts (str); got {bad!r} in {values!r}.")
    indices = [v for v, i in zip(values, is_index) if i]
    if indices and classnames is None:
        raise ValueError(
            f"target {indices[0]} is a class index, but {method} was built without a classifier; pass texts, "
            "or build it from a ZeroShotClassifier."
        )
    bad = [v for v in indices if not 0 <= v < len(names)]
    if bad:
        raise ValueError(
            f"target {bad[0]} is out of range for a classifier with {len(names)} classes "
            f"(valid indices: 0..{len(names) - 1})."
        )
    if not all(v.strip() for v, i in zip(values, is_index) if not i):
        raise ValueError("text targets must be non-empty strings.")
    # A class index among texts stands for its class name.
    texts = [names[v] if i else v for v, i in zip(values, is_index)]
    if all(text in names for text in texts):
        return ResolvedTargets(n_images, indices=torch.tensor([names.index(t) for t in texts]), classnames=names)
    return ResolvedTargets(n_images, texts=texts, classnames=names)


def target_list(targets, classnames: Optional[Sequence[str]]) -> list:
    """The K targets of ``attribute_all``: None means every class, in the classifier's order.

    Raises:
        ValueError: None without a classifier, or an empty list.
    """
    if targets is None:
        if classnames is None:
            raise ValueError("attribute_all(targets=None) explains every class of the classifier, and this method "
                             "was built without one; pass the targets to explain.")
        return list(range(len(classnames)))
    return _as_list(targets)
