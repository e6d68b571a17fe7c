"""ConVis end to end for one image: windows → embeddings → ranks → concept maps.

:class:`ConceptMapper` is the model-agnostic core of ConVisAttribution: it receives the encoders as callables,
so any CLIP wrapper can drive it. The expensive part (embedding the windows and ranking T in each of them) is
done once per image by :meth:`ConceptMapper.window_ranks` and reused for any number of concepts by
:meth:`ConceptMapper.maps`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .aggregation import AGGREGATIONS, WindowCoverage, aggregate_ranks
from .ranks import similarity_ranks
from .text_bank import TextBank
from .vocabulary import ConceptLike, ConceptVocabulary
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

__all__ = ["WindowRanks", "ConceptMaps", "ConceptMapper"]


@dataclass(frozen=True)
class WindowRanks:
    """Everything about one image that does not depend on the concept.

    Attributes:
        image: ``(S, S, 3)`` uint8, the squared image the maps are aligned with.
        boxes: ``(P, 3)`` int64 ``(x, y, b)`` canvas windows that were embedded (those overlapping the image).
        embeddings: ``(P, E)`` float32 raw window embeddings.
        ranks: ``(P, T)`` int64 rank of each synset in each window (0 = most similar).
    """

    image: np.ndarray
    boxes: torch.Tensor
    embeddings: torch.Tensor
    ranks: torch.Tensor


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
        progress: show a tqdm bar while embedding windows.
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
        progress: bool = False,
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
        self.vocabulary = vocabulary
        self.text_embeddings = embeddings
        self.encode_images = encode_images
        self.windows = windows
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.progress = progress
        grid = window_grid(windows)
        # Windows that miss the image cannot change the map, so they are never embedded.
        self.boxes = grid.boxes[grid.overlaps_image]
        self.coverage = WindowCoverage(self.boxes, windows.pad, windows.image_size)

    def window_ranks(self, image: ImageLike) -> WindowRanks:
        """Embed the image's windows and rank the vocabulary in each (the per-image, concept-free work).

        Args:
            image: PIL image, ``(H, W, 3)`` uint8 array or ``(3, H, W)`` uint8 tensor, any aspect ratio.

        Returns:
            :class:`WindowRanks`.
        """
        squared = square_image(image, self.windows.image_size)
        canvas = padded_canvas(squared, self.windows)
        embeddings = embed_windows(
            canvas, self.boxes, self.encode_images, self.windows, batch_size=self.batch_size, progress=self.progress
        )
        if embeddings.shape[1] != self.text_embeddings.shape[1]:
            raise ValueError(
                f"image embeddings have {embeddings.shape[1]} dimensions, the text bank {self.text_embeddings.shape[1]}"
            )
        ranks = similarity_ranks(embeddings, self.text_embeddings)
        return WindowRanks(image=squared, boxes=self.boxes, embeddings=embeddings, ranks=ranks)

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
            :class:`ConceptMaps` with K maps.

        Raises:
            ValueError: for an empty concept list or a concept that is not a noun synset of T.
        """
        names = self.vocabulary.resolve_many(concepts)
        order = aggregation or self.aggregation
        aggregated = aggregate_ranks(
            window_ranks.ranks, [self.vocabulary.subtree(n) for n in names], self.coverage, order
        )
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
