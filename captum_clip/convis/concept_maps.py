"""ConVis end to end for one image: windows → embeddings → ranks → concept maps.

:class:`ConceptMapper` is the model-agnostic core of ConVisAttribution: it receives the encoders as callables,
so any CLIP wrapper can drive it. The expensive part (embedding the windows and ranking T in each of them) is
done once per image by :meth:`ConceptMapper.window_ranks` and reused for any number of concepts by
:meth:`ConceptMapper.maps`.

Everything after the per-image canvas runs on the mapper's device (the model's): the windows are cut there, the
embeddings, similarities, ranks and maps stay there. The full ``(P, |T|)`` rank matrix is sorted only when it is
needed (many concepts, ``mean_then_max``, ``top_concepts``); a few concepts get their r_min by counting
(:func:`~.ranks.subtree_best_ranks`), with the same result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .aggregation import AGGREGATIONS, WindowCoverage, aggregate_r_min, aggregate_ranks
from .ranks import ranks_from_similarities, subtree_best_ranks, subtree_min_ranks, window_similarities
from .text_bank import TextBank
from .vocabulary import ConceptLike, ConceptVocabulary
from ..core.progress import progress_bar
from .windows import (
    REFERENCE_WINDOWS,
    ImageEncoder,
    ImageLike,
    WindowConfig,
    embed_windows,
    padded_canvas,
    square_image,
    window_grid,
)

#: Up to this many concepts, :meth:`WindowRanks.subtree_min_ranks` counts instead of sorting the rank matrix
#: (on one CPU thread, counting took ~11 ms per concept, sorting a 730 × 7,181 rank matrix ~390 ms).
COUNT_MAX_CONCEPTS = 16

__all__ = ["WindowRanks", "ConceptMaps", "ConceptMapper"]


class WindowRanks:
    """Everything about one image that does not depend on the concept.

    Attributes:
        image: ``(S, S, 3)`` uint8, the squared image the maps are aligned with.
        boxes: ``(P, 3)`` int64 ``(x, y, b)`` canvas windows that were embedded (those overlapping the image).
        embeddings: ``(P, E)`` float32 raw window embeddings (on the model's device).
        ranks: ``(P, T)`` int64 rank of each synset in each window (0 = most similar); computed from
            ``similarities`` on first access when not given.
        similarities: ``(P, T)`` float32 cosine of each window with each synset text, or None.
    """

    def __init__(self, image: np.ndarray, boxes: torch.Tensor, embeddings: torch.Tensor,
                 ranks: torch.Tensor | None = None, *, similarities: torch.Tensor | None = None) -> None:
        if ranks is None and similarities is None:
            raise ValueError("WindowRanks needs ranks or similarities")
        self.image = image
        self.boxes = boxes
        self.embeddings = embeddings
        self.similarities = similarities
        self._ranks = ranks

    @property
    def ranks(self) -> torch.Tensor:
        if self._ranks is None:
            self._ranks = ranks_from_similarities(self.similarities)
        return self._ranks

    @property
    def has_ranks(self) -> bool:
        """Whether the rank matrix has been computed (or was given)."""
        return self._ranks is not None

    def subtree_min_ranks(self, subtrees: Sequence[Sequence[int]]) -> torch.Tensor:
        """r_min ``(P, K)``: from the rank matrix when it exists or K is large, else by counting (same values)."""
        if self._ranks is None and len(subtrees) <= COUNT_MAX_CONCEPTS:
            return subtree_best_ranks(self.similarities, subtrees)
        return subtree_min_ranks(self.ranks, subtrees)

    def __repr__(self) -> str:
        synsets = (self.similarities if self._ranks is None else self._ranks).shape[1]
        return f"WindowRanks(windows={len(self.boxes)}, synsets={synsets}, device={self.embeddings.device})"


@dataclass(frozen=True)
class ConceptMaps:
    """Concept maps of one image, in the squared image's pixels.

    Attributes:
        concepts: K canonical synset names.
        aggregation: ``"max_then_mean"`` or ``"mean_then_max"``.
        maps: ``(K, S, S)`` float64 in [0, 1], 1 = concept present.
        mean_rank: ``(K, S, S)`` float64 mean rank behind the map (lower = better); see :class:`AggregatedMaps`.
        rank_sum: ``(K, S, S)`` float64 ``mean_rank × coverage`` (the reference's S for ``max_then_mean``).
        coverage: ``(S, S)`` int64 windows per pixel.
        r_min: ``(P, K)`` int64 best rank in Sub(c) per window (``max_then_mean`` only).
    """

    concepts: list[str]
    aggregation: str
    maps: torch.Tensor
    mean_rank: torch.Tensor
    rank_sum: torch.Tensor
    coverage: torch.Tensor
    r_min: torch.Tensor | None


class ConceptMapper:
    """Concept Visualization (Giulivi & Boracchi, 2024) for any CLIP model given as encoder callables.

    Args:
        vocabulary: the concept vocabulary T (with its hierarchy).
        text_bank: its :class:`TextBank`, or a ``(|T|, E)`` tensor of text embeddings in vocabulary order.
        encode_images: ``(n, 3, h, w) uint8 -> (n, E)`` image encoder that applies the model's preprocessing
            (see :func:`~captum_clip.convis.encoders.pil_preprocess_image_encoder`).
        windows: window geometry; the default reproduces the reference.
        aggregation: ``"max_then_mean"`` (canonical) or ``"mean_then_max"`` (webapp).
        batch_size: windows per ``encode_images`` call.
        progress: a tqdm bar with an ETA while embedding windows: True, False, or None (auto: shown once a sweep
            has run a few seconds).
        device: where windows are cut and ranks, maps and sums are computed; default the encoder's ``device``
            attribute (the bundle encoders set it to the model's), else the CPU. The encoder's ``crop_device``
            (the CPU for the PIL encoder) overrides it for the cutting.
    """

    def __init__(
        self,
        vocabulary: ConceptVocabulary,
        text_bank: TextBank | torch.Tensor,
        encode_images: ImageEncoder,
        *,
        windows: WindowConfig = REFERENCE_WINDOWS,
        aggregation: str = "max_then_mean",
        batch_size: int = 64,
        progress: bool | None = False,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(text_bank, TextBank):
            text_bank.check_matches(vocabulary)
            embeddings = text_bank.embeddings
        else:
            embeddings = F.normalize(torch.as_tensor(text_bank).float(), dim=-1)
            if embeddings.ndim != 2 or embeddings.shape[0] != len(vocabulary):
                raise ValueError(
                    f"text bank of shape {tuple(embeddings.shape)} does not fit a vocabulary of {len(vocabulary)}"
                )
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        if device is None:
            device = getattr(encode_images, "device", None)
        self.device = torch.device(device if device is not None else "cpu")
        self.crop_device = torch.device(getattr(encode_images, "crop_device", None) or self.device)
        self.vocabulary = vocabulary
        self.text_embeddings = embeddings.to(self.device)
        self.encode_images = encode_images
        self.windows = windows
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.progress = progress
        grid = window_grid(windows)
        # Windows that miss the image cannot change the map, so they are never embedded.
        self.boxes = grid.boxes[grid.overlaps_image]
        #: The windows' coverage on the CPU; :attr:`device_coverage` is the same on the mapper's device.
        self.coverage = WindowCoverage(self.boxes, windows.pad, windows.image_size)
        # float64 rank sums (exact integers) need a device with float64: not MPS.
        self.device_coverage = self.coverage.to(self.device if self.device.type != "mps" else "cpu")
        self._sweep_bar = None

    @contextlib.contextmanager
    def sweep_progress(self, n_images: int) -> Iterator[None]:
        """One progress bar (with an ETA) over the window sweeps of *n_images* images: every
        :meth:`window_ranks` call inside the block advances it, following the mapper's ``progress`` setting."""
        with progress_bar(self.progress, total=n_images * len(self.boxes), desc="ConVis: window sweep",
                          unit="window") as bar:
            previous, self._sweep_bar = self._sweep_bar, bar
            try:
                yield
            finally:
                self._sweep_bar = previous

    def window_ranks(self, image: ImageLike) -> WindowRanks:
        """Embed the image's windows and rank the vocabulary in each (the per-image, concept-free work).

        Args:
            image: PIL image, ``(H, W, 3)`` uint8 array or ``(3, H, W)`` uint8 tensor, any aspect ratio.

        Returns:
            :class:`WindowRanks` on the mapper's device; its rank matrix is sorted on first use.
        """
        squared = square_image(image, self.windows.image_size)
        canvas = padded_canvas(squared, self.windows)
        embeddings = embed_windows(
            canvas, self.boxes, self.encode_images, self.windows, batch_size=self.batch_size, progress=self.progress,
            device=self.crop_device, bar=self._sweep_bar,
        ).to(self.device)
        if embeddings.shape[1] != self.text_embeddings.shape[1]:
            raise ValueError(
                f"image embeddings have {embeddings.shape[1]} dimensions, the text bank {self.text_embeddings.shape[1]}"
            )
        similarities = window_similarities(embeddings, self.text_embeddings)
        return WindowRanks(image=squared, boxes=self.boxes, embeddings=embeddings, similarities=similarities)

    def maps(
        self,
        window_ranks: WindowRanks,
        concepts: Sequence[ConceptLike] | ConceptLike,
        *,
        aggregation: str | None = None,
    ) -> ConceptMaps:
        """Concept maps from precomputed window ranks.

        Args:
            window_ranks: from :meth:`window_ranks` (of this mapper).
            concepts: K noun synsets of the vocabulary (names or ``Synset`` objects), or a single one.
            aggregation: overrides the mapper's aggregation order.

        Returns:
            :class:`ConceptMaps` with K maps, on the mapper's device (all K aggregated at once).

        Raises:
            ValueError: for an empty concept list or a concept that is not a noun synset of T.
        """
        names = self.vocabulary.resolve_many(concepts)
        order = aggregation or self.aggregation
        subtrees = [self.vocabulary.subtree(n) for n in names]
        if order not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {order!r}")
        if order == "max_then_mean":
            aggregated = aggregate_r_min(window_ranks.subtree_min_ranks(subtrees), self.device_coverage)
        else:
            aggregated = aggregate_ranks(window_ranks.ranks, subtrees, self.device_coverage, order)
        return ConceptMaps(
            concepts=names,
            aggregation=order,
            maps=aggregated.maps,
            mean_rank=aggregated.mean_rank,
            rank_sum=aggregated.rank_sum,
            coverage=aggregated.coverage,
            r_min=aggregated.r_min,
        )

    def __call__(
        self,
        image: ImageLike,
        concepts: Sequence[ConceptLike] | ConceptLike,
        *,
        aggregation: str | None = None,
    ) -> ConceptMaps:
        """Concept maps for one image (concepts are validated before any window is embedded).

        Args:
            image: see :meth:`window_ranks`.
            concepts: see :meth:`maps`.
            aggregation: overrides the mapper's aggregation order.

        Returns:
            :class:`ConceptMaps`.
        """
        self.vocabulary.resolve_many(concepts)
        return self.maps(self.window_ranks(image), concepts, aggregation=aggregation)
