"""The CLIP contract: the only package that knows open_clip's layouts.

* :mod:`.loading`: :func:`load_clip` and :class:`ClipBundle` (model, preprocess, tokenizer, device, the
  preprocessing's normalisation, resize mode and input size).
* :mod:`.towers`: the vision-tower adapters (tokens, q/k/v, Grad-CAM layer) and their geometry.
* :mod:`.text`: chunked text encoding and the text tower's fingerprint.
* :mod:`.cache`: the one on-disk cache of text embeddings.
* :mod:`.classifier`: :class:`ZeroShotClassifier`, the forward function every method explains.
"""

from .classifier import ZeroShotClassifier
from .loading import ClipBundle, load_clip

__all__ = ["load_clip", "ClipBundle", "ZeroShotClassifier"]
