"""captum_clip: explain open_clip CLIP models inside Captum and Quantus.

The public face: the six attribution methods, the zero-shot classifier, the loader, the method registry and the
error classes. ``ConVisAttribution`` and ``WordNetNotFoundError`` are loaded on first use, since they need nltk
and WordNet, which the other methods do not.
"""

from .attr import (
    CLIPGradCAM,
    CLIPIntegratedGradients,
    RawCLIPSimilarity,
    SurgeryCAM,
)
from .errors import NonFiniteError
from .classifier import ZeroShotClassifier
from .loading import CheckpointError, ClipBundle, WeightsUnavailableError, load_clip
from .methods import METHODS, build_method
from .mutual import MutualConceptAttribution

__version__ = "0.1.0"

#: Names imported on first access: name -> (module, attribute).
_LAZY = {
    "ConVisAttribution": (".convis.attribution", "ConVisAttribution"),
    "WordNetNotFoundError": (".convis.wordnet", "WordNetNotFoundError"),
}

__all__ = [
    "load_clip",
    "ClipBundle",
    "ZeroShotClassifier",
    "SurgeryCAM",
    "ConVisAttribution",
    "MutualConceptAttribution",
    "RawCLIPSimilarity",
    "CLIPGradCAM",
    "CLIPIntegratedGradients",
    "METHODS",
    "build_method",
    "WeightsUnavailableError",
    "CheckpointError",
    "WordNetNotFoundError",
    "NonFiniteError",
]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        module, attribute = _LAZY[name]
        value = getattr(import_module(module, __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
