"""The base class of every captum_clip method: the input, target and output contract, so a method is only math."""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import torch
from captum.attr import Attribution
from captum.log import log_usage
from torch import Tensor

from ..core.classifier import ZeroShotClassifier
from ..core.loading import ClipBundle
from ..core.precision import autocast
from ..core.threads import single_threaded_blas
from ..core.towers import vision_tower
from ..errors import warn_constant_maps
from .inputs import check_images, gradient_ready, refuse_additional_forward_args, unpack_inputs
from .maps import upsample_to_input
from .targets import ResolvedTargets, TargetLike, parse_targets, target_list


def runs_passes(function: Callable) -> Callable:
    """Decorate a method's public entry point that runs forward passes: it runs under :meth:`ClipAttribution.running`
    (``attribute`` gets this by itself)."""

    @functools.wraps(function)
    def wrapper(self, *args, **kwargs):
        with self.running():
            return function(self, *args, **kwargs)

    wrapper._under_precision = True
    return wrapper


class ClipAttribution(Attribution):
    r"""A Captum ``Attribution`` of a zero-shot CLIP classifier.

    It owns what every method shares:

    * inputs: normalised images ``(N, 3, H, W)`` or a 1-tuple of them, validated once (rank, channels, dtype,
      finite values, at least one token cell), moved to the model's device; outputs come back on the inputs'
      device, as a 1-tuple when a tuple came in;
    * targets: one parser (:func:`~captum_clip.base.targets.parse_targets`), with :meth:`_coerce_target` as the
      one hook for methods whose targets are not only classes and texts;
    * the predicted class for ``target=None`` (:meth:`predicted_classes`);
    * outputs: ``(N, 1, H, W)`` maps at input resolution, normalised as the method's :attr:`map_normalisation`
      says, and :meth:`attribute_all`, ``(N, K, H, W)`` maps of K targets per image.

    A subclass implements its math in ``attribute`` (decorated with ``@log_usage()``, which NoiseTunnel needs).

    Args:
        classifier (ZeroShotClassifier): the forward function; its classes are the targets.
    """

    #: How this method's maps are scaled (shown in the docs' method table).
    map_normalisation: str = ""
    #: Whether the maps' sign means something: figures then use a range symmetric about zero and a diverging map.
    signed_maps: bool = False
    #: Figures saturate this percent of a map's largest values (``outlier_perc`` of :func:`captum_clip.viz.display_range`).
    display_outlier_perc: float = 0.0

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # The bundle's precision applies to every method's forward passes without the method knowing: its
        # attribute runs under autocast. The wrapper goes inside Captum's @log_usage, whose __wrapped__ NoiseTunnel
        # calls directly.
        attribute = cls.__dict__.get("attribute")
        if attribute is not None and not getattr(attribute, "_under_precision", False):
            wrapped = log_usage()(runs_passes(getattr(attribute, "__wrapped__", attribute)))
            wrapped._under_precision = True
            cls.attribute = wrapped
    #: Methods that can also be built from a bare ClipBundle (targets are then texts only).
    accepts_bundle: bool = False

    def __init__(self, classifier) -> None:
        if isinstance(classifier, ClipBundle) and self.accepts_bundle:
            bundle, classifier = classifier, None
        elif isinstance(classifier, ZeroShotClassifier):
            bundle = classifier.bundle
        else:
            also = " or a ClipBundle from captum_clip.load_clip" if self.accepts_bundle else ""
            raise TypeError(
                f"{type(self).__name__} needs a captum_clip.ZeroShotClassifier{also}; got {type(classifier).__name__}. "
                "Build one with ZeroShotClassifier(load_clip(...), classnames)."
            )
        Attribution.__init__(self, classifier if classifier is not None else bundle.model)
        self.classifier: Optional[ZeroShotClassifier] = classifier
        self.bundle: ClipBundle = bundle
        self.tower = classifier.tower if classifier is not None else vision_tower(bundle.model)

    def autocast(self):
        """The autocast context of the bundle's precision (a no-op for fp32)."""
        return autocast(self.bundle.device, self.bundle.precision)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """What every public entry point runs under: the bundle's autocast, and numpy's BLAS on one thread
        (:mod:`~captum_clip.core.threads` says why)."""
        with self.autocast(), single_threaded_blas():
            yield

    # -- inputs ----------------------------------------------------------------------------------
    def _inputs(self, inputs, additional_forward_args: Any = None, gradients: bool = False
                ) -> Tuple[Tensor, bool, torch.device]:
        """Validated images on the model's device, whether a tuple came in, and the inputs' device."""
        refuse_additional_forward_args(additional_forward_args, type(self).__name__)
        images, is_tuple = unpack_inputs(inputs)
        images = check_images(images, self.tower.cell_size)
        if gradients:
            images = gradient_ready(images, type(self).__name__)
        return images.to(self.bundle.device), is_tuple, images.device

    def _outputs(self, maps: Tensor, images: Tensor, input_device: torch.device, is_tuple: bool,
                 interpolate: bool = True):
        """Grid maps ``(N, C, gh, gw)`` or input-size maps, as the caller's ``(N, C, H, W)`` float32."""
        if interpolate and tuple(maps.shape[-2:]) != tuple(images.shape[-2:]):
            maps = upsample_to_input(maps, tuple(images.shape[-2:]), self.tower.cell_size)
        maps = maps.detach().float()
        warn_constant_maps(maps, type(self).__name__)
        maps = maps.to(input_device)
        return (maps,) if is_tuple else maps

    # -- targets ---------------------------------------------------------------------------------
    @property
    def classnames(self) -> Optional[Sequence[str]]:
        return self.classifier.classnames if self.classifier is not None else None

    def _coerce_target(self, value):
        """Turn a target value of another kind into an int or a str (the identity here)."""
        return value

    def resolve_targets(self, target: TargetLike, n_images: int) -> ResolvedTargets:
        """The targets of ``n_images`` images, checked before any forward pass (see ``attribute`` for formats)."""
        return parse_targets(target, n_images, self.classnames, self._coerce_target, type(self).__name__)

    @torch.no_grad()
    def predicted_classes(self, images: Optional[Tensor] = None, embeddings: Optional[Tensor] = None) -> Tensor:
        """The zero-shot prediction ``(N,)``, from unit-norm image ``embeddings`` when a method already has them
        (no second forward pass), else from the classifier's logits on ``images``."""
        if self.classifier is None:
            raise ValueError(f"{type(self).__name__} was built without a classifier, so target=None has no "
                             "predicted class; pass the targets to explain.")
        if embeddings is not None:
            return (embeddings @ self.classifier.text_features.to(embeddings.device).T).argmax(dim=-1)
        return self.classifier(images).argmax(dim=-1)

    def logit_targets(self, targets: ResolvedTargets, images: Tensor) -> Tuple[ZeroShotClassifier, Tensor]:
        """Targets as logit indices, for methods that differentiate a logit (Grad-CAM, IG).

        Free-text targets get a classifier over those texts that shares the model; the predicted class stands
        for ``target=None``.

        Returns:
            ``(classifier, indices)`` with ``indices`` ``(N,)`` on the images' device.
        """
        classifier = self.classifier
        if targets.texts is not None:
            classes = list(dict.fromkeys(targets.texts))
            classifier = classifier.with_classes(classes)
            indices = torch.tensor([classes.index(t) for t in targets.texts])
        elif targets.predicted:
            indices = self.predicted_classes(images)
        else:
            indices = targets.indices
        return classifier, indices.to(images.device)

    # -- K maps per image ------------------------------------------------------------------------
    def attribute_all(self, inputs, targets: Optional[Sequence] = None, **attribute_kwargs) -> Tensor:
        r"""Maps of K targets for every image.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            targets (list or None): the K targets, the same for every image (class indices, class names or
                texts); None: every class of the classifier, in its order.
            **attribute_kwargs: passed on to :meth:`attribute`.

        Returns:
            Tensor: ``(N, K, H, W)``; map ``[n, k]`` equals ``attribute(inputs[n:n+1], target=targets[k])``.
        """
        images, is_tuple, device = self._inputs(inputs)
        values = target_list(targets, self.classnames)
        self.resolve_targets(values, len(values))  # fail before any pass
        with self.running():
            maps = self._attribute_all(images, values, **attribute_kwargs)
        maps = maps.to(device)
        return (maps,) if is_tuple else maps

    def _attribute_all(self, images: Tensor, targets: list, **attribute_kwargs) -> Tensor:
        # Every (image, target) pair in one batched call; methods with a cheaper pass override this.
        n, k = images.shape[0], len(targets)
        maps = self.attribute(images.repeat_interleave(k, dim=0), target=targets * n, **attribute_kwargs)
        return maps.reshape(n, k, *maps.shape[-2:])

