"""numpy's BLAS on one thread while a method runs, so its worker threads do not take the cores torch needs.

OpenBLAS's workers spin for a while after each call. A method that does small numpy or scikit-learn linear algebra
between torch passes (Mutual Knowledge's PCA of the patch features, its ellipse fits) leaves them spinning on the
cores where torch's next pass wants its own threads: on a 2-core machine Mutual's batched ``explain`` of 8 images
took 0.162 s with numpy's default BLAS threads and 0.096 s with one (``benchmarks/results_mutual.md``, 2 torch threads).
Those problems are far too small for a second BLAS thread to help. torch's own threads are left as they are.
"""

from __future__ import annotations

from typing import Optional

from threadpoolctl import ThreadpoolController

_controller: Optional[ThreadpoolController] = None


def single_threaded_blas():
    """A context in which every BLAS library numpy and SciPy loaded runs on one thread."""
    global _controller
    if _controller is None:
        # Built on first use, once the BLAS libraries are loaded: listing them costs about 1 ms, a limit 15 us.
        import sklearn  # noqa: F401  (loads SciPy's OpenBLAS too, so the controller sees it)

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
