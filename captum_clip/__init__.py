"""captum_clip: explain open_clip CLIP models inside Captum and Quantus."""

from .attr import (
    CLIPGradCAM,
    CLIPIntegratedGradients,
    RawCLIPSimilarity,
    SurgeryCAM,
)
from .classifier import ZeroShotClassifier
from .loading import ClipBundle, WeightsUnavailableError, load_clip
from .mutual import MutualConceptAttribution

__version__ = "0.1.0"

__all__ = [
    "load_clip",
    "ClipBundle",
    "WeightsUnavailableError",
    "ZeroShotClassifier",
    "SurgeryCAM",
    "RawCLIPSimilarity",
    "CLIPGradCAM",
    "CLIPIntegratedGradients",
    "MutualConceptAttribution",
]
