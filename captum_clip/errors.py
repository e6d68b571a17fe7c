"""Every error class captum_clip raises on purpose, and the non-finite guard."""

from __future__ import annotations

import torch
from torch import Tensor


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (offline, no cache, unknown tag)."""


class CheckpointError(ValueError):
    """A local checkpoint file is empty, unreadable, or does not fit the model it is loaded into."""


class WordNetNotFoundError(LookupError):
    """No usable WordNet copy was found; the message says how to install one."""


class DatasetLayoutError(FileNotFoundError):
    """A local dataset copy is missing a file or folder; the message names the expected layout."""


class RankFailedError(RuntimeError):
    """Another process of a torchrun job raised, so this one stopped instead of waiting for it; the message names
    the rank and its error."""


class NonFiniteError(ValueError):
    """A stage of a computation produced NaN or Inf (a NaN weight, or inputs far outside the normalised range)."""


class DegenerateMapWarning(RuntimeWarning):
    """A method returned a constant map for some image: it localises nothing there (e.g. saturated inputs, or no
    positive evidence for the target)."""


def warn_constant_maps(maps: Tensor, method: str) -> None:
    """Warn, naming the images, when any of ``maps`` ``(N, C, H, W)`` is constant.

    A constant map is a valid tensor, and a metric would score it as if it were an explanation; the warning says
    where it happened (``warnings.simplefilter("error", DegenerateMapWarning)`` turns it into an error).
    """
    flat = maps.detach().flatten(2)
    constant = (flat.amax(dim=-1) == flat.amin(dim=-1)).any(dim=-1)
    if bool(constant.any()):
        images = constant.nonzero().flatten().tolist()
        import warnings

        warnings.warn(
            f"{method}: the map of image(s) {images[:10]}{' ...' if len(images) > 10 else ''} of {maps.shape[0]} is "
            f"constant ({float(flat[images[0]].reshape(-1)[0]):g} everywhere), so it localises nothing. Check that "
            "the inputs are normalised like bundle.preprocess does, and that the target is present in the image.",
            DegenerateMapWarning, stacklevel=4,
        )


def require_finite(values: Tensor, stage: str) -> Tensor:
    """Return ``values``, or raise :class:`NonFiniteError` naming ``stage`` if any entry is NaN or Inf.

    A NaN that reached min-max normalisation would come out as an all-zero map, and one that reached a metric as
    all-NaN scores; both look like results, so the computation stops where it first went wrong.
    """
    if not torch.isfinite(values).all():
        kinds = [k for k, bad in (("NaN", torch.isnan(values).any()), ("Inf", torch.isinf(values).any())) if bad]
        raise NonFiniteError(
            f"{stage} became non-finite ({' and '.join(kinds)} in {int((~torch.isfinite(values)).sum())} of "
            f"{values.numel()} values). Check the model's weights for NaN "
            "(all(torch.isfinite(p).all() for p in model.parameters())) and that the inputs are normalised like "
            "bundle.preprocess does (values of a few units, not raw pixels or huge scales)."
        )
    return values
