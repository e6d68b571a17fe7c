"""A copy of a bundle whose vision tower has fresh random weights: the sanity row of every evaluation.

Adebayo et al. (2018) showed that some saliency methods barely change when the model's weights are randomised;
on the generated scenes a random-weights ViT already scores well on some localisation metrics. An evaluation
table therefore reports each method on this copy too. The text tower keeps its weights, so the class embeddings
(and the targets) are the trained model's.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from .device import model_device
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
    """A copy of ``bundle`` with every vision-tower weight drawn again, reproducibly from ``seed``.

    The vision tower is copied; the text tower's tensors are shared with the original (they are only read), so
    the copy costs the vision tower's memory. The caller's model is not touched and the global random state is
    restored.

    Returns:
        A :class:`ClipBundle` named ``"<name> (random weights)"`` on the same device and precision, in eval mode.
    """
    shared = {id(t): t for name, t in bundle.model.state_dict(keep_vars=True).items() if not name.startswith("visual.")}
    model = copy.deepcopy(bundle.model, memo=dict(shared))
    device = model_device(model)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in model.visual.modules():
            _reinitialise(module)
    model.eval()
    return dataclasses.replace(bundle, model=model, name=f"{bundle.name} (random weights)", pretrained=None)
