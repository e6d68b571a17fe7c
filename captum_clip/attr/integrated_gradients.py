"""Integrated Gradients through the zero-shot classifier, reduced to one map per image."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from captum.attr import GradientAttribution, IntegratedGradients
from captum.log import log_usage
from torch import Tensor

from ..base.method import ClipAttribution
from ..base.targets import TargetLike
from ..core.classifier import ZeroShotClassifier
from ..errors import require_finite

CHANNEL_REDUCTIONS = ("abs_sum", "sum")

#: Path points per forward-backward pass by default: bounds memory for any ``N x n_steps``.
DEFAULT_INTERNAL_BATCH_SIZE = 16

BaselineLike = Union[None, Tensor, float]


class CLIPIntegratedGradients(ClipAttribution, GradientAttribution):
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

    map_normalisation = "none: attributions in logit units, summed over RGB (absolute values by default)"
    display_outlier_perc = 2.0  # gradient maps: a few extreme pixels would otherwise flatten the picture

    def __init__(self, classifier: ZeroShotClassifier, channel_reduction: str = "abs_sum") -> None:
        ClipAttribution.__init__(self, classifier)
        GradientAttribution.__init__(self, classifier)
        if channel_reduction not in CHANNEL_REDUCTIONS:
            raise ValueError(f"channel_reduction must be one of {CHANNEL_REDUCTIONS}; got {channel_reduction!r}.")
        self.channel_reduction = channel_reduction

    @property
    def signed_maps(self) -> bool:
        # Only the "sum" reduction keeps the sign; "abs_sum" (the default) maps are magnitudes.
        return self.channel_reduction == "sum"

    @property
    def multiplies_by_inputs(self) -> bool:
        # Captum's IG multiplies the path-averaged gradients by (inputs - baselines).
        return True

    def has_convergence_delta(self) -> bool:
        return True

    @log_usage()
    def attribute(self, inputs: Tensor, target: TargetLike = None, baselines: BaselineLike = None,
                  n_steps: int = 50, internal_batch_size: Optional[int] = DEFAULT_INTERNAL_BATCH_SIZE,
                  return_convergence_delta: bool = False, additional_forward_args: None = None):
        r"""Integrated Gradients maps.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            target (int, list, Tensor, str, list[str] or None): class indices or names, or
                free texts; ``None`` uses the predicted class.
            baselines (Tensor or float, optional): ``(N, 3, H, W)``, ``(1, 3, H, W)`` or ``(3, H, W)``
                tensors, or one number for every pixel; default zeros, i.e. the dataset-mean image in
                normalised space.
            n_steps (int): Riemann steps along the path (default 50).
            internal_batch_size (int, optional): path points per forward-backward pass (default 16), which
                bounds memory at 16 images' activations whatever ``N x n_steps`` is; None evaluates all
                ``N x n_steps`` points at once (Captum's default; fast, but ``N x n_steps`` images' activations).
            return_convergence_delta (bool): also return Captum's completeness error per image,
                ``sum(attributions over RGB) - (logit(x) - logit(baseline))``, computed on the per-channel
                attributions before the channel reduction.
            additional_forward_args: refused with a ``ValueError`` unless None (the classifier's forward takes
                only images).

        Returns:
            Tensor (or a 1-tuple if ``inputs`` was a tuple): ``(N, 1, H, W)`` channel-reduced
                attributions, not normalised; with ``return_convergence_delta=True``, ``(maps, delta)``
                with ``delta`` of shape ``(N,)``.
        """
        images, is_tuple, device = self._inputs(inputs, additional_forward_args, gradients=True)
        _check_steps(n_steps, internal_batch_size)
        baselines = _check_baselines(baselines, images)
        classifier, indices = self.logit_targets(self.resolve_targets(target, images.shape[0]), images)
        attributions, delta = self._integrate(classifier, images, baselines, indices, n_steps, internal_batch_size,
                                              return_convergence_delta)
        attributions = require_finite(attributions.detach(), "CLIPIntegratedGradients: the attributions")
        if self.channel_reduction == "abs_sum":
            attributions = attributions.abs()
        maps = self._outputs(attributions.sum(dim=1, keepdim=True), images, device, is_tuple)
        return (maps, delta.detach().to(device)) if return_convergence_delta else maps


    @staticmethod
    def _integrate(classifier, images: Tensor, baselines, indices: Tensor, n_steps: int,
                   internal_batch_size: Optional[int], return_convergence_delta: bool):
        # Captum's internal batching holds all N inputs in every chunk (it falls back to N when the chunk is
        # smaller), so images go in groups of at most internal_batch_size: the bound holds for any N.
        integrated = IntegratedGradients(classifier)
        group = images.shape[0] if internal_batch_size is None else internal_batch_size
        parts, deltas = [], []
        for start in range(0, images.shape[0], group):
            part = slice(start, start + group)
            result = integrated.attribute(
                images[part], baselines=baselines[part] if isinstance(baselines, Tensor) else baselines,
                target=indices[part], n_steps=n_steps, internal_batch_size=internal_batch_size,
                return_convergence_delta=return_convergence_delta,
            )
            attributions, delta = result if return_convergence_delta else (result, None)
            parts.append(attributions.detach())
            deltas.append(delta)
        return torch.cat(parts), (torch.cat(deltas) if return_convergence_delta else None)


def _check_steps(n_steps, internal_batch_size) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer (e.g. 50); got {n_steps!r}.")
    if internal_batch_size is not None and (isinstance(internal_batch_size, bool)
                                            or not isinstance(internal_batch_size, int) or internal_batch_size < 1):
        raise ValueError(f"internal_batch_size must be a positive integer or None; got {internal_batch_size!r}.")


def _check_baselines(baselines: BaselineLike, images: Tensor) -> Union[Tensor, float, None]:
    if baselines is None:
        return None
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        if not math.isfinite(baselines):
            raise ValueError(f"a number baseline must be finite; got {baselines!r}.")
        return float(baselines)
    if not isinstance(baselines, Tensor):
        raise ValueError(f"baselines must be None, a number or a tensor shaped like the inputs; got "
                         f"{type(baselines).__name__}.")
    if baselines.dim() == 3:
        baselines = baselines.unsqueeze(0)
    if baselines.dim() != 4 or baselines.shape[1:] != images.shape[1:] or baselines.shape[0] not in (1, images.shape[0]):
        raise ValueError(
            f"baselines of shape {tuple(baselines.shape)} do not fit inputs of shape {tuple(images.shape)}: give "
            f"(N, 3, H, W), (1, 3, H, W) or (3, H, W) with the inputs' channels and size."
        )
    if not baselines.is_floating_point() or not torch.isfinite(baselines).all():
        raise ValueError("baselines must be a finite floating-point tensor, normalised like the inputs.")
    return baselines.to(images.device, images.dtype).expand_as(images)
