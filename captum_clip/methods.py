"""Method registry: one name per attribution method, shared by the CLI, the figures and the Quantus adapters."""

from __future__ import annotations

from typing import Callable, Dict

from torch import Tensor
from captum.attr import Attribution

from .attr import CLIPGradCAM, CLIPIntegratedGradients, RawCLIPSimilarity, SurgeryCAM
from .classifier import ZeroShotClassifier


def _surgery(classifier: ZeroShotClassifier, redundancy: str = "auto", **options) -> SurgeryCAM:
    # A single query has no label set to estimate the redundancy from.
    if redundancy == "auto":
        redundancy = "labelset" if classifier.num_classes > 1 else "empty"
    return SurgeryCAM(classifier, redundancy=redundancy, **options)


#: name -> factory(classifier, **options)
METHODS: Dict[str, Callable[..., Attribution]] = {
    "surgery": _surgery,
    "clip": RawCLIPSimilarity,
    "gradcam": CLIPGradCAM,
    "ig": CLIPIntegratedGradients,
}

#: Human-readable names for tables and figures.
DISPLAY_NAMES = {"surgery": "CLIP Surgery", "clip": "raw CLIP", "gradcam": "Grad-CAM", "ig": "Integrated Gradients"}


def build_method(name: str, classifier: ZeroShotClassifier, **options) -> Attribution:
    """Construct the method registered as ``name`` for ``classifier``."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose from {sorted(METHODS)}.")
    return METHODS[name](classifier, **options)


def maps_per_class(method: Attribution, image: Tensor) -> Tensor:
    """Maps of every class of the method's classifier for one image ``(1, 3, H, W)``: ``(K, H, W)``.

    Forward-only methods do it in one pass; gradient methods batch the image once per class.
    """
    if hasattr(method, "attribute_all"):
        return method.attribute_all(image)[0]
    n_classes = method.classifier.num_classes
    return method.attribute(image.expand(n_classes, -1, -1, -1), target=list(range(n_classes)))[:, 0]
