"""captum_clip: explain open_clip CLIP models inside Captum and Quantus.

The public face: the six attribution methods, the zero-shot classifier, the loader, the method registry and the
error classes. ``ConVisAttribution`` is loaded on first use, since it needs nltk and WordNet, which the other
methods do not.
"""

from .attr import (
    CLIPGradCAM,
    CLIPIntegratedGradients,
    RawCLIPSimilarity,
    SurgeryCAM,
)
from .core import ClipBundle, ZeroShotClassifier, load_clip
from .errors import (CheckpointError, DegenerateMapWarning, NonFiniteError, WeightsUnavailableError,
                     WordNetNotFoundError)
from .methods import METHODS, build_method
from .mutual import MutualConceptAttribution

__version__ = "0.1.0"

#: Names imported on first access: name -> (module, attribute).
_LAZY = {
    "ConVisAttribution": (".convis.attribution", "ConVisAttribution"),
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
    "DegenerateMapWarning",
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
