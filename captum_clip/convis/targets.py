"""How ConVis turns classes into concepts (noun synsets of the vocabulary): the synset hook of the one target parser.

The targets themselves are parsed by :mod:`captum_clip.base.targets`. A class becomes a synset through, in order:

1. the caller's ``class_synsets`` (a ``{class name: synset}`` mapping or a callable);
2. the class name itself when it is a synset name;
3. the class name's WordNet noun senses, *only when there is exactly one*. A name with several senses ("crane":
   bird or machine) is reported with its candidates rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Union

from nltk.corpus.reader.wordnet import Synset

from .vocabulary import _SYNSET_NAME, ConceptVocabulary

__all__ = ["ClassSynsets", "ClassSynsetResolver", "is_synset_name"]

#: How class names map to synsets: a dict, or a function of the class name returning a synset name.
ClassSynsets = Union[Mapping[str, str], Callable[[str], str], None]


def is_synset_name(value: str) -> bool:
    """True for a string shaped like a synset name (``dog.n.01``)."""
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
        if is_synset_name(classname):
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
