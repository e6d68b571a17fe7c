"""Grad-CAM for CLIP towers, on the layer where it is not degenerate."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import GradientAttribution, LayerAttribution
from captum.log import log_usage
from torch import Tensor

from ..base.method import ClipAttribution
from ..base.targets import TargetLike
from ..core.classifier import ZeroShotClassifier
from ..base.inputs import gradient_ready
from ..errors import require_finite


class CLIPGradCAM(ClipAttribution, LayerAttribution, GradientAttribution):
    r"""Grad-CAM (Selvaraju et al., ICCV 2017) of a zero-shot CLIP logit.

    ViT: the activation is the *input* of the last block's ``ln_1`` reshaped to the
    patch grid. The last block's output would give all-zero patch gradients (only
    the CLS token is pooled), and Captum's ``LayerGradCam`` on an ``(N, L, D)``
    token tensor averages over D and sums over tokens, giving ``(N, 1, D)`` without
    an error. ResNet: the output of ``layer4``.

    The channel weights are the spatial means of the gradients; the map is
    ``ReLU(sum_c w_c A_c)`` (``relu_attributions=True``, the paper's form).

    Args:
        classifier (ZeroShotClassifier): the forward function (logits ``(N, K)``).
    """

    map_normalisation = "none: ReLU(sum_c w_c A_c) in logit units, bilinearly upsampled"
    display_outlier_perc = 2.0  # gradient maps: a few extreme cells would otherwise flatten the picture

    def __init__(self, classifier: ZeroShotClassifier) -> None:
        ClipAttribution.__init__(self, classifier)
        LayerAttribution.__init__(self, classifier, classifier.tower.gradcam_layer)
        GradientAttribution.__init__(self, classifier)

    @log_usage()
    def attribute(self, inputs: Tensor, target: TargetLike = None, relu_attributions: bool = True,
                  interpolate: bool = True, additional_forward_args: None = None) -> Tensor:
        r"""Grad-CAM maps.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            target (int, list, Tensor, str, list[str] or None): class indices or names of
                the classifier, or free texts (a classifier over those texts sharing the
                model is used); ``None`` uses the predicted class.
            relu_attributions (bool): apply ReLU to the map (default, as in the paper).
            interpolate (bool): upsample to the input size (default) or return the grid.
            additional_forward_args: refused with a ``ValueError`` unless None (the classifier's forward takes
                only images).

        Returns:
            Tensor: ``(N, 1, H, W)`` (or ``(N, 1, gh, gw)``), not normalised.
        """
        images, is_tuple, device = self._inputs(inputs, additional_forward_args, gradients=True)
        classifier, indices = self.logit_targets(self.resolve_targets(target, images.shape[0]), images)
        grid = self.tower.grid_shape(tuple(images.shape[-2:]))
        gradients, activations = compute_layer_gradients_and_eval(
            classifier, self.layer, images, indices, attribute_to_layer_input=self.tower.gradcam_on_input,
        )
        gradients = self.tower.activation_to_grid(require_finite(gradients[0], "CLIPGradCAM: the layer gradients"), grid)
        activations = self.tower.activation_to_grid(require_finite(activations[0], "CLIPGradCAM: the layer activations"),
                                                    grid)
        weights = gradients.mean(dim=(-2, -1), keepdim=True)
        cam = (weights * activations).sum(dim=1, keepdim=True).detach().float()
        if relu_attributions:
            cam = F.relu(cam)
        return self._outputs(cam, images, device, is_tuple, interpolate)

    def _attribute_all(self, images: Tensor, targets: list, relu_attributions: bool = True,
                       interpolate: bool = True) -> Tensor:
        # The K logits share one forward: the network runs once up to the Grad-CAM layer, its rest (with CLS
        # pooling, only the CLS row of the last block) once more with gradients, and one batched backward gives
        # every target's gradient (torch.autograd.grad with is_grads_batched).
        images = gradient_ready(images, type(self).__name__)
        resolved = self.resolve_targets(targets, len(targets))
        classifier = self.classifier
        if resolved.texts is not None:
            text = classifier.encode_text(resolved.texts)
        else:
            text = classifier.text_features[resolved.indices.to(classifier.text_features.device)]
        with torch.no_grad():
            activation = self.tower.gradcam_activation(images)
        activation = require_finite(activation.detach(), "CLIPGradCAM: the layer activations").requires_grad_(True)
        with torch.enable_grad():
            pooled = require_finite(self.tower.gradcam_head(activation).float(), "the image embedding")
            logits = classifier.embedding_logits(F.normalize(pooled, dim=-1), text)
            k = len(targets)
            basis = torch.eye(k, device=logits.device, dtype=logits.dtype)[:, None, :].expand(k, *logits.shape)
            (gradients,) = torch.autograd.grad(logits, activation, grad_outputs=basis, is_grads_batched=True)
        grid = self.tower.grid_shape(tuple(images.shape[-2:]))
        require_finite(gradients, "CLIPGradCAM: the layer gradients")
        activations = self.tower.activation_to_grid(activation.detach(), grid)  # (B, C, gh, gw)
        gradients = self.tower.activation_to_grid(gradients.flatten(0, 1), grid).unflatten(0, (k, -1))
        weights = gradients.mean(dim=(-2, -1))  # (K, B, C)
        cam = torch.einsum("kbc,bchw->bkhw", weights, activations).float()
        if relu_attributions:
            cam = F.relu(cam)
        return self._outputs(cam, images, images.device, False, interpolate)
