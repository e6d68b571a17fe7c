"""Mutual Knowledge (Sammani & Deligiannis, NeurIPS 2024): concepts shared by CLIP's vision and language encoders.

The method is :class:`MutualConceptAttribution`, whose :meth:`~MutualConceptAttribution.explain` gives one
:class:`MutualExplanation` per image, aggregated over a dataset by :func:`aggregate_explanations`
(:class:`MutualStatistics`). Its documented stages:

* descriptor banks (:class:`DescriptorBank`, :func:`load_descriptor_bank`, :func:`wordnet_descriptor_bank`) and
  their cached embeddings (:class:`BankEmbeddings`, :func:`encode_descriptor_bank`);
* visual concepts fitted on one set of images and applied to others (:class:`ConceptBasis`,
  :class:`VisualConcepts`);
* the concept figure (:func:`concept_figure`, :func:`save_concept_figure`).

The model-free steps (:mod:`.foreground`, :mod:`.parts`, :mod:`.prompts`, :mod:`.matching`,
:mod:`.information`) are golden-tested against the reference and importable from their modules. The paper's
concept metrics live in :mod:`captum_clip.evaluation.concept_metrics`, the scene bank of the shipped model in
:mod:`captum_clip.shipped.presets`.

Where the paper and the released code disagree, the code is followed (MI uses "+", relevance threshold is
mean - 0.02, OT keeps the top-3 per concept row); see each module's docstrings.
"""

from .attribution import MutualConceptAttribution
from .bank_embeddings import BankEmbeddings, encode_descriptor_bank
from .concepts import ConceptBasis, VisualConcepts
from .descriptor_bank import DescriptorBank, load_descriptor_bank, wordnet_descriptor_bank
from .figure import concept_figure, save_concept_figure
from .results import MutualExplanation, MutualStatistics, aggregate_explanations

__all__ = [
    "MutualConceptAttribution",
    "MutualExplanation",
    "MutualStatistics",
    "aggregate_explanations",
    "DescriptorBank",
    "load_descriptor_bank",
    "wordnet_descriptor_bank",
    "BankEmbeddings",
    "encode_descriptor_bank",
    "ConceptBasis",
    "VisualConcepts",
    "concept_figure",
    "save_concept_figure",
]
