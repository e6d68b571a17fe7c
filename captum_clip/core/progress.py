"""Progress bars of long steps (text banks, class embeddings, window sweeps), with a rate and an ETA."""

from __future__ import annotations

from typing import Optional

from tqdm.auto import tqdm

#: With ``progress=None`` ("auto", the default) a bar appears only once its step has run this many seconds, so
#: quick calls print nothing and long ones (a ViT on a CPU, a big text bank) show an ETA.
AUTO_PROGRESS_DELAY = 3.0


def progress_bar(progress: Optional[bool], *, total: int, desc: str, unit: str):
    """The tqdm bar of one step.

    Args:
        progress: True: shown at once; None: auto, shown only after :data:`AUTO_PROGRESS_DELAY` seconds; False:
            never.
        total: number of units.
        desc: label.
        unit: unit name.

    Raises:
        TypeError: ``progress`` is not True, False or None.
    """
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (auto), not {progress!r}")
    return tqdm(total=total, desc=desc, unit=unit, disable=progress is False, dynamic_ncols=True,
                delay=AUTO_PROGRESS_DELAY if progress is None else 0.0)
