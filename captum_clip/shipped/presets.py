"""The shipped ``shapes`` model and its scenes, as the methods see them: synsets, descriptors and presets.

This is the one module that knows the shipped model (``load_clip("shapes")``) and its scene vocabulary:

* ConVis: which WordNet synset each scene shape and colour is (:func:`scene_vocabulary`,
  :func:`scene_class_synset`);
* Mutual Knowledge: a descriptor bank in the words that model knows (:func:`scene_descriptor_bank`);
* :data:`PRESETS`: the method options :mod:`captum_clip.defaults` applies to that model or to scene label sets.


Each scene shape word is mapped to the WordNet 3.0 noun sense that names the drawn figure (checked in the tests
against the sense's gloss):

=========  ====================  =========================================================================
shape      synset                WordNet 3.0 gloss
=========  ====================  =========================================================================
circle     ``circle.n.01``       ellipse in which the two axes are of equal length; a plane curve …
square     ``square.n.01``       (geometry) a plane rectangle with four equal sides and four right angles …
triangle   ``triangle.n.01``     a three-sided polygon
star       ``star.n.05``         a plane figure with 5 or more points; often used as an emblem
cross      ``cross.n.03``        a representation of the structure on which Jesus was crucified; used as an
                                 emblem … (its hyponym ``greek_cross.n.01``, "a cross with each of the four
                                 arms the same length", is the drawn plus shape and lies in Sub(cross.n.03))
ring       ``ring.n.02``         a toroidal shape (lemmas ring, halo, annulus, doughnut, anchor ring)
=========  ====================  =========================================================================

WordNet has no plane-figure sense of "cross": ``cross.n.01`` is a wooden structure and ``crisscross.n.01`` a
marking of crossing lines, so the emblem sense is the closest, and its equal-armed hyponym is exactly the shape.

The built-in vocabulary covers physical entities only, and geometric figures and colours are abstractions
(``shape.n.02``, ``color.n.01``), so :func:`scene_vocabulary` adds these synsets and their hypernyms to it.

The shipped model was trained on captions that name shapes and colours and never saw a WordNet gloss, so ConVis runs
on it with the synsets' **lemma names** as texts (:data:`SCENE_TEXT_SOURCE`), not the paper's definitions.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Dict, Tuple

from ..mutual.descriptor_bank import DescriptorBank, load_descriptor_bank
from .scenes import COLORS, SHAPES, object_phrase, parse_query

if TYPE_CHECKING:  # nltk costs seconds to import; only ConVis's presets need it, and they import it when used
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    from ..convis.vocabulary import ConceptVocabulary

__all__ = [
    "SHIPPED_MODEL",
    "PRESETS",
    "is_shipped_model",
    "scene_descriptor_bank",
    "SHAPE_SYNSETS",
    "COLOR_SYNSETS",
    "SCENE_TEXT_SOURCE",
    "SCENE_OOD_PAIRS",
    "scene_vocabulary",
    "scene_class_synset",
    "is_scene_classnames",
]

#: The name ``load_clip`` gives the shipped model.
SHIPPED_MODEL = "shapes"

#: Mutual's u for the scene bank: a scene class owns 8 of its 48 descriptors (4 colour + 4 shape words).
SCENE_BANK_U = 8

#: Scene shape word → WordNet 3.0 noun synset (see the module docstring for the glosses).
SHAPE_SYNSETS: dict[str, str] = {
    "circle": "circle.n.01",
    "square": "square.n.01",
    "triangle": "triangle.n.01",
    "star": "star.n.05",
    "cross": "cross.n.03",
    "ring": "ring.n.02",
}

#: Scene colour word → WordNet 3.0 noun synset (the colour senses under ``chromatic_color.n.01``).
COLOR_SYNSETS: dict[str, str] = {
    "red": "red.n.01",
    "green": "green.n.01",
    "blue": "blue.n.01",
    "yellow": "yellow.n.01",
    "purple": "purple.n.01",
    "orange": "orange.n.02",
}

#: Text source for the shipped scene model: it knows shape and colour *words*, not glosses.
SCENE_TEXT_SOURCE = "lemmas"

#: OOD pairs on single-object scenes, ``(ID synset, OOD synset)``: polygons (square, triangle) against the circle
#: (a conic section), and flat figures (circle, square, triangle, star) against the ring (filed under solids).
SCENE_OOD_PAIRS: tuple[tuple[str, str], ...] = (
    ("polygon.n.01", "conic_section.n.01"),
    ("plane_figure.n.01", "solid.n.03"),
)


@functools.lru_cache(maxsize=4)
def _scene_vocabulary_for(wordnet: WordNetCorpusReader) -> ConceptVocabulary:
    from ..convis.vocabulary import default_vocabulary

    return default_vocabulary(wordnet).extended([*SHAPE_SYNSETS.values(), *COLOR_SYNSETS.values()], wordnet=wordnet)


def scene_vocabulary(wordnet: WordNetCorpusReader | None = None) -> ConceptVocabulary:
    """The built-in vocabulary plus the scene shapes and colours and their hypernyms (existing rows first).

    Args:
        wordnet: a WordNet reader; default :func:`~captum_clip.wordnet.load_wordnet`.

    Returns:
        The extended vocabulary.
    """
    from ..wordnet import load_wordnet

    return _scene_vocabulary_for(wordnet if wordnet is not None else load_wordnet())


def scene_class_synset(classname: str) -> str:
    """The synset of a scene class name: its shape's synset ("red star" → ``star.n.05``), or its colour's
    synset when it names only a colour ("red" → ``red.n.01``).

    Raises:
        ValueError: a name that is not a scene class (see :func:`~captum_clip.shipped.parse_query`).
    """
    color, shape = parse_query(classname)
    return SHAPE_SYNSETS[shape] if shape is not None else COLOR_SYNSETS[color]


def is_scene_classnames(classnames) -> bool:
    """True when every class name names a scene shape and/or colour ("red star", "star", "red")."""
    try:
        for name in classnames:
            parse_query(name)
    except ValueError:
        return False
    return bool(classnames)


# ------------------------------------------------------------------------------------ Mutual Knowledge

#: Geometry the scene captions never mention; the shape word carries the meaning.
_SHAPE_GEOMETRY = {
    "circle": "round",
    "square": "four straight sides",
    "triangle": "three corners",
    "star": "has five points",
    "cross": "two crossing bars",
    "ring": "a hole in the middle",
}

#: Shape descriptors: the shape word alone, with an article, as an adjective, and its geometry.
SCENE_SHAPE_DESCRIPTORS = {
    shape: [shape, f"a {shape}", f"{shape}-shaped", _SHAPE_GEOMETRY[shape]] for shape in SHAPES
}

#: Colour descriptors, as the captions' colour-only mentions ("a red object", "a red shape") phrase them.
SCENE_COLOUR_DESCRIPTORS = {
    colour: [colour, f"a {colour} object", f"a {colour} shape", f"{colour} colored"] for colour in COLORS
}


def scene_descriptor_bank() -> DescriptorBank:
    """``{"red star": [colour descriptors..., shape descriptors...], ...}`` over all 36 scene classes.

    Returns:
        :class:`DescriptorBank` of 48 unique descriptors (the colour and shape ones are shared across classes
        and kept once, in first-occurrence order), ``source == "scenes"``.
    """
    mapping = {
        object_phrase(colour, shape): SCENE_COLOUR_DESCRIPTORS[colour] + SCENE_SHAPE_DESCRIPTORS[shape]
        for colour in COLORS for shape in SHAPES
    }
    bank = load_descriptor_bank(mapping)
    return DescriptorBank(bank.descriptors, bank.classes, "scenes")


# ------------------------------------------------------------------------------------------- presets

def is_shipped_model(classifier) -> bool:
    """True for a classifier over the shipped ``shapes`` model."""
    return getattr(classifier, "bundle", None) is not None and classifier.bundle.name == SHIPPED_MODEL


def _has_scene_classes(classifier) -> bool:
    return classifier is not None and is_scene_classnames(classifier.classnames)


#: ``(method, applies to classifier, options for it)``, applied in order over the defaults table: scene label
#: sets get the scene synsets (any model); the shipped model, which knows shape and colour words but never saw a
#: gloss, also gets lemma texts, and Mutual gets the scene bank.
PRESETS: Tuple[Tuple[str, Callable[[object], bool], Callable[[object], Dict[str, object]]], ...] = (
    ("convis", _has_scene_classes, lambda c: {"vocabulary": scene_vocabulary(), "class_synsets": scene_class_synset}),
    ("convis", is_shipped_model, lambda c: {"vocabulary": scene_vocabulary(), "class_synsets": scene_class_synset,
                                             "text_source": SCENE_TEXT_SOURCE}),
    ("mutual", is_shipped_model, lambda c: {"descriptors": scene_descriptor_bank(), "u": SCENE_BANK_U}),
)
