"""Shared machinery of the forward-only methods that score every image token against text."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..base.maps import minmax, patch_scores_to_grid
from ..base.method import ClipAttribution
from ..base.targets import ResolvedTargets
from ..errors import require_finite

#: Separator of combined queries ("person+bench"), as in the CLIP Surgery demo.
COMBINE = "+"


class TokenSimilarityAttribution(ClipAttribution):
    """Base of methods whose map is a per-token text similarity (CLIP Surgery, raw CLIP).

    Subclasses give the unit-norm tokens (``_tokens``), the per-token scores of all
    classes (``_class_scores``) and of free texts (``_text_scores``); this class
    handles ``"a+b"`` combined queries and turns scores into min-max normalised maps.
    """

    map_normalisation = "min-max per map over its patches, then bilinear upsampling"

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
    def _grid(self, images: Tensor) -> Tuple[int, int]:
        return self.tower.grid_shape(tuple(images.shape[-2:]))

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

    def _target_grid_maps(self, images: Tensor, targets: ResolvedTargets, grid: Tuple[int, int]) -> Tensor:
        return self._token_grid_maps(*self._finite_tokens(images), targets, grid)

    def _token_grid_maps(self, tokens: Tensor, pooled: Tensor, targets: ResolvedTargets,
                         grid: Tuple[int, int]) -> Tensor:
        if targets.texts is None:
            indices = targets.indices if not targets.predicted else self.predicted_classes(embeddings=pooled)
            return self._class_maps(tokens, indices, grid)
        # A class name keeps its class map even when other images in the batch ask for free text.
        class_rows = targets.class_rows()
        self._check_texts([t for t, i in zip(targets.texts, class_rows) if i is None and COMBINE not in t])
        maps = self._combined_text_maps(tokens, targets.texts, grid)
        if any(i is not None for i in class_rows):
            is_class = torch.tensor([i is not None for i in class_rows], device=maps.device).view(-1, 1, 1, 1)
            indices = torch.tensor([i or 0 for i in class_rows])
            maps = torch.where(is_class, self._class_maps(tokens, indices, grid), maps)
        return maps

    @torch.no_grad()
    def _attribute(self, inputs, target, interpolate: bool, additional_forward_args=None):
        images, is_tuple, device = self._inputs(inputs, additional_forward_args)
        targets = self.resolve_targets(target, images.shape[0])
        grid_maps = self._target_grid_maps(images, targets, self._grid(images))
        return self._outputs(grid_maps, images, device, is_tuple, interpolate)

    @torch.no_grad()
    def _attribute_all(self, images: Tensor, targets: list, interpolate: bool = True) -> Tensor:
        resolved = self.resolve_targets(targets, len(targets))
        tokens, pooled = self._finite_tokens(images)
        grid = self._grid(images)
        if resolved.indices is None:
            # Texts among the targets: the batch's tokens are computed once and scored against every (image, text).
            n, k = images.shape[0], len(targets)
            pairs = self.resolve_targets(targets * n, n * k)
            grid_maps = self._token_grid_maps(tokens.repeat_interleave(k, dim=0), pooled.repeat_interleave(k, dim=0),
                                              pairs, grid)
            grid_maps = grid_maps.reshape(n, k, *grid_maps.shape[-2:])
        else:
            # Classes only: one pass scores every class, and the K asked for are gathered from it.
            scores = self._class_scores(tokens)[..., resolved.indices.to(tokens.device)]
            grid_maps = minmax(patch_scores_to_grid(scores, grid), dim=(-2, -1))
        return self._outputs(grid_maps, images, images.device, False, interpolate)

    @staticmethod
    def _normalise(tokens: Tensor) -> Tensor:
        # Over the embedding axis: the pre-2025 reference demo normalised over tokens by mistake.
        return F.normalize(tokens.float(), dim=-1)
