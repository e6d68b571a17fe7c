"""Deterministic building blocks of Mutual Knowledge (Sammani & Deligiannis, NeurIPS 2024).

Model-free stages, taking plain tensors/arrays so that an attribution class can feed them CLIP features:

* :mod:`.foreground` - prominent patches (joint SVD/PCA decomposition, sign rule, component cleanup);
* :mod:`.parts` - visual concepts as PCA or k-means parts of the foreground, fitted jointly over the batch;
* :mod:`.prompts` - ellipse of each concept and its three visual prompts;
* :mod:`.matching` - concept -> descriptor matching (top-k ∩, relevance filter, Sinkhorn, top-3, ordered Dv);
* :mod:`.information` - mutual information, its dynamics, AUC and dataset aggregation.

Where the paper and the released code disagree, the code is followed (MI uses "+", relevance threshold is
mean - 0.02, OT keeps the top-3 per concept row); see each module's docstrings.
"""

from .foreground import (
    ComponentCleanup,
    ProminentPatches,
    ProminentScores,
    apply_sign_rule,
    as_patch_tokens,
    keep_largest_components,
    minmax_scale,
    prominent_patch_scores,
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
    PartSegmentation,
    concept_pixel_masks,
    concept_visit_order,
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

__all__ = [
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
