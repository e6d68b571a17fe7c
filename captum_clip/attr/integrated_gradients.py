"""Integrated Gradients through the zero-shot classifier, reduced to one map per image."""

from __future__ import annotations

from typing import Optional

from captum.attr import GradientAttribution, IntegratedGradients
from captum.log import log_usage
from torch import Tensor

from ..classifier import ZeroShotClassifier
from .token_similarity import check_classifier
from .validation import TargetLike, check_images, resolve_to_indices, unpack_inputs

CHANNEL_REDUCTIONS = ("abs_sum", "sum")


class CLIPIntegratedGradients(GradientAttribution):
    r"""Integrated Gradients (Sundararajan et al., ICML 2017) of a zero-shot CLIP logit.

    Captum's :class:`~captum.attr.IntegratedGradients` on the classifier, with the
    per-pixel attributions summed over the colour channels into ``(N, 1, H, W)``
    so the result is interchangeable with the CAM-style methods.

    Args:
        classifier (ZeroShotClassifier): the forward function (logits ``(N, K)``).
        channel_reduction (str): ``"abs_sum"`` (default) sums the absolute
            attributions over RGB, the usual saliency picture; ``"sum"`` keeps the
            sign (completeness then holds for the map's total).
    """

    def __init__(self, classifier: ZeroShotClassifier, channel_reduction: str = "abs_sum") -> None:
        super().__init__(check_classifier(classifier))
        if channel_reduction not in CHANNEL_REDUCTIONS:
            raise ValueError(f"channel_reduction must be one of {CHANNEL_REDUCTIONS}; got {channel_reduction!r}.")
        self.classifier = classifier
        self.channel_reduction = channel_reduction

    @log_usage()
    def attribute(self, inputs: Tensor, target: TargetLike = None, baselines: Optional[Tensor] = None,
                  n_steps: int = 50, internal_batch_size: Optional[int] = None) -> Tensor:
        r"""Integrated Gradients maps.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            target (int, list, Tensor, str, list[str] or None): class indices or names, or
                free texts; ``None`` uses the predicted class.
            baselines (Tensor, optional): ``(N, 3, H, W)`` or ``(1, 3, H, W)``; default zeros,
                i.e. the dataset-mean image in normalised space.
            n_steps (int): Riemann steps along the path (default 50).
            internal_batch_size (int, optional): path points per forward pass.

        Returns:
            Tensor: ``(N, 1, H, W)`` channel-reduced attributions, not normalised.
        """
        images, is_tuple = unpack_inputs(inputs)
        images = check_images(images)
        classifier, indices = resolve_to_indices(target, images, self.classifier)
        if baselines is not None and (not isinstance(baselines, Tensor) or baselines.shape[1:] != images.shape[1:]):
            raise ValueError(f"baselines must be a tensor shaped like one input image {tuple(images.shape[1:])}.")
        attributions = IntegratedGradients(classifier).attribute(
            images, baselines=baselines, target=indices, n_steps=n_steps, internal_batch_size=internal_batch_size,
        ).detach()
        if self.channel_reduction == "abs_sum":
            attributions = attributions.abs()
        maps = attributions.sum(dim=1, keepdim=True).float()
        return (maps,) if is_tuple else maps
