"""CLIP Surgery (Li et al., arXiv 2304.05653): v-v attention dual paths and feature surgery."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from captum.log import log_usage
from torch import Tensor

from ..core.classifier import ZeroShotClassifier
from ..defaults import fill_defaults
from .token_similarity import COMBINE, TokenSimilarityAttribution
from ..base.method import runs_passes
from ..base.targets import TargetLike

REDUNDANCY_MODES = ("auto", "labelset", "empty")

#: The reference hard-codes softmax(2 * cosine) for the class weights (its ``t`` argument is unused).
CLASS_WEIGHT_TEMPERATURE = 2.0


def labelset_feature_surgery(tokens: Tensor, text_features: Tensor) -> Tensor:
    """Feature surgery with the redundancy estimated from the label set.

    With ``a_ik = f_i . t_k``, ``p = softmax_k(2 a_0k)`` from token 0, and
    ``w_k = p_k / mean_j p_j``, the score is ``s_ik = w_k a_ik - mean_j(w_j a_ij)``:
    the reference's ``sum_c (g_ik - r_i)_c`` without the ``(B, L, K, E)`` tensor.
    Class weights are per image, which equals the reference run image by image
    (the reference itself only accepts one image).

    Args:
        tokens: unit-norm image tokens ``(B, 1+L, E)``, token 0 = CLS.
        text_features: unit-norm class embeddings ``(K, E)``.

    Returns:
        ``(B, 1+L, K)`` scores.
    """
    cosine = tokens @ text_features.T
    probabilities = torch.softmax(CLASS_WEIGHT_TEMPERATURE * cosine[:, 0], dim=-1)
    weights = (probabilities / probabilities.mean(dim=-1, keepdim=True)).unsqueeze(1)
    weighted = weights * cosine
    return weighted - weighted.mean(dim=-1, keepdim=True)


def redundancy_feature_surgery(tokens: Tensor, text_features: Tensor, redundancy: Tensor) -> Tensor:
    """Feature surgery with a given redundant feature: ``s_ik = f_i . (t_k - r)``.

    Args:
        tokens: unit-norm image tokens ``(B, 1+L, E)``.
        text_features: unit-norm text embeddings ``(K, E)``.
        redundancy: the redundant feature ``(1, E)`` or ``(E,)``, e.g. the empty-string ensemble.

    Returns:
        ``(B, 1+L, K)`` scores.
    """
    return tokens @ (text_features - redundancy.reshape(1, -1)).T


class SurgeryCAM(TokenSimilarityAttribution):
    r"""CLIP Surgery saliency maps for a zero-shot CLIP classifier.

    Architecture surgery: in the last six ViT blocks a v-v self-attention path runs
    beside the original one (both read ``ln_1`` of the original path; the new path
    skips the MLP); the CLS token comes from the original path and the patch tokens
    from the new path, all through ``ln_post`` and ``proj``. For ResNet towers the
    attention pool uses ``q = k = v = v_proj(x)`` with every token as a query.
    Feature surgery then removes the redundant feature shared by all classes.

    Forward-only and gradient-free; the model is never modified (the positional
    embedding is resized functionally for any input size).

    Li et al., "CLIP Surgery for Better Explainability with Enhancement in
    Open-Vocabulary Tasks", arXiv 2304.05653; "A Closer Look at the Explainability
    of Contrastive Language-Image Pre-training", Pattern Recognition 162 (2025).

    Args:
        classifier (ZeroShotClassifier): the zero-shot classifier whose classes are
            the label set and the targets.
        redundancy (str): ``"labelset"`` estimates the redundant feature from the
            classifier's label set, weighted by the CLS class probabilities (needs at
            least 2 classes); ``"empty"`` subtracts the empty-string prompt ensemble,
            the single free-text query mode; ``"auto"`` (default) is ``"labelset"``
            with 2 or more classes and ``"empty"`` for a single query.

    Attributes:
        redundancy_mode (str): the resolved mode, ``"labelset"`` or ``"empty"``.
    """

    def __init__(self, classifier: ZeroShotClassifier, redundancy: str = "auto") -> None:
        super().__init__(classifier)
        if redundancy not in REDUNDANCY_MODES:
            raise ValueError(f"redundancy must be one of {REDUNDANCY_MODES}; got {redundancy!r}.")
        redundancy = fill_defaults("surgery", classifier, {"redundancy": redundancy},
                                   unset=lambda value: value == "auto")["redundancy"]
        if redundancy == "labelset" and classifier.num_classes < 2:
            raise ValueError(
                "redundancy='labelset' needs at least 2 classes (with one class the label-set surgery is "
                "identically zero); use SurgeryCAM(classifier, redundancy='empty') for a single query."
            )
        self.redundancy_mode = redundancy

    def _tokens(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        tokens, pooled = self.tower.surgery_tokens(images)
        return self._normalise(tokens), self._normalise(pooled)

    def _class_scores(self, tokens: Tensor) -> Tensor:
        text = self.classifier.text_features.to(tokens.device)
        if self.redundancy_mode == "labelset":
            return labelset_feature_surgery(tokens, text)
        return redundancy_feature_surgery(tokens, text, self.classifier.redundancy)

    def _text_scores(self, tokens: Tensor, texts: Sequence[str]) -> Tensor:
        return redundancy_feature_surgery(tokens, self.classifier.encode_text(texts), self.classifier.redundancy)

    def _check_texts(self, texts: Sequence[str]) -> None:
        if self.redundancy_mode == "labelset" and texts:
            raise ValueError(
                f"text target {texts[0]!r} is not one of the classifier's classes. In redundancy='labelset' mode "
                "the label set defines the redundancy: add the text to classnames, or use "
                f"redundancy='empty' for free-text queries (or combine queries with '{COMBINE}')."
            )

    @runs_passes
    def surgery_tokens(self, inputs: Tensor) -> Tensor:
        """Raw CLIP Surgery image tokens ``(N, 1+L, E)``, not normalised.

        ViT: CLS from the original path, patches from the v-v path, all through
        ``ln_post`` and ``proj``; ResNet: the v-v attention-pool output of every token.
        """
        images = self._inputs(inputs)[0]
        with torch.no_grad():
            return self.tower.surgery_tokens(images)[0].float()

    @runs_passes
    def surgery_similarity(self, inputs: Tensor) -> Tensor:
        """Per-token feature-surgery scores of all classes, ``(N, 1+L, K)`` (token 0 = CLS)."""
        images = self._inputs(inputs)[0]
        with torch.no_grad():
            tokens, _ = self._tokens(images)
            return self._class_scores(tokens)

    @log_usage()
    def attribute(self, inputs: Tensor, target: TargetLike = None, interpolate: bool = True,
                  additional_forward_args: None = None) -> Tensor:
        r"""Saliency maps of CLIP Surgery.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)`` of any
                size (the positional embedding is resized bilinearly).
            target (int, list, Tensor, str, list[str] or None): per image, a class index
                of the classifier, a class name, free text (``redundancy="empty"``),
                or ``"a+b"`` to average the maps of ``a`` and ``b`` (each scored against
                the empty-string redundancy, as in the reference). A single value applies
                to every image; ``None`` uses the predicted class (from the CLS token).
            interpolate (bool): upsample to the input size (default) or return the
                token grid.
            additional_forward_args: refused with a ``ValueError`` unless None (the classifier's forward takes
                only images).

        Returns:
            Tensor (or a 1-tuple if ``inputs`` was a tuple): ``(N, 1, H, W)`` maps (or
            ``(N, 1, gh, gw)``), each min-max normalised over its patches before
            bilinear upsampling (``align_corners=False``).
        """
        return self._attribute(inputs, target, interpolate, additional_forward_args)
