"""A descriptor bank in the vocabulary of the shipped scene model (``load_clip("shapes")``).

The scene model's text tower only ever saw captions built from six colours, six shapes and a few nouns
("a red star and a blue ring", "a star", "a red object"), so LLM or WordNet descriptors mean nothing to it. This
bank describes each "colour shape" class the way an LLM bank would ("red", "a red object", "a star",
"star-shaped", ...) but in words that model knows, plus a few geometric phrases it has never read (kept so the
relevance filter has something to reject).
"""

from __future__ import annotations

from . import COLORS, SHAPES, object_phrase
from ..mutual.descriptor_bank import DescriptorBank, load_descriptor_bank

__all__ = ["SCENE_SHAPE_DESCRIPTORS", "SCENE_COLOUR_DESCRIPTORS", "scene_descriptor_bank"]

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
