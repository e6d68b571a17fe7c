"""Raw CLIP dense similarity maps: the "vanilla CLIP" baseline of the CLIP Surgery paper."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from captum.log import log_usage
from torch import Tensor

from .token_similarity import TokenSimilarityAttribution
from ..base.method import runs_passes
from ..base.targets import TargetLike


class RawCLIPSimilarity(TokenSimilarityAttribution):
    r"""Cosine similarity of every raw CLIP image token with the target text.

    ViT: every token of the unmodified model through ``ln_post`` and ``proj``.
    ResNet: the original attention pool run with every token as a query. This is
    the reference demo's "raw CLIP" picture, which often highlights the background
    (the opposite-visualisation problem CLIP Surgery fixes).

    Args:
        classifier (ZeroShotClassifier): supplies the model and the class embeddings.
    """

    def _tokens(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        tokens = self._normalise(self.tower.dense_tokens(images))
        return tokens, tokens[:, 0] if self.tower.kind == "vit" else self.classifier.image_features(images)

    def _class_scores(self, tokens: Tensor) -> Tensor:
        return tokens @ self.classifier.text_features.to(tokens.device).T

    def _text_scores(self, tokens: Tensor, texts: Sequence[str]) -> Tensor:
        return tokens @ self.classifier.encode_text(texts).T

    @runs_passes
    def dense_tokens(self, inputs: Tensor) -> Tensor:
        """Raw CLIP dense image tokens ``(N, 1+L, E)``, not normalised (token 0 = CLS / mean token)."""
        images = self._inputs(inputs)[0]
        with torch.no_grad():
            return self.tower.dense_tokens(images).float()

    @runs_passes
    def similarity(self, inputs: Tensor) -> Tensor:
        """Cosine of every token with every class embedding, ``(N, 1+L, K)``."""
        images = self._inputs(inputs)[0]
        with torch.no_grad():
            return self._class_scores(self._tokens(images)[0])

    @log_usage()
    def attribute(self, inputs: Tensor, target: TargetLike = None, interpolate: bool = True,
                  additional_forward_args: None = None) -> Tensor:
        r"""Raw CLIP similarity maps.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            target (int, list, Tensor, str, list[str] or None): class indices, class
                names, free texts or ``"a+b"`` combinations, per image or one for all;
                ``None`` uses the predicted class.
            interpolate (bool): upsample to the input size (default) or return the grid.
            additional_forward_args: refused with a ``ValueError`` unless None (the classifier's forward takes
                only images).

        Returns:
            Tensor: ``(N, 1, H, W)`` (or ``(N, 1, gh, gw)``), min-max normalised per map.
        """
        return self._attribute(inputs, target, interpolate, additional_forward_args)
