"""Scoped fixes for Quantus 0.6.0 failures with CLIP models, RGB images and numpy >= 2.4.

Every fix here is local: nothing is patched at import time, and the two runtime changes
(:func:`numpy_trapz_compat` on Quantus's AUC helper)
are undone when their ``with`` blocks end.

Failures fixed (all reproduced in ``tests/test_quantus_adapters.py``):

1. **``np.trapz`` removed in numpy 2.4.** ``quantus.helpers.utils.calculate_auc`` calls
   ``np.trapz``; IROF, ``PixelFlipping(return_auc_per_sample=True)`` and the
   ``get_auc_score`` properties of PixelFlipping, RegionPerturbation and Selectivity
   raise ``AttributeError``. Fix: :func:`numpy_trapz_compat`.
2. **IROF on 3-channel images.** IROF builds a ``(B, 1, H, W)`` segment mask and
   ``baseline_replacement_by_mask`` asserts ``arr.shape == mask.shape`` against the
   ``(B, 3, H, W)`` images. Fix: :func:`rgb_irof_perturb_func`, which also takes the
   ``"mean"``/``"black"``/``"white"`` baseline per image (Quantus takes it over the whole
   batch, so an image's IROF score depends on its batch companions).
3. **ROAD on 3-channel images.** ROAD ranks the channel-broadcast attributions
   (``3*H*W`` flat indices) but ``noisy_linear_imputation`` indexes an ``(C, H*W)``
   array, so indices ``>= H*W`` raise ``IndexError``. Fix: :func:`rgb_road_perturb_func`
   (indices mapped to unique pixels). With stock ROAD that still imputes only about a
   third of the requested pixels (``a_size`` is ``H*W`` but the ranking counts each pixel
   three times), and ROAD keeps only the first batch's results; :class:`PixelROAD` ranks
   pixels and keeps every batch, with per-sample curves.
4. **Softmax saturation.** PixelFlipping, RegionPerturbation, IROF, ROAD, Selectivity,
   SensitivityN, Monotonicity and Sufficiency call the model with ``softmax=True`` by
   default. CLIP logits are ``logit_scale * cosine`` with ``logit_scale`` = 100 for
   trained models, so the softmax is ~1 for the top class until the prediction flips
   (and identically 1 for a single text query). :func:`evaluate_metric` passes
   ``softmax=False`` unless told otherwise.
5. **MPRT on a ZeroShotClassifier.** Quantus randomises every module with a public
   ``reset_parameters`` in ``named_modules()`` order reversed: for a classifier that is
   first the text tower, whose output is a precomputed buffer (those "layers" cannot
   change an explanation), and it never randomises ``nn.MultiheadAttention``'s packed
   q/k/v projection (it only has ``_reset_parameters``). Its average-correlation option
   also averages in the un-randomised ``"original"`` entry (it skips a key named
   ``"orig"``). :class:`ScopedMPRT` fixes the three, can limit the number of layers, and
   restores the global torch RNG that Quantus reseeds before every layer.
6. **AttributionLocalisation(weighted=True)** divides the box size by ``x_batch[2:].size``
   (the batch from its third sample on, not ``H*W``): :func:`make_metric` refuses it.

:func:`make_metric` builds a Quantus metric with these fixes (and per-sample output);
:func:`evaluate_metric` calls it and returns one score per sample.
"""

from __future__ import annotations

import contextlib
import threading
from copy import deepcopy
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import quantus
import quantus.helpers.utils as quantus_utils
import torch
from quantus.functions.perturb_func import baseline_replacement_by_mask, noisy_linear_imputation
from quantus.helpers.model.pytorch_model import PyTorchModel
from torch import nn

from ..core.classifier import ZeroShotClassifier

__all__ = [
    "numpy_trapz_compat",
    "rgb_irof_perturb_func",
    "rgb_road_perturb_func",
    "PixelROAD",
    "ScopedMPRT",
    "SOFTMAX_DEFAULT_TRUE",
    "make_metric",
    "evaluate_metric",
]

#: Metrics whose ``__call__`` defaults to ``softmax=True`` in Quantus 0.6.0.
SOFTMAX_DEFAULT_TRUE = frozenset({
    "PixelFlipping", "RegionPerturbation", "IROF", "ROAD", "Selectivity", "SensitivityN",
    "Monotonicity", "Sufficiency",
})

# ---------------------------------------------------------------------------------------
# 1. np.trapz
# ---------------------------------------------------------------------------------------

_trapz_lock = threading.RLock()
_trapz_depth = 0
_trapz_saved: Optional[Callable] = None


def _calculate_auc_trapezoid(values: np.ndarray, dx: int = 1, batched: bool = False) -> np.ndarray:
    """``quantus.helpers.utils.calculate_auc`` with ``np.trapezoid`` (numpy >= 2.0's name for ``trapz``)."""
    axis = 1 if batched else -1
    return np.trapezoid(np.array(values), dx=dx, axis=axis)


@contextlib.contextmanager
def numpy_trapz_compat() -> Iterator[None]:
    """Make Quantus's AUC code work on numpy >= 2.4 inside the ``with`` block only.

    Quantus 0.6.0 has a single ``np.trapz`` call, in ``quantus.helpers.utils.calculate_auc``,
    which every metric reaches as ``utils.calculate_auc`` (a module-attribute lookup at
    call time). Inside the block that attribute is replaced by the same computation with
    ``np.trapezoid``; on exit the original function is put back.

    numpy itself is never modified, so ``hasattr(np, "trapz")`` is the same inside and
    after the block and no other library sees an ``np.trapz`` that its numpy does not
    have. The patch is still process-wide while the block runs (another thread calling
    Quantus's AUC then gets the working version too, which is harmless); blocks may be
    nested or entered from several threads: the original is restored when the last one
    exits. If ``np.trapz`` exists (numpy < 2.4), nothing is patched.

    Example:
        >>> with numpy_trapz_compat():
        ...     scores = quantus.IROF(perturb_func=rgb_irof_perturb_func)(...)
    """
    global _trapz_depth, _trapz_saved
    if hasattr(np, "trapz"):
        yield
        return
    with _trapz_lock:
        if _trapz_depth == 0:
            _trapz_saved = quantus_utils.calculate_auc
            quantus_utils.calculate_auc = _calculate_auc_trapezoid
        _trapz_depth += 1
    try:
        yield
    finally:
        with _trapz_lock:
            _trapz_depth -= 1
            if _trapz_depth == 0:
                quantus_utils.calculate_auc = _trapz_saved
                _trapz_saved = None


# ---------------------------------------------------------------------------------------
# 2. IROF on RGB
# ---------------------------------------------------------------------------------------

def rgb_irof_perturb_func(
    arr: np.ndarray,
    mask: np.ndarray,
    perturb_baseline: Union[float, int, str, np.ndarray] = "mean",
    **kwargs,
) -> np.ndarray:
    """IROF's ``baseline_replacement_by_mask`` for multi-channel images.

    The segment mask has one channel; it is broadcast over the image channels, so a
    segment is replaced in every channel. A string baseline (``"mean"``, ``"black"``,
    ``"white"``, ``"uniform"``) is computed per image: Quantus computes it over the whole
    ``(B, C, H, W)`` batch, which makes one image's perturbation depend on the others.

    Args:
        arr: images ``(B, C, H, W)`` (a batch: IROF's call) or one image ``(C, H, W)``.
        mask: boolean mask ``(B, 1, H, W)`` / ``(1, H, W)`` / ``(H, W)``, or already
            ``arr``'s shape.
        perturb_baseline: the replacement value, as in Quantus.
        **kwargs: passed to ``baseline_replacement_by_mask`` (e.g. ``uniform_low``).

    Returns:
        np.ndarray: the perturbed copy, ``arr``'s shape and dtype.
    """
    arr = np.asarray(arr)
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim < arr.ndim:
        mask = mask.reshape((1,) * (arr.ndim - mask.ndim) + mask.shape)
    mask = np.broadcast_to(mask, arr.shape)
    if arr.ndim == 4:
        return np.stack([
            baseline_replacement_by_mask(arr=image, mask=image_mask, perturb_baseline=perturb_baseline, **kwargs)
            for image, image_mask in zip(arr, mask)
        ]).astype(arr.dtype, copy=False)
    return baseline_replacement_by_mask(arr=arr, mask=mask, perturb_baseline=perturb_baseline, **kwargs).astype(
        arr.dtype, copy=False)


# ---------------------------------------------------------------------------------------
# 3. ROAD on RGB
# ---------------------------------------------------------------------------------------

def rgb_road_perturb_func(arr: np.ndarray, indices: Sequence[int], noise: float = 0.01, **kwargs) -> np.ndarray:
    """ROAD's ``noisy_linear_imputation`` for flat indices over a ``(C, H, W)`` image.

    Stock ROAD hands over indices into the channel-broadcast attribution, i.e. into
    ``C*H*W``; the imputation works on pixels (``(C, H*W)``, all channels of a pixel are
    imputed together). ``index % (H*W)`` is the pixel, and duplicates are dropped (a
    repeated unknown would make the imputation's linear system singular). Pixel indices
    (``< H*W``, as :class:`PixelROAD` passes) are unchanged.

    Args:
        arr: one image ``(C, H, W)``.
        indices: flat indices into ``C*H*W`` or ``H*W``, most relevant first.
        noise: std of the Gaussian noise added to imputed values (ROAD's ``noise``).
        **kwargs: passed to ``noisy_linear_imputation``.

    Returns:
        np.ndarray: the imputed copy, ``arr``'s shape. With no index, an unchanged copy.
    """
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ValueError(f"rgb_road_perturb_func expects one (C, H, W) image; got shape {arr.shape}.")
    pixels = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1) % (arr.shape[1] * arr.shape[2]))
    if pixels.size == 0:
        # noisy_linear_imputation cannot solve an empty system.
        return arr.copy()
    return noisy_linear_imputation(arr=arr, indices=pixels, noise=noise, **kwargs)


class PixelROAD(quantus.ROAD):  # type: ignore[misc]  # quantus marks ROAD @final (typing only)
    """ROAD that removes ``p`` % of the *pixels* of multi-channel images, over every batch.

    Differences from ``quantus.ROAD`` (same constructor and ``__call__``):

    * Pixels are ranked by the attribution itself (summed over channels if it has more
      than one), and the top ``int(H*W*p/100)`` pixels are imputed in all channels.
      Stock ROAD ranks the channel-broadcast map (each pixel three times) but cuts it at
      ``H*W*p/100`` entries, so only about ``p/3`` % of the pixels are removed.
    * Results of all batches are kept: stock ROAD reports only the first batch
      (``custom_postprocess`` reads ``evaluation_scores[0]``).
    * ``per_sample_curves`` holds ``(N, len(percentages))`` 0/1 values: whether sample
      ``n`` kept its class ``y`` after removing each percentage. The returned dict
      ``{percentage: accuracy}`` is their mean over samples, as in Quantus.

    Use with :func:`rgb_road_perturb_func` (the default of :func:`make_metric`); the
    default ``noisy_linear_imputation`` also works, since the indices are pixels.
    The imputation noise comes from numpy's global RNG (as in Quantus): seed it for
    reproducible scores.
    """

    per_sample_curves: Optional[np.ndarray] = None

    def evaluate_batch(self, model, x_batch: np.ndarray, y_batch: np.ndarray, a_batch: np.ndarray,
                       **kwargs) -> List[np.ndarray]:
        """Per-sample "prediction kept" indicators for one batch.

        Args:
            model: Quantus ``ModelInterface``.
            x_batch: images ``(B, C, H, W)``.
            y_batch: target classes ``(B,)``.
            a_batch: attributions ``(B, 1, H, W)`` or ``(B, C, H, W)``.

        Returns:
            list: one ``(B, len(percentages))`` int array (Quantus's ROAD layout).
        """
        batch_size, _, height, width = x_batch.shape
        pixel_scores = np.asarray(a_batch).reshape(batch_size, -1, height * width).sum(axis=1)
        # Stable sort: equal scores are removed in raster order, reproducibly.
        order = np.argsort(-pixel_scores, axis=1, kind="stable")
        results = []
        for percentage in self.percentages:
            k = int(height * width * percentage / 100)
            perturbed = np.stack([
                self.perturb_func(arr=x, indices=order[i, :k]) if k > 0 else x.copy()
                for i, x in enumerate(x_batch)
            ]).astype(x_batch.dtype, copy=False)
            x_input = model.shape_input(perturbed, x_batch.shape, channel_first=True, batched=True)
            results.append(np.asarray(y_batch) == np.argmax(model.predict(x_input), axis=-1))
        return [np.stack(results, axis=1).astype(int)]

    def custom_postprocess(self, **kwargs) -> None:
        """Pool every batch's indicators; the score dict is their per-percentage mean."""
        self.per_sample_curves = np.concatenate(self.evaluation_scores, axis=0)
        self.evaluation_scores = {
            percentage: float(score) for percentage, score in zip(self.percentages, self.per_sample_curves.mean(0))
        }


# ---------------------------------------------------------------------------------------
# 5. MPRT on a ZeroShotClassifier
# ---------------------------------------------------------------------------------------

LayerSelector = Union[str, Callable[[str, nn.Module], bool]]


def _resets(module: nn.Module, randomise_attention: bool) -> Optional[Callable[[], None]]:
    if hasattr(module, "reset_parameters"):
        return module.reset_parameters
    if randomise_attention and isinstance(module, nn.MultiheadAttention):
        # Re-initialises the packed q/k/v projection (in_proj_weight / in_proj_bias) and zeroes
        # out_proj.bias; out_proj itself is a separate layer with its own reset_parameters.
        return module._reset_parameters
    return None


class _ScopedPyTorchModel(PyTorchModel):
    """Quantus's ``PyTorchModel`` whose MPRT layer generator visits only selected layers."""

    def __init__(self, wrapped: PyTorchModel, layers: LayerSelector, max_layers: Optional[int],
                 randomise_attention: bool):
        super().__init__(model=wrapped.model, channel_first=wrapped.channel_first, softmax=wrapped.softmax,
                         model_predict_kwargs=wrapped.model_predict_kwargs, device=wrapped.device)
        self.layers = layers
        self.max_layers = max_layers
        self.randomise_attention = randomise_attention

    def _selected(self, model: nn.Module, order: str) -> List[Tuple[str, nn.Module, Callable[[], None]]]:
        if self.layers == "vision":
            if not isinstance(model, ZeroShotClassifier):
                raise ValueError("layers='vision' needs a ZeroShotClassifier (it knows its vision tower); "
                                 "pass layers='all' or a callable(name, module) -> bool.")
            vision_ids = {id(m) for m in model.tower.module.modules()}
            keep = lambda name, module: id(module) in vision_ids  # noqa: E731
        elif self.layers == "all":
            keep = lambda name, module: True  # noqa: E731
        elif callable(self.layers):
            keep = self.layers
        else:
            raise ValueError(f"layers must be 'vision', 'all' or a callable; got {self.layers!r}.")
        selected = [(name, module, reset) for name, module in model.named_modules()
                    if (reset := _resets(module, self.randomise_attention)) is not None and keep(name, module)]
        if order == "top_down":
            selected = selected[::-1]
        return selected[:self.max_layers] if self.max_layers is not None else selected

    @property
    def random_layer_generator_length(self) -> int:
        # The order does not change the count.
        return len(self._selected(self.model, "bottom_up"))

    def get_random_layer_generator(self, order: str = "top_down", seed: int = 42):
        """Yield ``(layer name, model)`` with one more selected layer re-initialised each time.

        Same semantics as Quantus (cascading for ``"top_down"``/``"bottom_up"``, one layer
        at a time from the original weights for ``"independent"``; ``torch.manual_seed(seed + 1)``
        before every reset), but the global torch RNG is restored after each reset.
        """
        original = self.state_dict()
        random_model = deepcopy(self.model)
        for name, _, reset in self._selected(random_model, order):
            if order == "independent":
                random_model.load_state_dict(original)
            with torch.random.fork_rng():
                torch.manual_seed(seed + 1)
                reset()
            yield name, random_model


class ScopedMPRT(quantus.MPRT):  # type: ignore[misc]  # quantus marks MPRT @final (typing only)
    """``quantus.MPRT`` restricted to chosen layers of the model, with two Quantus bugs fixed.

    Quantus's MPRT re-initialises, one more at a time, every module that has a public
    ``reset_parameters`` (reversed ``named_modules()`` order for ``"top_down"``). On a
    :class:`~captum_clip.ZeroShotClassifier` that wastes the first "layers" on the text
    tower (the class embeddings are a precomputed buffer, so logits and explanations
    cannot change) and never touches ``nn.MultiheadAttention``'s q/k/v projection. Here:

    Args:
        layers: ``"vision"`` (default): only modules of the classifier's vision tower;
            ``"all"``: every module, as Quantus; or ``callable(name, module) -> bool``.
        max_layers: randomise only the first ``max_layers`` selected layers in the chosen
            order (with ``"top_down"``: the top-most ones), for cost. The last reported
            layer is then not the fully randomised model.
        randomise_attention: also re-initialise ``nn.MultiheadAttention`` modules (their
            ``in_proj``); ``False`` reproduces Quantus's layer set.
        **kwargs: ``quantus.MPRT`` arguments (``layer_order``, ``seed``,
            ``similarity_func``, ``return_average_correlation``, ...).

    Not randomised either way: parameters held directly by the vision transformer
    (``class_embedding``, ``positional_embedding``, the output ``proj``), which belong to
    no module with a reset method. ``nn.LayerNorm.reset_parameters`` sets the affine
    parameters to 1/0 (identity), as in Quantus.

    ``return_average_correlation=True`` averages over the randomised layers only (Quantus
    also averages in the un-randomised ``"original"`` entry).
    """

    def __init__(self, layers: LayerSelector = "vision", max_layers: Optional[int] = None,
                 randomise_attention: bool = True, **kwargs):
        super().__init__(**kwargs)
        if max_layers is not None and max_layers < 1:
            raise ValueError(f"max_layers must be a positive integer or None; got {max_layers}.")
        self.layers = layers
        self.max_layers = max_layers
        self.randomise_attention = randomise_attention

    def general_preprocess(self, *args, **kwargs) -> Dict[str, Any]:
        data = super().general_preprocess(*args, **kwargs)
        if isinstance(data.get("model"), PyTorchModel):
            data["model"] = _ScopedPyTorchModel(data["model"], self.layers, self.max_layers,
                                                self.randomise_attention)
        return data

    def recompute_average_correlation_per_sample(self) -> List[float]:
        layers = [scores for name, scores in self.evaluation_scores.items() if name != "original"]
        return np.mean(np.asarray(layers, dtype=float), axis=0).tolist()


# ---------------------------------------------------------------------------------------
# Construction and calling
# ---------------------------------------------------------------------------------------

#: Metric name -> (class, default keyword arguments) where the stock class fails on RGB CLIP inputs.
_FIXED_METRICS: Dict[str, Tuple[type, Dict[str, Any]]] = {
    "IROF": (quantus.IROF, {"perturb_func": rgb_irof_perturb_func}),
    "ROAD": (PixelROAD, {"perturb_func": rgb_road_perturb_func}),
    "MPRT": (ScopedMPRT, {}),
    "ModelParameterRandomisation": (ScopedMPRT, {}),
}


def _metric_class(name: str) -> type:
    candidate = getattr(quantus, name, None)
    if not (isinstance(candidate, type) and issubclass(candidate, quantus.Metric)):
        lowered = {n.lower(): n for n in dir(quantus)
                   if isinstance(getattr(quantus, n), type) and issubclass(getattr(quantus, n), quantus.Metric)}
        if name.lower() not in lowered:
            raise ValueError(f"{name!r} is not a Quantus metric class (e.g. 'PixelFlipping', 'IROF', 'MPRT').")
        candidate = getattr(quantus, lowered[name.lower()])
    return candidate


def make_metric(name: str, **kwargs) -> quantus.Metric:
    """A Quantus metric by class name, configured for CLIP on RGB images.

    Defaults set here (each overridable through ``kwargs``):

    * ``disable_warnings=True``, ``display_progressbar=False``;
    * ``return_aggregate=False``: one score per sample (FaithfulnessCorrelation, IROF and
      SensitivityN aggregate by default);
    * IROF: ``perturb_func=rgb_irof_perturb_func``;
    * ROAD: a :class:`PixelROAD` with ``perturb_func=rgb_road_perturb_func``;
    * MPRT: a :class:`ScopedMPRT` (vision tower only; pass ``layers``/``max_layers``).

    ``AttributionLocalisation(weighted=True)`` is refused: Quantus 0.6.0 divides the box
    size by ``x_batch[2:].size`` (the batch from its third sample on). The unweighted
    score is unaffected, but its ``max_size`` warning fires spuriously for the same reason.

    ``softmax`` is a ``__call__`` argument in Quantus: call through :func:`evaluate_metric`
    (which defaults it to False) or pass ``softmax=False`` yourself.

    PixelFlipping's ``features_in_step`` must divide ``H*W`` (Quantus checks it against
    the spatial shape) while it flips the channel-broadcast map, so it takes
    ``3*H*W / features_in_step`` steps. IROF's curve is ``f(perturbed) / f(original)``:
    with logits it is only a fraction while the target logit stays positive (trained
    CLIP's usually are, ``100 * cosine``); SLIC must find more than one segment, which
    needs natural-looking images (pure noise gives one segment and Quantus asserts).

    Args:
        name: class name in ``quantus`` (``"PixelFlipping"``, ``"PointingGame"``, ...),
            case-insensitive.
        **kwargs (Any): constructor arguments of the metric.

    Returns:
        quantus.Metric: the metric instance.
    """
    cls = _metric_class(name)
    if issubclass(cls, quantus.AttributionLocalisation) and kwargs.get("weighted"):
        # 0.6.0 computes the box ratio with x_batch[2:].size (samples 2.. of the batch, not H*W):
        # inf for a batch of 2, silently wrong for larger batches.
        raise ValueError("AttributionLocalisation(weighted=True) is broken in Quantus 0.6.0 (its box ratio "
                         "divides by x_batch[2:].size); use weighted=False.")
    cls, defaults = _FIXED_METRICS.get(cls.__name__, (cls, {}))
    options = {"disable_warnings": True, "display_progressbar": False, "return_aggregate": False, **defaults}
    options.update(kwargs)
    return cls(**options)


def _as_numpy(array, dtype=None) -> Optional[np.ndarray]:
    if array is None:
        return None
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=dtype)


def _per_sample(metric: quantus.Metric, scores: Any, reduce_curves: bool) -> Union[np.ndarray, List[np.ndarray]]:
    if isinstance(metric, PixelROAD) and metric.per_sample_curves is not None:
        return metric.per_sample_curves.mean(axis=1).astype(float)
    if isinstance(scores, dict):
        if isinstance(metric, quantus.ROAD):
            # Stock ROAD keeps only per-percentage means: one aggregate value.
            return np.array([np.mean(list(scores.values()))], dtype=float)
        # MPRT's {layer: per-sample similarities}: the last (most randomised) layer.
        return np.asarray(list(scores.values())[-1], dtype=float)
    if len(scores) and np.ndim(scores[0]) > 0:
        curves = [np.asarray(curve, dtype=float) for curve in scores]
        if reduce_curves:
            return np.array([np.trapezoid(curve, dx=1) for curve in curves])
        return np.stack(curves) if len({c.shape for c in curves}) == 1 else curves
    return np.asarray(scores, dtype=float)


def evaluate_metric(
    metric: quantus.Metric,
    model: nn.Module,
    x_batch,
    y_batch,
    s_batch=None,
    explain_func: Union[Callable, str, None] = None,
    *,
    a_batch=None,
    device: Union[str, torch.device, None] = None,
    explain_func_kwargs: Optional[Dict[str, Any]] = None,
    softmax: Optional[bool] = False,
    reduce_curves: bool = True,
    **call_kwargs,
) -> Union[np.ndarray, List[np.ndarray]]:
    """Call a Quantus metric with the fixes applied and return one score per sample.

    ``softmax=False`` is passed unless overridden (``None`` keeps the metric's own
    default); the call runs inside :func:`numpy_trapz_compat`.

    Args:
        metric: from :func:`make_metric` (or any Quantus metric).
        model: the :class:`~captum_clip.ZeroShotClassifier` (in eval mode).
        x_batch (numpy.ndarray or Tensor): images ``(N, 3, H, W)``, cast to float32.
        y_batch (numpy.ndarray, Tensor or list[int]): target classes ``(N,)``.
        s_batch (numpy.ndarray, Tensor or None): optional masks ``(N, 1, H, W)`` or ``(N, H, W)``
            (a channel is added: Quantus requires ``(N, 1, H, W)``).
        explain_func: a Quantus ``explain_func``, or a method name for
            :func:`~captum_clip.evaluation.make_explain_func` (``"random"`` included).
        a_batch (numpy.ndarray, Tensor or None): precomputed attributions ``(N, 1, H, W)`` instead of
            ``explain_func``.
        device: passed to Quantus (and from it to the explain func).
        explain_func_kwargs: extra keyword arguments of every explain call.
        softmax: model output for the metric: logits (False, default) or probabilities.
        reduce_curves: reduce per-sample curves to their trapezoidal AUC (``dx=1``, as
            Quantus's ``get_auc_score``); otherwise return the curves.
        **call_kwargs (Any): other ``metric.__call__`` arguments (``batch_size``, ``channel_first``,
            ``model_predict_kwargs``, ``custom_batch``).

    Returns:
        numpy.ndarray or list[numpy.ndarray]: an ``(N,)`` float array, with per metric:

            * scalar metrics: Quantus's per-sample scores;
            * curve metrics (PixelFlipping, RegionPerturbation, Selectivity): AUC per sample
              (or ``(N, T)`` curves / a list of curves with ``reduce_curves=False``);
            * :class:`PixelROAD`: per sample, the fraction of ``percentages`` after whose
              removal the class was kept (the mean of its ROAD curve; lower is better);
              a stock ``quantus.ROAD`` returns only its aggregate, as a length-1 array;
            * MPRT: per-sample similarity at the last randomised layer unless
              ``return_average_correlation``/``return_last_correlation`` already made it a list;
            * a metric built with ``return_aggregate=True``: a length-1 array.

            The raw output stays on ``metric.evaluation_scores``.
    """
    if isinstance(explain_func, str):
        from .quantus_adapters import make_explain_func
        explain_func = make_explain_func(explain_func)
    x_batch = _as_numpy(x_batch, np.float32)
    y_batch = _as_numpy(y_batch).astype(np.int64).reshape(-1)
    s_batch = _as_numpy(s_batch)
    if s_batch is not None and s_batch.ndim == x_batch.ndim - 1:
        s_batch = s_batch[:, None]
    a_batch = _as_numpy(a_batch)
    if device is not None:
        device = str(device)
    if softmax is not None:
        # Each metric's __call__ has its own softmax default; None must leave it untouched.
        call_kwargs["softmax"] = softmax
    with numpy_trapz_compat():
        scores = metric(model=model, x_batch=x_batch, y_batch=y_batch, a_batch=a_batch, s_batch=s_batch,
                        explain_func=explain_func, explain_func_kwargs=explain_func_kwargs, device=device,
                        **call_kwargs)
    return _per_sample(metric, scores, reduce_curves)
