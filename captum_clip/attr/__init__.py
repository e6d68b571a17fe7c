"""Attribution methods for CLIP, as Captum ``Attribution`` subclasses."""

from .gradcam import CLIPGradCAM
from .integrated_gradients import CLIPIntegratedGradients
from .raw_clip import RawCLIPSimilarity
from .surgery import SurgeryCAM, labelset_feature_surgery, redundancy_feature_surgery

__all__ = [
    "SurgeryCAM",
    "RawCLIPSimilarity",
    "CLIPGradCAM",
    "CLIPIntegratedGradients",
    "labelset_feature_surgery",
    "redundancy_feature_surgery",
]
