"""Shared machinery of the forward-only methods that score every image token against text."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from captum.attr import Attribution
from torch import Tensor

from ..core.classifier import ZeroShotClassifier
from ..base.maps import minmax, patch_scores_to_grid, upsample_to_input
from ..errors import require_finite
from ..base.inputs import Targets, check_images, resolve_targets, unpack_inputs

#: Separator of combined queries ("person+bench"), as in the CLIP Surgery demo.
COMBINE = "+"


def check_classifier(classifier) -> ZeroShotClassifier:
    if not isinstance(classifier, ZeroShotClassifier):
        raise ValueError(
            f"expected a captum_clip.ZeroShotClassifier, got {type(classifier).__name__}; build one with "
            "ZeroShotClassifier(load_clip(...), classnames)."
        )
    return classifier


class TokenSimilarityAttribution(Attribution):
    """Base of methods whose map is a per-token text similarity (CLIP Surgery, raw CLIP).

    Subclasses give the unit-norm tokens (``_tokens``), the per-token scores of all
    classes (``_class_scores``) and of free texts (``_text_scores``); this class
    resolves targets, handles ``"a+b"`` combined queries, and turns scores into
    min-max normalised maps.
    """

    def __init__(self, classifier: ZeroShotClassifier) -> None:
        super().__init__(check_classifier(classifier))
        self.classifier = classifier
        self.tower = classifier.tower

    # -- what subclasses define -------------------------------------------------------
    def _tokens(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """Unit-norm tokens ``(B, 1+L, E)`` and unit-norm pooled embeddings ``(B, E)``."""
        raise NotImplementedError

    def _class_scores(self, tokens: Tensor) -> Tensor:
        """Per-token scores of every class, ``(B, 1+L, K)``."""
        raise NotImplementedError

    def _text_scores(self, tokens: Tensor, texts: Sequence[str]) -> Tensor:
        """Per-token scores of free texts, ``(B, 1+L, T)``."""
        raise NotImplementedError

    def _check_texts(self, texts: Sequence[str]) -> None:
        """Raise if this method cannot score these free texts."""

    # -- the pipeline ------------------------------------------------------------------
    def _prepare(self, inputs) -> Tuple[Tensor, bool, Tuple[int, int]]:
        images, is_tuple = unpack_inputs(inputs)
        images = check_images(images, self.tower.cell_size)
        return images, is_tuple, self.tower.grid_shape(tuple(images.shape[-2:]))

    def _finish(self, grid_maps: Tensor, images: Tensor, interpolate: bool, is_tuple: bool):
        maps = upsample_to_input(grid_maps, tuple(images.shape[-2:]), self.tower.cell_size) if interpolate else grid_maps
        return (maps,) if is_tuple else maps

    def _combined_text_maps(self, tokens: Tensor, texts: List[str], grid: Tuple[int, int]) -> Tensor:
        """``(B, 1, gh, gw)`` maps for one text per image; ``"a+b"`` averages the min-maxed part maps."""
        parts_per_image = [[p.strip() for p in text.split(COMBINE) if p.strip()] or [text] for text in texts]
        parts = list(dict.fromkeys(p for image_parts in parts_per_image for p in image_parts))
        part_maps = minmax(patch_scores_to_grid(self._text_scores(tokens, parts), grid), dim=(-2, -1))
        weights = torch.zeros(len(texts), len(parts), device=tokens.device)
        for row, image_parts in enumerate(parts_per_image):
            for part in image_parts:
                weights[row, parts.index(part)] += 1.0 / len(image_parts)
        combined = torch.einsum("bkhw,bk->bhw", part_maps, weights).unsqueeze(1)
        # Rescaling keeps the "min-max normalised per map" contract; it preserves the ranking.
        return minmax(combined, dim=(-2, -1))

    def _class_maps(self, tokens: Tensor, indices: Tensor, grid: Tuple[int, int]) -> Tensor:
        scores = self._class_scores(tokens)
        chosen = scores.gather(-1, indices.to(scores.device).view(-1, 1, 1).expand(-1, scores.shape[1], 1))
        return minmax(patch_scores_to_grid(chosen, grid), dim=(-2, -1))

    def _finite_tokens(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        tokens, pooled = self._tokens(images)
        name = type(self).__name__
        return require_finite(tokens, f"{name}: the image tokens"), require_finite(pooled, f"{name}: the image embedding")

    def _target_grid_maps(self, images: Tensor, targets: Targets, grid: Tuple[int, int]) -> Tensor:
        tokens, pooled = self._finite_tokens(images)
        if targets.texts is None:
            indices = targets.indices
            if indices is None:
                indices = (pooled @ self.classifier.text_features.to(pooled.device).T).argmax(dim=-1)
            return self._class_maps(tokens, indices, grid)
        # A class name keeps its class map even when other images in the batch ask for free text.
        class_rows = [self.classifier.class_index(t) for t in targets.texts]
        self._check_texts([t for t, i in zip(targets.texts, class_rows) if i is None and COMBINE not in t])
        maps = self._combined_text_maps(tokens, targets.texts, grid)
        if any(i is not None for i in class_rows):
            is_class = torch.tensor([i is not None for i in class_rows], device=maps.device).view(-1, 1, 1, 1)
            indices = torch.tensor([i or 0 for i in class_rows])
            maps = torch.where(is_class, self._class_maps(tokens, indices, grid), maps)
        return maps

    @torch.no_grad()
    def _attribute(self, inputs, target, interpolate: bool):
        images, is_tuple, grid = self._prepare(inputs)
        targets = resolve_targets(target, images.shape[0], self.classifier)
        grid_maps = self._target_grid_maps(images, targets, grid)
        return self._finish(grid_maps.float(), images, interpolate, is_tuple)

    @torch.no_grad()
    def attribute_all(self, inputs, interpolate: bool = True):
        """Maps of all K classes in one pass.

        Args:
            inputs (Tensor): normalised images ``(N, 3, H, W)``.
            interpolate (bool): upsample to ``(H, W)`` (default) or return the token grid.

        Returns:
            Tensor: ``(N, K, H, W)`` (or ``(N, K, gh, gw)``), each map min-max normalised,
            in the classifier's class order.
        """
        images, is_tuple, grid = self._prepare(inputs)
        tokens, _ = self._finite_tokens(images)
        grid_maps = minmax(patch_scores_to_grid(self._class_scores(tokens), grid), dim=(-2, -1))
        return self._finish(grid_maps.float(), images, interpolate, is_tuple)

    @staticmethod
    def _normalise(tokens: Tensor) -> Tensor:
        # Over the embedding axis: the pre-2025 reference demo normalised over tokens by mistake.
        return F.normalize(tokens.float(), dim=-1)
