"""CLIP Surgery and the CLIP-correct baselines (raw CLIP, Grad-CAM, Integrated Gradients)."""

from .gradcam import CLIPGradCAM
from .integrated_gradients import CLIPIntegratedGradients
from .raw_clip import RawCLIPSimilarity
from .surgery import SurgeryCAM

__all__ = ["SurgeryCAM", "RawCLIPSimilarity", "CLIPGradCAM", "CLIPIntegratedGradients"]
