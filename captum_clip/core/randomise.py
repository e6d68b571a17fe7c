"""A copy of a bundle whose vision tower has fresh random weights: the sanity row of every evaluation.

Adebayo et al. (2018) showed that some saliency methods barely change when the model's weights are randomised;
on the generated scenes a random-weights ViT already scores well on some localisation metrics. An evaluation
table therefore reports each method on this copy too. The text tower keeps its weights, so the class embeddings
(and the targets) are the trained model's.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .loading import ClipBundle


def _reinitialise(module: nn.Module) -> None:
    # Modules that know their own initialisation use it; parameters registered directly on a module without
    # one (class and positional embeddings, projections) get open_clip's scale, width ** -0.5.
    reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
    if callable(reset):
        reset()
        return
    for parameter in module._parameters.values():
        if parameter is not None:
            with torch.no_grad():
                parameter.normal_(std=parameter.shape[-1] ** -0.5)


def randomised_vision_copy(bundle: ClipBundle, seed: int = 0) -> ClipBundle:
    """A deep copy of ``bundle`` with every vision-tower weight drawn again, reproducibly from ``seed``.

    The caller's model is not touched (the copy is made first) and the global random state is restored.

    Returns:
        A :class:`ClipBundle` named ``"<name> (random weights)"`` on the same device, in eval mode.
    """
    model = copy.deepcopy(bundle.model)
    devices = [model.logit_scale.device] if model.logit_scale.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in model.visual.modules():
            _reinitialise(module)
    model.eval()
    return ClipBundle(model, bundle.preprocess, bundle.tokenizer, f"{bundle.name} (random weights)",
                      pretrained=None, templates=bundle.templates)
