"""Method registry: one name per attribution method, shared by the CLI, the figures and the Quantus adapters.

Every entry is the method's own constructor (ConVis behind a lazy import), and the constructors take their
defaults from :mod:`captum_clip.defaults`, so ``build_method(name, c)`` explains exactly as the class does.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

from torch import Tensor
from captum.attr import Attribution

from .attr import CLIPGradCAM, CLIPIntegratedGradients, RawCLIPSimilarity, SurgeryCAM
from .core.classifier import ZeroShotClassifier
from .mutual import MutualConceptAttribution


def _convis(classifier: ZeroShotClassifier, **options) -> Attribution:
    return method_class("convis")(classifier, **options)


#: name -> factory(classifier, **options)
METHODS: Dict[str, Callable[..., Attribution]] = {
    "surgery": SurgeryCAM,
    "clip": RawCLIPSimilarity,
    "gradcam": CLIPGradCAM,
    "ig": CLIPIntegratedGradients,
    "mutual": MutualConceptAttribution,
    "convis": _convis,
}

#: Human-readable names for tables and figures.
DISPLAY_NAMES = {"surgery": "CLIP Surgery", "clip": "raw CLIP", "gradcam": "Grad-CAM", "ig": "Integrated Gradients",
                 "mutual": "Mutual Knowledge", "convis": "ConVis"}


def method_class(name: str) -> type:
    """The class registered as ``name`` (ConVis imported on first use)."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose from {sorted(METHODS)}.")
    if name == "convis":
        # Imported on first use: ConVis needs nltk and WordNet, which the other methods do not.
        from .convis.attribution import ConVisAttribution

        return ConVisAttribution
    return METHODS[name]


def build_method(name: str, classifier: ZeroShotClassifier, **options) -> Attribution:
    """Construct the method registered as ``name`` for ``classifier``."""
    return method_class(name)(classifier, **options)


def maps_for_targets(method: Attribution, image: Tensor, targets: Sequence, **attribute_kwargs) -> Tensor:
    """One map per target for a single image ``(1, 3, H, W)``: ``(len(targets), H, W)``.

    Through the method's ``attribute_all``, so each method answers all targets in its cheapest way (one pass for
    CLIP Surgery and raw CLIP, one shared forward for Grad-CAM, one window sweep for ConVis).
    """
    return method.attribute_all(image, targets=list(targets), **attribute_kwargs)[0]
