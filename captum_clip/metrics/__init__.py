"""Quantus evaluation of captum_clip methods: explain_func adapters and scoped Quantus 0.6.0 fixes.

Typical use::

    from captum_clip.metrics import make_explain_func, make_metric, evaluate_metric

    metric = make_metric("PixelFlipping", features_in_step=224 * 16)
    scores = evaluate_metric(metric, classifier, x, y, explain_func=make_explain_func("surgery"))

Importing this subpackage imports Quantus; ``import captum_clip`` does not.
"""

from .captum_metrics import expand_to_inputs
from .quantus_adapters import (
    DEGENERATE_JITTER,
    DEGENERATE_LEVEL,
    QuantusExplainFunc,
    RandomExplainFunc,
    make_explain_func,
    make_random_explain_func,
)
from .quantus_fixes import (
    SOFTMAX_DEFAULT_TRUE,
    PixelROAD,
    ScopedMPRT,
    evaluate_metric,
    make_metric,
    numpy_trapz_compat,
    rgb_irof_perturb_func,
    rgb_road_perturb_func,
)

__all__ = [
    "expand_to_inputs",
    "make_explain_func",
    "make_random_explain_func",
    "QuantusExplainFunc",
    "RandomExplainFunc",
    "DEGENERATE_LEVEL",
    "DEGENERATE_JITTER",
    "numpy_trapz_compat",
    "rgb_irof_perturb_func",
    "rgb_road_perturb_func",
    "PixelROAD",
    "ScopedMPRT",
    "SOFTMAX_DEFAULT_TRUE",
    "make_metric",
    "evaluate_metric",
]
