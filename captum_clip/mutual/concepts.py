"""Visual concepts of a CLIP vision tower: prominent patches split into parts, as pixel masks (stage (a)).

The decomposition is *fitted* on a set of images (the batch itself, or a class-sized reference batch as in the
paper) and then *applied* to the images being explained. Applying the fit of a batch to one of its own images
gives exactly its labels in the joint fit, so explaining a batch at once and explaining its images one at a
time against that batch agree.

Features come from the tower adapter (:meth:`captum_clip.core.towers.VisionTower.last_block_features`); this module
never touches open_clip internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import require_finite
from ..core.towers import VisionTower
from .foreground import ProminentProjection, fit_prominent_projection, prominent_patches
from .parts import PartModel, assign_parts, concept_pixel_masks, fit_part_model

__all__ = ["ConceptBasis", "VisualConcepts", "tower_features", "fit_concept_basis", "apply_concept_basis"]


@dataclass(frozen=True)
class ConceptBasis:
    """Foreground decomposition and parts fitted on a set of images; reusable for any image of the same tower.

    Attributes:
        facet: ``"tokens"`` or ``"keys"``, the features it was fitted on.
        foreground: the fitted GDC/PCA foreground projection.
        parts: the fitted PCA / k-means parts.
        min_second_size: the cleanup's size threshold for the second component.
        n_images: how many images it was fitted on.
    """

    facet: str
    foreground: ProminentProjection
    parts: PartModel
    min_second_size: int
    n_images: int

    @property
    def n_parts(self) -> int:
        return self.parts.n_parts


@dataclass
class VisualConcepts:
    """Visual concepts of B images, concept slots in the reference's visiting order.

    Attributes:
        masks: (B, L, H, W) bool pixel masks M_{b,j}; padded slots (j >= L_b) are all False.
        part_ids: (B, L) int64 part id of each slot, -1 padded.
        n_concepts: (B,) int64 L_b.
        foreground: (B, h, w) bool prominent patches after the cleanup.
        labels: (B, h, w) int64 part label per patch, -1 outside the foreground.
        image_embeddings: (B, E) float32 unit-norm pooled embeddings E_img(x_b), from the same forward pass.
    """

    masks: Tensor
    part_ids: Tensor
    n_concepts: Tensor
    foreground: Tensor
    labels: Tensor
    image_embeddings: Tensor


def tower_features(tower: VisionTower, images: Tensor, facet: str) -> Tuple[Tensor, Tensor, Tuple[int, int]]:
    """Patch features and unit-norm pooled embeddings of ``images`` (no autograd).

    Returns:
        ``(patches, embeddings, grid)``: (B, gh*gw, C) float32 features without token 0, (B, E) float32 unit-norm
        embeddings, and (gh, gw).
    """
    with torch.no_grad():
        features, pooled = tower.last_block_features(images, facet)
    require_finite(features, "Mutual Knowledge: the last-block features")
    require_finite(pooled, "Mutual Knowledge: the image embedding")
    grid = tower.grid_shape(tuple(images.shape[-2:]))
    return features[:, 1:].float(), F.normalize(pooled.float(), dim=-1), grid


def fit_concept_basis(
    patches: Tensor,
    grid: Tuple[int, int],
    facet: str = "tokens",
    foreground_method: str = "svd",
    part_method: str = "pca",
    n_parts: int = 5,
    min_second_size: int = 5,
    random_state: int = 0,
) -> ConceptBasis:
    """Fit the foreground and the parts jointly on all patches of a set of images.

    Args:
        patches: (B, gh*gw, C) features of the fitting set (from :func:`tower_features`).
        grid: (gh, gw).
        facet: recorded in the basis, so it is applied to features of the same facet.
        foreground_method: ``"svd"`` (GDC, the paper) or ``"pca"``.
        part_method: ``"pca"`` or ``"kmeans"``.
        n_parts: L (5 in the paper).
        min_second_size: the second-largest component is kept from this many patches (5).
        random_state: k-means seed.

    Returns:
        :class:`ConceptBasis`.
    """
    projection = fit_prominent_projection(patches, method=foreground_method)
    fg = prominent_patches(patches, grid, min_second_size=min_second_size, projection=projection).mask
    parts = fit_part_model(patches, fg, part_method, n_parts, grid, random_state=random_state)
    return ConceptBasis(facet, projection, parts, min_second_size, patches.shape[0])


def _pixel_masks(labels: Tensor, part_ids: Tensor, image_hw: Tuple[int, int], cell: Tuple[int, int]) -> Tensor:
    # The grid covers the top-left gh*cell x gw*cell pixels (the patch convolution drops the rest), so the
    # nearest-neighbour upsampling targets that area and the remainder belongs to no concept.
    gh, gw = labels.shape[-2:]
    covered = (min(gh * cell[0], image_hw[0]), min(gw * cell[1], image_hw[1]))
    masks = concept_pixel_masks(labels, part_ids, covered)
    if covered != tuple(image_hw):
        masks = F.pad(masks, (0, image_hw[1] - covered[1], 0, image_hw[0] - covered[0]), value=False)
    return masks


def apply_concept_basis(
    basis: ConceptBasis,
    patches: Tensor,
    embeddings: Tensor,
    grid: Tuple[int, int],
    image_hw: Tuple[int, int],
    cell: Tuple[int, int],
) -> VisualConcepts:
    """Visual concepts of images under a fitted basis.

    Args:
        basis: from :func:`fit_concept_basis`.
        patches: (B, gh*gw, C) features of the images (same facet as the basis).
        embeddings: (B, E) their unit-norm pooled embeddings.
        grid: (gh, gw).
        image_hw: (H, W) of the images.
        cell: pixels per grid cell.

    Returns:
        :class:`VisualConcepts`. An image without prominent patches has L_b = 0 (documented guard: the
        reference turns that case into a whole-image mask and then crashes).
    """
    fg = prominent_patches(patches, grid, min_second_size=basis.min_second_size, projection=basis.foreground).mask
    parts = assign_parts(basis.parts, patches, fg, grid)
    masks = _pixel_masks(parts.labels, parts.concept_order, image_hw, cell)
    return VisualConcepts(masks, parts.concept_order, parts.n_concepts, fg, parts.labels, embeddings)
