"""Evaluating explanations: Quantus adapters and fixes, Captum-metric helpers, the benchmark and the papers' experiments.

Typical use::

    from captum_clip.evaluation import make_explain_func, make_metric, evaluate_metric

    metric = make_metric("PixelFlipping", features_in_step=224 * 16)
    scores = evaluate_metric(metric, classifier, x, y, explain_func=make_explain_func("surgery"))

Importing this subpackage imports Quantus; ``import captum_clip`` does not.
"""

from .captum_metrics import expand_to_inputs
from .quantus_adapters import make_explain_func, make_random_explain_func
from .quantus_fixes import evaluate_metric, make_metric

__all__ = ["make_explain_func", "make_random_explain_func", "make_metric", "evaluate_metric", "expand_to_inputs"]
