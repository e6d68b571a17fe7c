"""What :class:`~captum_clip.mutual.MutualConceptAttribution` returns per image, and dataset-level statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .information import aggregate_curves

__all__ = ["MutualExplanation", "MutualStatistics", "aggregate_explanations", "ranked_concept_masks"]


@dataclass
class MutualExplanation:
    """Mutual-knowledge explanation of one image's zero-shot prediction.

    Concepts are listed by decreasing importance (cos(E_img(x), z_j) x cos(E_img(x), E_txt(first descriptor of
    j)), the spec's reading of App. E); every per-concept attribute uses that order.

    Attributes:
        masks: (L_b, H, W) bool pixel mask of each visual concept.
        concept_descriptors: per concept, its descriptors T_j (<= 3) in decreasing transport mass.
        visual_descriptors: Dv as ``(descriptor, s(d))`` pairs, s(d) = 2.5 cos(E_img(x), E_txt(d)), decreasing.
        text_descriptors: D_ŷ, the top-u descriptors of the explained class by ⟨w_ŷ, W_D[d]⟩.
        mutual: Dv ∩ D_ŷ, in Dv order.
        mi: the code's MI, log|Dv| + log u + H (0 when nothing is shared).
        mi_curve: (|Dv| + 1,) float64 MI as the visual descriptors are removed most important first.
        auc: plain mean of ``mi_curve``.
        target: the explained class index, or None for a free-text target.
        target_name: the explained class name or text.
        importance: (L_b,) float32 concept importances (the order above).
        part_ids: part id of each concept (the same id means the same part across the fitted images).
        ellipses: (L_b, 5) float64 (cx, cy, width, height, angle°) of each concept's visual prompt.
        foreground: (h, w) bool prominent patches.
        visual_ids, text_ids: bank ids of Dv and D_ŷ.
    """

    masks: Tensor
    concept_descriptors: List[List[str]]
    visual_descriptors: List[Tuple[str, float]]
    text_descriptors: List[str]
    mutual: List[str]
    mi: float
    mi_curve: Tensor
    auc: float
    target: Optional[int]
    target_name: str
    importance: Tensor
    part_ids: List[int]
    ellipses: np.ndarray
    foreground: Tensor
    visual_ids: List[int]
    text_ids: List[int]

    @property
    def n_concepts(self) -> int:
        return int(self.masks.shape[0])

    def attribution_map(self) -> Tensor:
        """(H, W) float32: each concept's mask weighted by its importance (what ``attribute`` returns)."""
        weights = self.importance.to(torch.float32).view(-1, 1, 1)
        return (self.masks.to(torch.float32) * weights).sum(dim=0)


class MutualStatistics(NamedTuple):
    """Dataset- or class-level mutual knowledge.

    Attributes:
        curve: (T,) float32 MI dynamics averaged over images, each curve zero-padded to the longest (the
            reference's dataset helper, which averages in float32).
        auc: () float64 mean of ``curve``.
        mi: () float64 mean MI over images (the spec's guess for Table 3's "MI").
        n_images: how many explanations were aggregated.
    """

    curve: Tensor
    auc: Tensor
    mi: Tensor
    n_images: int


def aggregate_explanations(explanations: Sequence[MutualExplanation]) -> MutualStatistics:
    """Aggregate per-image MI dynamics into one curve, its AUC and the mean MI.

    Args:
        explanations: results of ``explain`` (e.g. concatenated over the batches of a dataset or a class).

    Returns:
        :class:`MutualStatistics`.

    Raises:
        ValueError: for an empty sequence.
    """
    if not explanations:
        raise ValueError("aggregate_explanations needs at least one explanation.")
    longest = max(e.mi_curve.numel() for e in explanations)
    curves = torch.full((len(explanations), longest), float("nan"), dtype=torch.float64)
    for row, e in enumerate(explanations):
        curves[row, : e.mi_curve.numel()] = e.mi_curve.double().cpu()
    curve, auc = aggregate_curves(curves)
    mi = torch.tensor([e.mi for e in explanations], dtype=torch.float64).mean()
    return MutualStatistics(curve, auc, mi, len(explanations))


def ranked_concept_masks(explanations: Sequence[MutualExplanation], n_slots: Optional[int] = None) -> Tensor:
    """Stack the concept masks of several explanations, most important concept first.

    Args:
        explanations: one per image, all of the same image size.
        n_slots: L; default the largest L_b.

    Returns:
        (B, L, H, W) bool, padded with empty masks.
    """
    if not explanations:
        raise ValueError("ranked_concept_masks needs at least one explanation.")
    hw = explanations[0].masks.shape[-2:]
    n_slots = max([e.n_concepts for e in explanations] + [1]) if n_slots is None else n_slots
    out = torch.zeros(len(explanations), n_slots, *hw, dtype=torch.bool, device=explanations[0].masks.device)
    for row, e in enumerate(explanations):
        if e.masks.shape[-2:] != hw:
            raise ValueError("all explanations must have the same image size.")
        n = min(e.n_concepts, n_slots)
        out[row, :n] = e.masks[:n].to(out.device)
    return out
