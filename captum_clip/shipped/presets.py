"""ConVis on the generated shape scenes and the shipped ``shapes`` model: which synset each shape and colour is.

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

from nltk.corpus.reader.wordnet import WordNetCorpusReader

from .scenes import parse_query
from ..convis.vocabulary import ConceptVocabulary, default_vocabulary
from ..wordnet import load_wordnet

__all__ = [
    "SHAPE_SYNSETS",
    "COLOR_SYNSETS",
    "SCENE_TEXT_SOURCE",
    "SCENE_OOD_PAIRS",
    "scene_vocabulary",
    "scene_class_synset",
    "scene_method_options",
    "is_scene_classnames",
]

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
    return default_vocabulary(wordnet).extended([*SHAPE_SYNSETS.values(), *COLOR_SYNSETS.values()], wordnet=wordnet)


def scene_vocabulary(wordnet: WordNetCorpusReader | None = None) -> ConceptVocabulary:
    """The built-in vocabulary plus the scene shapes and colours and their hypernyms (existing rows first).

    Args:
        wordnet: a WordNet reader; default :func:`~captum_clip.wordnet.load_wordnet`.

    Returns:
        The extended vocabulary.
    """
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


def scene_method_options(shipped_model: bool = True) -> dict:
    """ConVisAttribution options for explaining generated scenes.

    Args:
        shipped_model: the shipped ``shapes`` model, which gets lemma texts (it never saw a gloss).

    Returns:
        ``{"vocabulary": scene_vocabulary(), "class_synsets": scene_class_synset}``, plus
        ``"text_source": "lemmas"`` for the shipped model.
    """
    options = {"vocabulary": scene_vocabulary(), "class_synsets": scene_class_synset}
    if shipped_model:
        options["text_source"] = SCENE_TEXT_SOURCE
    return options
