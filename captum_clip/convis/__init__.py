"""Concept Visualization (ConVis; Giulivi & Boracchi, 2024): where an image shows a WordNet concept.

The method is :class:`ConVisAttribution`. Its documented stages, each usable on its own:

* the concept vocabulary T with its hyponym hierarchy (:class:`ConceptVocabulary`, :func:`default_vocabulary`);
* the cached text bank of the synsets' glosses (:class:`TextBank`, :func:`build_text_bank`);
* the window sweep (:class:`WindowConfig`, :data:`REFERENCE_WINDOWS`);
* per-window ranks and per-pixel maps for one image (:class:`ConceptMapper`, :class:`WindowRanks`,
  :class:`ConceptMaps`);
* the concepts an image shows most (:class:`ConceptMass`, from :meth:`ConVisAttribution.top_concepts`).

The paper's experiments (WSOL, OOD) live in :mod:`captum_clip.evaluation`, the shipped scene model's synsets in
:mod:`captum_clip.shipped.presets` and WordNet loading in :mod:`captum_clip.wordnet`.
"""

from .attribution import ConVisAttribution
from .concept_maps import ConceptMapper, ConceptMaps, WindowRanks
from .presence import ConceptMass
from .text_bank import TextBank, build_text_bank
from .vocabulary import ConceptVocabulary, default_vocabulary
from .windows import REFERENCE_WINDOWS, WindowConfig

__all__ = [
    "ConVisAttribution",
    "ConceptVocabulary",
    "default_vocabulary",
    "TextBank",
    "build_text_bank",
    "WindowConfig",
    "REFERENCE_WINDOWS",
    "ConceptMapper",
    "WindowRanks",
    "ConceptMaps",
    "ConceptMass",
]
