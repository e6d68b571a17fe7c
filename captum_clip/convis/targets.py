"""Turn Captum-style targets into ConVis concepts (noun synsets of the vocabulary).

A target is a synset name (``"dog.n.01"``), an nltk ``Synset``, or a class of a zero-shot classifier (an index,
or its class name). A class becomes a synset through, in order:

1. the caller's ``class_synsets`` (a ``{class name: synset}`` mapping or a callable);
2. the class name itself when it is a synset name;
3. the class name's WordNet noun senses, *only when there is exactly one*. A name with several senses ("crane":
   bird or machine) is reported with its candidates rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Union

import torch
from nltk.corpus.reader.wordnet import Synset

from .vocabulary import _SYNSET_NAME, ConceptVocabulary

__all__ = ["ClassSynsets", "ClassSynsetResolver", "concept_targets"]

#: How class names map to synsets: a dict, or a function of the class name returning a synset name.
ClassSynsets = Union[Mapping[str, str], Callable[[str], str], None]


def _is_synset_name(value: str) -> bool:
    return _SYNSET_NAME.match(value.strip()) is not None


class ClassSynsetResolver:
    """Maps class names to synsets of a vocabulary (see the module docstring for the order of the rules).

    Args:
        vocabulary: T; every result is checked against it (:meth:`ConceptVocabulary.resolve`).
        class_synsets: optional mapping or callable from class name to synset name.
    """

    def __init__(self, vocabulary: ConceptVocabulary, class_synsets: ClassSynsets = None) -> None:
        if class_synsets is not None and not isinstance(class_synsets, Mapping) and not callable(class_synsets):
            raise TypeError("class_synsets must be a {class name: synset name} mapping or a callable")
        self.vocabulary = vocabulary
        self.class_synsets = class_synsets
        self._memo: dict[str, str] = {}

    def __call__(self, classname: str) -> str:
        """The synset name in T for one class name.

        Raises:
            ValueError: no sense, several senses (listed with their glosses), or a synset outside T.
        """
        if classname not in self._memo:
            self._memo[classname] = self.vocabulary.resolve(self._synset_for(classname))
        return self._memo[classname]

    def _synset_for(self, classname: str) -> str | Synset:
        if isinstance(self.class_synsets, Mapping) and classname in self.class_synsets:
            return self.class_synsets[classname]
        if callable(self.class_synsets) and not isinstance(self.class_synsets, Mapping):
            return self.class_synsets(classname)
        if _is_synset_name(classname):
            return classname.strip()
        wordnet = self.vocabulary._reader(None)
        senses = wordnet.synsets(classname.strip().replace(" ", "_"), pos="n")
        if len(senses) == 1:
            return senses[0]
        if not senses:
            raise ValueError(
                f"class {classname!r} has no WordNet noun sense; pass class_synsets={{{classname!r}: "
                "'<synset>.n.NN'} to say which concept it is"
            )
        listed = "; ".join(
            f"{s.name()}{' (in T)' if s.name() in self.vocabulary else ''}: {s.definition()}" for s in senses[:10]
        )
        raise ValueError(
            f"class {classname!r} is ambiguous: it has {len(senses)} WordNet noun senses ({listed}). Pass "
            f"class_synsets={{{classname!r}: '{senses[0].name()}'}} (with the sense you mean), or use a synset "
            "name as the target"
        )


def concept_targets(
    target,
    n_images: int,
    resolver: ClassSynsetResolver,
    classnames: Sequence[str] | None,
    predict: Callable[[], torch.Tensor] | None,
) -> list[str]:
    """One concept per image from any supported target format.

    Args:
        target: None (the classifier's prediction), a synset name / ``Synset`` / class name / class index, a
            list of those (one per image, or one for all), or an integer tensor of class indices.
        n_images: N.
        resolver: class name → synset.
        classnames: the classifier's class names (None without a classifier).
        predict: returns the ``(N,)`` predicted class indices (None without a classifier).

    Returns:
        N synset names of T.

    Raises:
        ValueError: for an empty list, a wrong length, an unknown / verb / out-of-vocabulary synset, a class index
            without a classifier or out of range, or an ambiguous class name.
    """
    if target is None:
        if predict is None:
            raise ValueError(
                "ConVis needs a concept: pass target='dog.n.01' (a WordNet noun synset), or build it from a "
                "ZeroShotClassifier to explain its predicted class"
            )
        target = predict()
    if isinstance(target, tuple) and len(target) == 1:
        target = target[0]
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.dtype == torch.bool or target.dim() > 1:
            raise ValueError(f"a target tensor must hold integer class indices (0-d or 1-d); got {target!r}")
        target = target.reshape(-1).tolist()
    if isinstance(target, (str, int, Synset)) and not isinstance(target, bool):
        target = [target]
    if not isinstance(target, (list, tuple)):
        raise ValueError(f"target must be a synset name, a class index or name, or a list of them; got {target!r}")
    values = list(target)
    if not values:
        raise ValueError("target is an empty list: give one concept (e.g. 'dog.n.01') per image, or one for all")
    if len(values) == 1:
        values = values * n_images
    if len(values) != n_images:
        raise ValueError(f"target has {len(values)} entries for {n_images} images; give one per image or one for all")
    return [_one_concept(v, resolver, classnames) for v in values]


def _one_concept(value, resolver: ClassSynsetResolver, classnames: Sequence[str] | None) -> str:
    if isinstance(value, Synset):
        return resolver.vocabulary.resolve(value)
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("an empty string is not a concept")
        if _is_synset_name(value) and (classnames is None or value not in classnames):
            return resolver.vocabulary.resolve(value)
        return resolver(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if classnames is None:
            raise ValueError(
                f"target {value} is a class index, but this ConVisAttribution has no classifier; pass synset "
                "names such as 'dog.n.01', or build it from a ZeroShotClassifier"
            )
        if not 0 <= value < len(classnames):
            raise ValueError(f"class index {value} is out of range for {len(classnames)} classes")
        return resolver(classnames[value])
    raise ValueError(f"cannot use {value!r} as a ConVis target: give a synset name, a class name or a class index")
