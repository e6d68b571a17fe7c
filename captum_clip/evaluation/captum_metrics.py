"""Feeding captum_clip maps to ``captum.metrics``.

Every captum_clip method returns one map per image, ``(N, 1, H, W)``: a pixel's relevance, not one value per
colour channel. ``captum.metrics.infidelity`` multiplies attributions with input perturbations element by element
and asserts that both have the input's shape ``(N, 3, H, W)``. :func:`expand_to_inputs` gives each channel its
pixel's value (a view, no copy), which is how a per-pixel map acts on a per-channel perturbation.
``captum.metrics.sensitivity_max`` compares maps with maps and takes ``method.attribute`` as it is.

Example::

    from captum.metrics import infidelity
    maps = method.attribute(images, target=targets)
    scores = infidelity(classifier, perturb, images, expand_to_inputs(maps, images), target=targets)
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["expand_to_inputs"]


def expand_to_inputs(maps, inputs):
    """Broadcast per-pixel maps to the inputs' channels.

    Args:
        maps (Tensor or tuple[Tensor]): ``(N, 1, H, W)`` maps, as every captum_clip method returns them (a
            1-tuple, as Captum returns for tuple inputs, is accepted).
        inputs (Tensor or tuple[Tensor]): the images ``(N, C, H, W)`` they explain.

    Returns:
        Tensor (a 1-tuple if ``maps`` was one): ``(N, C, H, W)``, a view of ``maps``.

    Raises:
        ValueError: the maps are not ``(N, 1, H, W)`` for these inputs.
    """
    is_tuple = isinstance(maps, tuple)
    map_tensor = maps[0] if is_tuple else maps
    input_tensor = inputs[0] if isinstance(inputs, tuple) else inputs
    if not isinstance(map_tensor, Tensor) or not isinstance(input_tensor, Tensor):
        raise ValueError("expand_to_inputs takes the maps and the inputs as tensors (or 1-tuples of tensors).")
    n, _, h, w = input_tensor.shape
    if map_tensor.shape != (n, 1, h, w):
        raise ValueError(
            f"maps of shape {tuple(map_tensor.shape)} do not explain inputs of shape {tuple(input_tensor.shape)}: "
            f"expected ({n}, 1, {h}, {w}), one map per image at the input's resolution (attribute(..., "
            "interpolate=True), the default)."
        )
    expanded = map_tensor.expand_as(input_tensor)
    return (expanded,) if is_tuple else expanded
