"""The method contract every captum_clip attribution method shares: inputs, targets, predicted class, outputs.

Subclass :class:`ClipAttribution` to add a method: implement ``attribute`` (its math) and, where a cheaper pass
exists, ``_attribute_all``; :func:`parse_targets` and :class:`ResolvedTargets` are the one target contract.
"""

from .method import ClipAttribution
from .targets import ResolvedTargets, TargetLike, parse_targets

__all__ = ["ClipAttribution", "ResolvedTargets", "TargetLike", "parse_targets"]
