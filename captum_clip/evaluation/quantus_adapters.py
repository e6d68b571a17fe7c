"""``explain_func`` factories in Quantus's contract for every method of :data:`captum_clip.methods.METHODS`.

Quantus calls ``explain_func(model=..., inputs=..., targets=..., **explain_func_kwargs)``
with the *unwrapped* model (here a :class:`~captum_clip.ZeroShotClassifier`), numpy
``(N, 3, H, W)`` inputs and ``(N,)`` targets, injects ``device=`` when the metric is
called with one, and asserts on the result: an ``np.ndarray`` with the inputs' batch
size and rank, and, over the whole batch, not all zero, not all one, not a single
repeated value, not all negative.

Degenerate maps
---------------
A map whose values are all equal (e.g. a ReLU'd Grad-CAM with no positive evidence is
all zero) ranks no pixel above another. Quantus either rejects it (if the whole batch is
degenerate) or, worse, silently ranks its pixels in raster order (``argsort`` of ties),
which favours whatever lies at the top-left. The default policy ``on_degenerate="uniform"``
replaces such a map by the uniform map ``1e-6`` with a seeded relative jitter of at most
``1e-3``: mass-based scores are within 0.1 % of the uniform map's, ties are broken at
random instead of by position, so ranking scores are at chance level, like the
``random`` baseline. The jitter is seeded by the image content (and ``seed``), so the
same image gets the same map in any batch and on every call, and the replacement is
counted on the explain func (``n_degenerate`` of ``n_maps``) so reports can state it.
``"raise"`` refuses degenerate maps instead; ``"keep"`` returns them unchanged.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from torch import nn

from ..core.classifier import ZeroShotClassifier
from ..core.device import model_device
from ..methods import METHODS, build_method

__all__ = [
    "QuantusExplainFunc",
    "RandomExplainFunc",
    "make_explain_func",
    "make_random_explain_func",
    "DEGENERATE_LEVEL",
    "DEGENERATE_JITTER",
]

#: Value of the uniform map that replaces a degenerate one: far below any real map's
#: maximum, so it never sets Quantus's batch-wide normalisation constant.
DEGENERATE_LEVEL = 1e-6
#: Largest relative jitter added to that map to break ties (float32 resolves ~16k levels).
DEGENERATE_JITTER = 1e-3
ON_DEGENERATE = ("uniform", "raise", "keep")

#: Keyword arguments that Quantus itself adds to every explain_func call and that no method takes:
#: ``quantus.evaluate`` passes ``method=<the xai_methods key>`` (for its own ``quantus.explain``).
QUANTUS_ONLY_KWARGS = ("method",)


def _class_indices(targets, n_images: int, device) -> torch.Tensor:
    """Quantus's targets ``(N,)`` (often a float array) as class indices; fractional or non-finite ones refused."""
    values = np.asarray(targets)
    if values.dtype.kind not in "biuf" or values.size == 0:
        raise ValueError(f"targets must be integer class indices; got {values.dtype} array {values!r}.")
    if values.dtype.kind == "f":
        bad = values[~np.isfinite(values) | (values != np.round(values))]
        if bad.size:
            raise ValueError(f"targets must be integer class indices; got {float(bad.reshape(-1)[0])!r} "
                             f"(in {values.reshape(-1).tolist()}). "
                             "A fractional or non-finite target names no class.")
    indices = torch.as_tensor(values.astype(np.int64), device=device).reshape(-1)
    if indices.numel() == 1 and n_images > 1:
        indices = indices.expand(n_images)
    return indices


def _image_rng(seed: int, image: np.ndarray) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the image's bytes (not on batch position)."""
    return np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(image, dtype=np.float32).tobytes())])


class QuantusExplainFunc:
    """Quantus ``explain_func`` for one registered method (see :func:`make_explain_func`).

    Attributes:
        method_name (str): key in :data:`~captum_clip.methods.METHODS`.
        method_options (dict): constructor options of the method.
        attribute_kwargs (dict): ``attribute()`` options (e.g. ``n_steps`` for ``"ig"``).
        on_degenerate (str): ``"uniform"``, ``"raise"`` or ``"keep"`` (module docstring).
        seed (int): seed of the tie-breaking jitter.
        n_maps (int): maps returned so far.
        n_degenerate (int): of those, maps that were constant (replaced or kept).
    """

    def __init__(self, method_name: str, method_options: Optional[Dict[str, Any]] = None,
                 attribute_kwargs: Optional[Dict[str, Any]] = None, on_degenerate: str = "uniform",
                 seed: int = 0) -> None:
        if method_name not in METHODS:
            raise ValueError(f"Unknown method {method_name!r}; choose from {sorted(METHODS)} or 'random'.")
        if on_degenerate not in ON_DEGENERATE:
            raise ValueError(f"on_degenerate must be one of {ON_DEGENERATE}; got {on_degenerate!r}.")
        self.method_name = method_name
        self.method_options = dict(method_options or {})
        self.attribute_kwargs = dict(attribute_kwargs or {})
        self.on_degenerate = on_degenerate
        self.seed = seed
        self.n_maps = 0
        self.n_degenerate = 0
        self.__name__ = f"explain_{method_name}"

    def __repr__(self) -> str:
        return (f"QuantusExplainFunc({self.method_name!r}, method_options={self.method_options}, "
                f"attribute_kwargs={self.attribute_kwargs}, on_degenerate={self.on_degenerate!r})")

    def __call__(self, model: nn.Module, inputs: np.ndarray, targets: np.ndarray,
                 device: Union[str, torch.device, None] = None, **kwargs) -> np.ndarray:
        """Attribution maps of ``model`` for ``inputs`` and ``targets``.

        The method is built from the ``model`` of this call every time (construction is
        cheap; the class embeddings live in the classifier): MPRT passes a deep-copied,
        progressively randomised classifier that must be the one explained.

        Args:
            model: the :class:`~captum_clip.ZeroShotClassifier` Quantus explains.
            inputs: images ``(N, 3, H, W)`` (any float dtype; cast to float32).
            targets: class indices ``(N,)`` (a scalar applies to every image).
            device: where to run; inputs are moved there (the model must already be
                there: Quantus never moves models). Default: the model's device.
            **kwargs: ``attribute()`` options for this call, over ``attribute_kwargs``. The keys Quantus
                adds on its own (:data:`QUANTUS_ONLY_KWARGS`: ``quantus.evaluate``'s ``method=<name>``) are dropped.

        Returns:
            np.ndarray: ``(N, 1, H, W)`` float32 maps.

        Raises:
            TypeError: ``model`` is not a ZeroShotClassifier.
            ValueError: a fractional or non-finite target, a map that is not finite, or a constant map with
                ``on_degenerate="raise"``.
        """
        if not isinstance(model, ZeroShotClassifier):
            raise TypeError(f"explain_func needs the ZeroShotClassifier as model; got {type(model).__name__}.")
        device = torch.device(device) if device is not None else model_device(model)
        # ascontiguousarray: torch rejects negative-stride views (e.g. x[::-1]).
        images = torch.as_tensor(np.ascontiguousarray(inputs, dtype=np.float32)).to(device)
        indices = _class_indices(targets, images.shape[0], device)
        kwargs = {key: value for key, value in kwargs.items() if key not in QUANTUS_ONLY_KWARGS}
        method = build_method(self.method_name, model, **self.method_options)
        with torch.enable_grad():
            maps = method.attribute(images, target=indices, **{**self.attribute_kwargs, **kwargs})
        maps = maps.detach().float().cpu().numpy()
        if maps.shape != (images.shape[0], 1, *images.shape[-2:]):
            raise ValueError(f"method {self.method_name!r} returned {maps.shape}; expected "
                             f"{(images.shape[0], 1, *images.shape[-2:])}.")
        if not np.isfinite(maps).all():
            raise ValueError(f"method {self.method_name!r} returned non-finite attributions.")
        return self._handle_degenerate(maps, np.asarray(inputs))

    def _handle_degenerate(self, maps: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        flat = maps.reshape(len(maps), -1)
        degenerate = np.flatnonzero(flat.max(axis=1) == flat.min(axis=1))
        self.n_maps += len(maps)
        self.n_degenerate += len(degenerate)
        if len(degenerate) and self.on_degenerate == "raise":
            raise ValueError(f"method {self.method_name!r} returned {len(degenerate)} constant map(s) "
                             f"(images {degenerate.tolist()}): no pixel ranks above another.")
        if self.on_degenerate == "uniform":
            for i in degenerate:
                jitter = _image_rng(self.seed, inputs[i]).random(maps.shape[1:], dtype=np.float32)
                maps[i] = DEGENERATE_LEVEL * (1 + DEGENERATE_JITTER * jitter)
        return np.ascontiguousarray(maps, dtype=np.float32)


class RandomExplainFunc:
    """The chance-level baseline: seeded uniform ``[0, 1)`` noise maps, independent of the model.

    Each image's map depends only on ``seed`` and the image content, so it is the same in
    any batch, on every call, and for every model (MPRT should therefore flag it: the
    explanation does not change when the model is randomised).

    Attributes:
        seed (int): the seed.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.__name__ = "explain_random"

    def __repr__(self) -> str:
        return f"RandomExplainFunc(seed={self.seed})"

    def __call__(self, model: Optional[nn.Module], inputs: np.ndarray, targets: np.ndarray,
                 device: Union[str, torch.device, None] = None, **kwargs) -> np.ndarray:
        """Noise maps ``(N, 1, H, W)`` float32 for ``inputs`` ``(N, C, H, W)``; other arguments are ignored."""
        inputs = np.asarray(inputs)
        return np.stack([_image_rng(self.seed, image).random((1, *inputs.shape[-2:]), dtype=np.float32)
                         for image in inputs])


def make_explain_func(method_name: str, *, attribute_kwargs: Optional[Dict[str, Any]] = None,
                      on_degenerate: str = "uniform", seed: int = 0, **method_options):
    """A Quantus ``explain_func`` for a method of the registry, or the random baseline.

    Works for every name in :data:`captum_clip.methods.METHODS`, including methods
    registered after import (the name is looked up when this is called).

    Args:
        method_name: a registry key (``"surgery"``, ``"clip"``, ``"gradcam"``, ``"ig"``, ...)
            or ``"random"`` (:func:`make_random_explain_func`, unless the registry has a
            method of that name).
        attribute_kwargs: options of every ``attribute()`` call, e.g. ``{"n_steps": 8}``
            for ``"ig"``; Quantus's ``explain_func_kwargs`` add to them per call.
        on_degenerate: policy for constant maps: ``"uniform"`` (default), ``"raise"`` or
            ``"keep"`` (module docstring).
        seed: seed of the degenerate-map jitter (of the noise, for ``"random"``).
        **method_options (Any): constructor options of the method (e.g. ``redundancy="empty"``).

    Returns:
        Callable: ``(model, inputs (N,3,H,W), targets (N,), device=None, **kwargs) -> (N,1,H,W) float32``.
    """
    if method_name == "random" and method_name not in METHODS:
        if attribute_kwargs or method_options:
            raise ValueError("the random baseline takes no method or attribute options.")
        return make_random_explain_func(seed)
    return QuantusExplainFunc(method_name, method_options, attribute_kwargs, on_degenerate, seed)


def make_random_explain_func(seed: int = 0) -> RandomExplainFunc:
    """The chance-level ``explain_func``: seeded uniform noise maps (see :class:`RandomExplainFunc`)."""
    return RandomExplainFunc(seed)
