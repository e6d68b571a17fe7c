"""Method registry: one name per attribution method, shared by the CLI, the figures and the Quantus adapters."""

from __future__ import annotations

from typing import Callable, Dict, Sequence

from torch import Tensor
from captum.attr import Attribution

from .attr import CLIPGradCAM, CLIPIntegratedGradients, RawCLIPSimilarity, SurgeryCAM
from .core.classifier import ZeroShotClassifier
from .mutual import MutualConceptAttribution


def _mutual(classifier: ZeroShotClassifier, descriptors=None, **options) -> MutualConceptAttribution:
    # descriptors=None: the bank generated from WordNet for the classifier's class names, except for the shipped
    # scene model, which only knows colour and shape words: it gets the scene bank, with u = a class's share of it.
    if descriptors is None and classifier.bundle.name == "shapes":
        from .mutual import scene_descriptor_bank

        descriptors = scene_descriptor_bank()
        options = {"u": 8, **options}
    return MutualConceptAttribution(classifier, descriptors, **options)


def _convis(classifier: ZeroShotClassifier, **options) -> Attribution:
    # Imported here: ConVis needs nltk and WordNet, which the other methods do not.
    from .convis.attribution import ConVisAttribution
    from .shipped.presets import is_scene_classnames, scene_method_options

    # Scene classes ("red star") get the scene vocabulary and the scene class -> synset table; the shipped scene
    # model, which knows shape and colour words but never saw a gloss, also gets lemma texts. Caller's options win.
    shipped = classifier.bundle.name == "shapes"
    if shipped or is_scene_classnames(classifier.classnames):
        options = {**scene_method_options(shipped_model=shipped), **options}
    return ConVisAttribution(classifier, **options)


#: name -> factory(classifier, **options)
METHODS: Dict[str, Callable[..., Attribution]] = {
    "surgery": SurgeryCAM,
    "clip": RawCLIPSimilarity,
    "gradcam": CLIPGradCAM,
    "ig": CLIPIntegratedGradients,
    "mutual": _mutual,
    "convis": _convis,
}

#: Human-readable names for tables and figures.
DISPLAY_NAMES = {"surgery": "CLIP Surgery", "clip": "raw CLIP", "gradcam": "Grad-CAM", "ig": "Integrated Gradients",
                 "mutual": "Mutual Knowledge", "convis": "ConVis"}


def build_method(name: str, classifier: ZeroShotClassifier, **options) -> Attribution:
    """Construct the method registered as ``name`` for ``classifier``."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose from {sorted(METHODS)}.")
    return METHODS[name](classifier, **options)


def maps_for_targets(method: Attribution, image: Tensor, targets: Sequence, **attribute_kwargs) -> Tensor:
    """One map per target for a single image ``(1, 3, H, W)``: ``(len(targets), H, W)``.

    The image is batched once per target, so every method (forward-only or
    gradient) answers all targets in one ``attribute`` call.
    """
    return method.attribute(image.expand(len(targets), -1, -1, -1), target=list(targets), **attribute_kwargs)[:, 0]
