"""Mutual Knowledge (Sammani & Deligiannis, NeurIPS 2024): concepts shared by CLIP's vision and language encoders.

The method: :class:`MutualConceptAttribution` (a Captum ``Attribution``) with its per-image
:class:`MutualExplanation`, dataset aggregation (:func:`aggregate_explanations`), the concept figure
(:func:`concept_figure`), the paper's concept metrics (:mod:`.concept_metrics`) and descriptor banks
(:func:`load_descriptor_bank`, :func:`wordnet_descriptor_bank`, :func:`scene_descriptor_bank`) with their cached
embeddings (:func:`encode_descriptor_bank`).

Model-free deterministic stages, taking plain tensors/arrays (golden-tested against the reference):

* :mod:`.foreground` - prominent patches (joint SVD/PCA decomposition, sign rule, component cleanup);
* :mod:`.parts` - visual concepts as PCA or k-means parts of the foreground, fitted jointly over the batch;
* :mod:`.prompts` - ellipse of each concept and its three visual prompts;
* :mod:`.matching` - concept -> descriptor matching (top-k ∩, relevance filter, Sinkhorn, top-3, ordered Dv);
* :mod:`.information` - mutual information, its dynamics, AUC and dataset aggregation.

:mod:`.concepts` ties the first two to a vision tower (fit on one set of images, apply to others).

Where the paper and the released code disagree, the code is followed (MI uses "+", relevance threshold is
mean - 0.02, OT keeps the top-3 per concept row); see each module's docstrings.
"""

from .attribution import MutualConceptAttribution
from .bank_embeddings import (
    DESCRIPTOR_TEMPLATE,
    BankEmbeddings,
    bank_embeddings_cache_path,
    encode_descriptor_bank,
    model_fingerprint,
)
from .concept_metrics import (
    ConceptCurves,
    accuracy_drop,
    accuracy_increase,
    concept_deletion,
    concept_insertion,
    concept_metric_values,
    concept_perturbation_curves,
    evaluate_concepts,
    gaussian_blur,
    trapezoid_auc,
)
from .concepts import ConceptBasis, VisualConcepts, apply_concept_basis, fit_concept_basis, tower_features
from .descriptor_bank import DescriptorBank, load_descriptor_bank, wordnet_descriptor_bank, wordnet_descriptors_for
from .figure import concept_figure, concept_overlay, save_concept_figure
from .foreground import (
    ComponentCleanup,
    ProminentPatches,
    ProminentProjection,
    ProminentScores,
    apply_sign_rule,
    as_patch_tokens,
    fit_prominent_projection,
    keep_largest_components,
    minmax_scale,
    prominent_patch_scores,
    project_prominent_scores,
    prominent_patches,
    threshold_candidates,
    upsample_patch_map,
)
from .information import (
    MIDynamics,
    aggregate_curves,
    curve_auc,
    mutual_descriptor_mask,
    mutual_information,
    mutual_information_dynamics,
    order_by_score,
)
from .matching import (
    DescriptorMatch,
    class_descriptors,
    match_descriptors,
    order_visual_descriptors,
    relevance_filter,
    select_top_per_concept,
    sinkhorn,
    topk_intersection,
)
from .parts import (
    REFERENCE_PART_COLOURS,
    PartModel,
    PartSegmentation,
    assign_parts,
    concept_pixel_masks,
    concept_visit_order,
    fit_part_model,
    kmeans_parts,
    pca_parts,
)
from .prompts import (
    CLIP_MEAN,
    CLIP_STD,
    VisualPrompts,
    concept_embedding,
    denormalize_to_uint8,
    ellipse_fill_masks,
    fit_concept_ellipses,
    fit_ellipse,
    largest_external_contour,
    normalize_uint8_images,
    render_visual_prompts,
)
from .results import MutualExplanation, MutualStatistics, aggregate_explanations, ranked_concept_masks
from .scene_bank import scene_descriptor_bank

__all__ = [
    "MutualConceptAttribution", "MutualExplanation", "MutualStatistics", "aggregate_explanations",
    "ranked_concept_masks", "concept_figure", "concept_overlay", "save_concept_figure",
    "DescriptorBank", "load_descriptor_bank", "wordnet_descriptor_bank", "wordnet_descriptors_for",
    "scene_descriptor_bank", "DESCRIPTOR_TEMPLATE", "BankEmbeddings", "bank_embeddings_cache_path",
    "encode_descriptor_bank", "model_fingerprint",
    "ConceptBasis", "VisualConcepts", "apply_concept_basis", "fit_concept_basis", "tower_features",
    "ConceptCurves", "accuracy_drop", "accuracy_increase", "concept_deletion", "concept_insertion",
    "concept_metric_values", "concept_perturbation_curves", "evaluate_concepts", "gaussian_blur", "trapezoid_auc",
    "ProminentProjection", "fit_prominent_projection", "project_prominent_scores",
    "PartModel", "assign_parts", "fit_part_model",
    "ComponentCleanup", "ProminentPatches", "ProminentScores", "apply_sign_rule", "as_patch_tokens",
    "keep_largest_components", "minmax_scale", "prominent_patch_scores", "prominent_patches",
    "threshold_candidates", "upsample_patch_map",
    "MIDynamics", "aggregate_curves", "curve_auc", "mutual_descriptor_mask", "mutual_information",
    "mutual_information_dynamics", "order_by_score",
    "DescriptorMatch", "class_descriptors", "match_descriptors", "order_visual_descriptors", "relevance_filter",
    "select_top_per_concept", "sinkhorn", "topk_intersection",
    "REFERENCE_PART_COLOURS", "PartSegmentation", "concept_pixel_masks", "concept_visit_order", "kmeans_parts",
    "pca_parts",
    "CLIP_MEAN", "CLIP_STD", "VisualPrompts", "concept_embedding", "denormalize_to_uint8", "ellipse_fill_masks",
    "fit_concept_ellipses", "fit_ellipse", "largest_external_contour", "normalize_uint8_images",
    "render_visual_prompts",
]
