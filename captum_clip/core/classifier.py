"""Zero-shot CLIP classifier: the ``forward_func`` for Captum and the ``model`` for Quantus."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import require_finite
from .cache import PathLike, cached_embeddings, digest_strings
from .device import model_device
from .loading import ClipBundle
from .templates import SURGERY_TEMPLATES
from .text import prompt_ensembles, text_tower_fingerprint
from .towers import VisionTower, vision_tower

#: Free-text embeddings kept per classifier (least recently used go first); class names are always kept.
FREE_TEXT_CACHE = 1024


def _check_templates(templates) -> list:
    if isinstance(templates, str):
        raise ValueError(f"templates must be a list of strings, not a single string; wrap it: [{templates!r}].")
    templates = list(templates)
    if not templates:
        raise ValueError("templates is empty: give at least one prompt template such as 'a photo of a {}.'.")
    for template in templates:
        if not isinstance(template, str) or "{}" not in template:
            raise ValueError(f"template {template!r} must contain '{{}}' once, where the class name goes, "
                             "e.g. 'a photo of a {}.'.")
        try:
            template.format("x")
        except (IndexError, KeyError, ValueError) as error:
            raise ValueError(
                f"template {template!r} does not format with one class name ({type(error).__name__}: {error}); "
                "use exactly one '{}' and write literal braces as '{{' and '}}'."
            ) from None
    return templates


class ZeroShotClassifier(nn.Module):
    """Image -> logits over a fixed list of class names, by prompt-ensembled CLIP text embeddings.

    Each class embedding is the CLIP Surgery prompt ensemble: every template is
    filled with the class name, encoded with ``encode_text``, L2-normalised,
    averaged over templates and L2-normalised again.

    The embeddings are a buffer, so Captum's expansion of ``additional_forward_args``
    (NoiseTunnel, IG batching) never touches them, and ``target`` is a class index.

    Args:
        bundle: a :class:`~captum_clip.ClipBundle` from :func:`~captum_clip.load_clip`.
        classnames: the K class names (or free-text queries).
        templates: prompt templates with one ``{}``; default: the bundle's own templates
            (the built-in ``"shapes"`` model's training prompts) or else the 85 CLIP Surgery
            templates. Pass ``["{}"]`` to embed the names as they are.
        logit_scale: multiplier of the cosine similarities; default: the model's
            learnt ``logit_scale.exp()``. Use 1.0 for plain cosines.
        cache_dir: where the class embeddings are cached (see :func:`captum_clip.core.cache.cache_root`): a
            second classifier over the same text tower, templates and classes reads them instead of encoding
            ``templates x classes`` prompts again.
        use_cache: read and write that cache.

    Attributes:
        classnames (list[str]): the class names, in logit order.
        text_features (Tensor): ``(K, E)`` unit-norm class embeddings.
        tower (VisionTower): the vision-tower adapter of the model.
    """

    def __init__(
        self,
        bundle: ClipBundle,
        classnames: Sequence[str],
        templates: Optional[Sequence[str]] = None,
        logit_scale: Optional[float] = None,
        cache_dir: Optional[PathLike] = None,
        use_cache: bool = True,
    ):
        super().__init__()
        if not isinstance(bundle, ClipBundle):
            hint = (" Pass the bundle itself, not bundle.model." if isinstance(bundle, nn.Module) else "")
            raise TypeError(
                f"ZeroShotClassifier needs the ClipBundle returned by captum_clip.load_clip (it holds the model, "
                f"its tokenizer and its preprocessing); got {type(bundle).__name__}.{hint}"
            )
        if isinstance(classnames, str):
            raise ValueError("classnames must be a list of strings, not a single string; wrap it: [name].")
        classnames = list(classnames)
        if not classnames:
            raise ValueError("classnames is empty: give at least one class name or text query.")
        bad = [name for name in classnames if not isinstance(name, str) or not name.strip()]
        if bad:
            raise ValueError(f"classnames must be non-empty strings; got {bad[0]!r} in {classnames!r}.")
        if len(set(classnames)) != len(classnames):
            raise ValueError("classnames contains duplicates; each class needs a distinct name.")
        if templates is None:
            templates = bundle.templates or SURGERY_TEMPLATES
        templates = _check_templates(templates)
        if logit_scale is not None and (isinstance(logit_scale, bool) or not isinstance(logit_scale, (int, float))
                                        or not math.isfinite(logit_scale) or logit_scale <= 0):
            raise ValueError(f"logit_scale must be a finite positive number (e.g. 100.0, or 1.0 for plain cosines); "
                             f"got {logit_scale!r}.")

        self.bundle = bundle
        self.model = bundle.model
        self.tokenizer = bundle.tokenizer
        self.tower: VisionTower = vision_tower(bundle.model)
        self.classnames = classnames
        self.templates = templates
        self._text_cache: "OrderedDict[str, Tensor]" = OrderedDict()
        if logit_scale is None:
            logit_scale = float(bundle.model.logit_scale.detach().exp()) if hasattr(bundle.model, "logit_scale") else 1.0
            if not math.isfinite(logit_scale) or logit_scale <= 0:
                raise ValueError(f"the model's learnt logit_scale.exp() is {logit_scale!r}; pass logit_scale= "
                                 "explicitly (e.g. 100.0).")
        self.logit_scale = logit_scale
        self._cache_dir, self._use_cache = cache_dir, use_cache
        self.register_buffer("text_features", self._class_embeddings(classnames), persistent=False)
        # Mirror the model's mode without calling .eval(), which would change the user's model.
        self.training = bool(bundle.model.training)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def _ensembles(self, texts: Sequence[str]) -> Tensor:
        """Prompt-ensemble embeddings ``(len(texts), E)``: every template filled, encoded, averaged, normalised."""
        return prompt_ensembles(self.model, self.tokenizer, texts, self.templates)

    def _class_embeddings(self, classnames: Sequence[str]) -> Tensor:
        key = {"text_tower": text_tower_fingerprint(self.model, self.tokenizer),
               "templates": digest_strings(self.templates), "texts": digest_strings(classnames)}
        tensors, _ = cached_embeddings("class_embeddings", key, lambda: {"embeddings": self._ensembles(classnames)},
                                       names=("embeddings",), rows=len(classnames), cache_dir=self._cache_dir,
                                       use_cache=self._use_cache)
        embeddings = tensors["embeddings"].to(self._feature_device())
        self._text_cache.update(zip(classnames, embeddings))
        return embeddings

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Prompt-ensemble embeddings ``(len(texts), E)``, unit norm, cached per text.

        The empty string is allowed: it gives CLIP Surgery's redundant feature
        (e.g. ``'a bad photo of a .'`` averaged over the templates).
        """
        found: Dict[str, Tensor] = {}
        for text in dict.fromkeys(texts):
            if text in self._text_cache:
                self._text_cache.move_to_end(text)
                found[text] = self._text_cache[text]
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            ensembles = self._ensembles(missing)
            found.update(zip(missing, ensembles))
            self._text_cache.update(zip(missing, ensembles))
            self._evict_free_texts()
        return torch.stack([found[t] for t in texts]).to(self._feature_device())

    def _evict_free_texts(self) -> None:
        # Free-text queries (CLI, Quantus, evaluation) would otherwise grow the cache without bound.
        classes = set(getattr(self, "classnames", ()))
        free = [t for t in self._text_cache if t not in classes]
        for text in free[:max(len(free) - FREE_TEXT_CACHE, 0)]:
            del self._text_cache[text]

    def _feature_device(self) -> torch.device:
        return model_device(self.model)

    @property
    def redundancy(self) -> Tensor:
        """CLIP Surgery's redundant feature: the empty-string ensemble ``(1, E)``."""
        return self.encode_text([""])

    def with_classes(self, classnames: Sequence[str]) -> "ZeroShotClassifier":
        """A classifier over other class names that shares this one's model, templates and scale."""
        return ZeroShotClassifier(self.bundle, classnames, self.templates, self.logit_scale, self._cache_dir,
                                  self._use_cache)

    def class_index(self, name: str) -> Optional[int]:
        try:
            return self.classnames.index(name)
        except ValueError:
            return None

    def image_features(self, images: Tensor) -> Tensor:
        """Unit-norm pooled image embeddings ``(N, E)`` at any input size."""
        return F.normalize(require_finite(self.tower.encode(images).float(), "the image embedding"), dim=-1)

    def embedding_logits(self, embeddings: Tensor, text_features: Optional[Tensor] = None) -> Tensor:
        """Logits ``(N, K)`` of unit-norm image embeddings ``(N, E)``: ``logit_scale`` x cosine with the class
        embeddings (or with other unit-norm ``text_features`` ``(K, E)``)."""
        text = self.text_features if text_features is None else text_features
        return self.logit_scale * embeddings @ text.to(embeddings.device).T

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(N, K)`` = ``logit_scale`` x cosine(image, class embedding)."""
        return self.embedding_logits(self.image_features(images))

    def extra_repr(self) -> str:
        return f"classes={self.num_classes}, templates={len(self.templates)}, tower={self.tower.kind}"
