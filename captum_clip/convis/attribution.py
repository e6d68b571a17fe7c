"""ConVis as a Captum ``Attribution`` for open_clip models (Giulivi & Boracchi, 2024).

``attribute(inputs, target)`` takes normalised image tensors like every other captum_clip method, undoes the
normalisation, runs the window sweep of :class:`~.concept_maps.ConceptMapper` on the pixels and maps the result back
into the input frame. Per image the window ranks are computed once and serve every concept asked for; identical
images in a batch (e.g. one image expanded once per query) share them too.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from captum.log import log_usage
from nltk.corpus.reader.wordnet import Synset

from ..base.method import ClipAttribution, runs_passes
from ..base.targets import ResolvedTargets
from ..defaults import fill_defaults
from .aggregation import AGGREGATIONS
from ..core.text import text_tower_fingerprint
from .bundle_adapters import RESIZE_MODES, bundle_image_encoder, bundle_text_encoder
from .concept_maps import ConceptMapper, ConceptMaps, WindowRanks
from .frames import map_to_input_frame, normalised_to_uint8
from .presence import ConceptMass, concept_masses
from .targets import ClassSynsetResolver, ClassSynsets, is_synset_name
from .text_bank import TextBank, build_text_bank
from .vocabulary import ConceptLike, ConceptVocabulary, default_vocabulary
from .windows import REFERENCE_WINDOWS, WindowConfig

__all__ = ["ConVisAttribution", "TEXT_SOURCES"]

TEXT_SOURCES = ("definition", "lemmas")

# (fingerprint, vocabulary digest, text source, cache dir) -> TextBank: Quantus builds the method once per batch.
_BANKS: dict[tuple[str, str, str, str], TextBank] = {}
_MAX_BANKS = 8


def _as_vocabulary(vocabulary) -> ConceptVocabulary:
    if vocabulary is None:
        return default_vocabulary()
    if isinstance(vocabulary, ConceptVocabulary):
        return vocabulary
    if isinstance(vocabulary, (list, tuple)):
        return ConceptVocabulary.from_synsets(vocabulary)
    raise TypeError(f"vocabulary must be a ConceptVocabulary, a list of synset names or None; got {vocabulary!r}")


class ConVisAttribution(ClipAttribution):
    r"""Concept Visualization: where an image shows a WordNet concept, by CLIP-ranking synset texts in windows.

    L. Giulivi, G. Boracchi, "Concept Visualization: Explaining the CLIP Multi-modal Embedding Using WordNet",
    arXiv:2405.14563 (2024).

    Square windows of two sizes slide over the image (padded with seeded noise). Each window is embedded with the
    CLIP image tower and every synset of the vocabulary T is ranked by the cosine of its text embedding (its
    gloss by default). A window's score for concept c is the best rank reached by c or any of its hyponyms
    (Sub(c)); a pixel's score averages the windows covering it, and the map is ``1 − minmax`` of that (1 = where c
    ranks best). Occlusion-style: no gradients, and the model is never modified.

    Inputs are *normalised* ``(N, 3, H, W)`` tensors (e.g. ``bundle.preprocess(image)``), any size and aspect. The
    bundle's mean/std turn them back into pixels; the sweep runs on the centre square resized to
    ``windows.image_size`` (224, as in the paper), and the maps are resized back into the centre square of the
    input; pixels outside it (non-square inputs) get 0.

    Args:
        model_or_classifier (ZeroShotClassifier or ClipBundle): a :class:`~captum_clip.ZeroShotClassifier` (class
            indices or names then resolve to synsets) or a :class:`~captum_clip.ClipBundle` (targets must be
            synsets).
        vocabulary: T with its hierarchy: a :class:`ConceptVocabulary`, a list of synset names (closed under
            hypernyms), or None for the defaults table's: :func:`~captum_clip.convis.default_vocabulary`, or the
            scene vocabulary for scene label sets and the shipped model (:mod:`captum_clip.defaults`).
        text_source: ``"definition"`` (glosses, the paper) or ``"lemmas"`` (lemma names; for models that never
            saw glosses); None: the defaults table's, ``"lemmas"`` for the shipped scene model, else
            ``"definition"``.
        windows: window geometry; the default is the reference's (two sizes, stride 16, 730 windows embedded).
        aggregation: ``"max_then_mean"`` (the paper's Algorithm 1) or ``"mean_then_max"`` (the authors' webapp).
        resize: ``"tensor"`` (crops resized in batches on the model's device; fast) or ``"pil"`` (the bundle's
            own PIL preprocess per crop; the reference's pixels exactly, CPU-bound).
        batch_size: windows per image-encoder call; None: the tower's pass size for the device (on a CPU about
            1,536 tokens, e.g. 23 windows of the shipped model or 7 of a ViT-B/16, faster per window than larger
            passes; 256 on a GPU).
        class_synsets: how class names become synsets: a ``{class name: synset}`` dict or a callable. Without it
            (and without a preset for scene classes), a class name must be a synset name or have a single
            WordNet noun sense; an ambiguous one raises a ``ValueError`` listing its senses.
        cache_dir: text-bank cache root (default :func:`captum_clip.core.cache.cache_root`).
        use_cache: read and write the text-bank cache.
        progress: tqdm bars with an ETA for the text-bank encoding and the window sweep (one bar per call, over all
            its distinct images). None (default): auto, a bar appears only once its stage has run
            :data:`~captum_clip.core.progress.AUTO_PROGRESS_DELAY` seconds (a ViT sweep on a CPU, a first text
            bank), so quick calls print nothing; True: always; False: never.
    """

    map_normalisation = "1 - min-max of the mean best rank over the covering windows: in [0, 1], 1 where the concept ranks best"
    accepts_bundle = True

    def __init__(
        self,
        model_or_classifier,
        vocabulary: ConceptVocabulary | Sequence[str] | None = None,
        *,
        text_source: str | None = None,
        windows: WindowConfig = REFERENCE_WINDOWS,
        aggregation: str = "max_then_mean",
        resize: str = "tensor",
        batch_size: int | None = None,
        class_synsets: ClassSynsets = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        progress: bool | None = None,
    ) -> None:
        super().__init__(model_or_classifier)
        bundle, classifier = self.bundle, self.classifier
        options = fill_defaults("convis", classifier, {"vocabulary": vocabulary, "text_source": text_source,
                                                       "class_synsets": class_synsets})
        vocabulary, text_source, class_synsets = options["vocabulary"], options["text_source"], options["class_synsets"]
        if text_source not in TEXT_SOURCES:
            raise ValueError(f"text_source must be one of {TEXT_SOURCES}, not {text_source!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
        if batch_size is None:
            # The windows are encoded at the model's own input size.
            batch_size = self.tower.images_per_pass(self.tower.native_image_size, bundle.device)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None, not {batch_size!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        if progress is not None and not isinstance(progress, bool):
            raise ValueError(f"progress must be True, False or None (auto), not {progress!r}")
        self.vocabulary = _as_vocabulary(vocabulary)
        self.text_source = text_source
        self.resize = resize
        self.windows = windows
        self.aggregation = aggregation
        self.batch_size = batch_size
        self.mean_std = bundle.image_mean_std
        self.resolver = ClassSynsetResolver(self.vocabulary, class_synsets)
        self._cache_dir, self._use_cache, self._progress = cache_dir, use_cache, progress
        self._bank: TextBank | None = None
        self._mapper: ConceptMapper | None = None

    # ----------------------------------------------------------------------------------------- setup
    @property
    def text_bank(self) -> TextBank:
        """The vocabulary's text embeddings under this model (encoded, or read from the cache, on first use)."""
        if self._bank is None:
            self._bank = self._build_text_bank()
        return self._bank

    @property
    def mapper(self) -> ConceptMapper:
        """The :class:`ConceptMapper` doing the work. Built on first use, so that checking targets (e.g. a CLI
        validating its queries) costs no text encoding."""
        if self._mapper is None:
            self._mapper = ConceptMapper(
                self.vocabulary, self.text_bank, bundle_image_encoder(self.bundle, self.resize), windows=self.windows,
                aggregation=self.aggregation, batch_size=self.batch_size, progress=self._progress,
                device=self.bundle.device,
            )
        return self._mapper

    def _build_text_bank(self) -> TextBank:
        fingerprint = text_tower_fingerprint(self.bundle.model, self.bundle.tokenizer)
        key = (fingerprint, self.vocabulary.digest(), self.text_source, str(self._cache_dir))
        if self._use_cache and key in _BANKS:
            return _BANKS[key]
        bank = build_text_bank(
            self.vocabulary, bundle_text_encoder(self.bundle, progress=self._progress), model_fingerprint=fingerprint,
            text_source=self.text_source, cache_dir=self._cache_dir, use_cache=self._use_cache,
        )
        if self._use_cache:
            if len(_BANKS) >= _MAX_BANKS:
                _BANKS.pop(next(iter(_BANKS)))
            _BANKS[key] = bank
        return bank

    # ----------------------------------------------------------------------------------------- targets
    def _coerce_target(self, value):
        return value.name() if isinstance(value, Synset) else value

    def target_concepts(self, target, inputs=None) -> list[str]:
        """The synset each image is explained for (see :meth:`attribute` for the formats).

        Args:
            target (str, Synset, int, list, Tensor or None): as in :meth:`attribute`.
            inputs (Tensor, optional): the images (needed for None = the classifier's prediction, and for N);
                without them a list of targets is checked on its own, one per (future) image.

        Returns:
            One synset name of T per image.
        """
        images = self._check(inputs)[0] if inputs is not None else None
        if images is not None:
            n_images = images.shape[0]
        else:
            n_images = len(target) if isinstance(target, (list, tuple)) and target else 1
        return self._concepts(self.resolve_targets(target, n_images), images)

    def _concepts(self, targets: ResolvedTargets, images: torch.Tensor | None) -> list[str]:
        """The synset hook of the target contract: resolved classes and texts become concepts of T."""
        if targets.predicted:
            if self.classifier is None or images is None:
                raise ValueError(
                    "ConVis needs a concept: pass target='dog.n.01' (a WordNet noun synset), or build it from a "
                    "ZeroShotClassifier to explain its predicted class"
                )
            return [self.resolver(self.classnames[i]) for i in self.predicted_classes(images).tolist()]
        if targets.indices is not None:
            return [self.resolver(self.classnames[i]) for i in targets.indices.tolist()]
        return [self._text_concept(text) for text in targets.texts]

    def _text_concept(self, text: str) -> str:
        # A synset name is a concept unless the classifier has a class of that name; other texts are class names
        # (or single-sense words) for the resolver.
        if is_synset_name(text) and text not in (self.classnames or ()):
            return self.vocabulary.resolve(text)
        return self.resolver(text)

    # ----------------------------------------------------------------------------------------- core
    def _check(self, inputs) -> tuple[torch.Tensor, bool]:
        images, is_tuple, _ = self._inputs(inputs)
        return images, is_tuple

    @staticmethod
    def _check_aggregation(aggregation: str | None) -> None:
        # Checked up front: a typo should not cost a window sweep.
        if aggregation is not None and aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")

    def _pixels(self, images: torch.Tensor) -> np.ndarray:
        return normalised_to_uint8(images, *self.mean_std)

    def _ranks_per_image(self, pixels: np.ndarray) -> list[WindowRanks]:
        """Window ranks per image; identical images (same pixels) are swept once, under one progress bar."""
        keys = [hashlib.sha1(image.tobytes()).digest() + bytes(str(image.shape), "ascii") for image in pixels]
        first = dict(zip(keys, pixels))  # distinct images, first occurrence
        mapper = self.mapper  # the text bank (and its own bar) comes before the sweep's bar
        with mapper.sweep_progress(len(first)):
            by_content = {key: mapper.window_ranks(image) for key, image in first.items()}
        return [by_content[key] for key in keys]

    @runs_passes
    def window_ranks(self, inputs) -> list[WindowRanks]:
        """The concept-independent part of ConVis for each image: window boxes, embeddings and ranks of T.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.

        Returns:
            N :class:`WindowRanks` (on the squared ``windows.image_size`` frame).
        """
        images, _ = self._check(inputs)
        return self._ranks_per_image(self._pixels(images))

    @runs_passes
    def concept_maps(self, inputs, concepts: Sequence[Sequence[ConceptLike]] | Sequence[ConceptLike],
                     aggregation: str | None = None) -> list[ConceptMaps]:
        """ConVis's full result per image, on the squared frame: maps, mean ranks, rank sums, r_min.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            concepts: the same K concepts for every image, or N lists (one per image).
            aggregation: overrides the aggregation order.

        Returns:
            N :class:`ConceptMaps` with ``(K, S, S)`` maps.
        """
        images, _ = self._check(inputs)
        self._check_aggregation(aggregation)
        per_image = self._concepts_per_image(concepts, images.shape[0])
        ranks = self._ranks_per_image(self._pixels(images))
        return [self.mapper.maps(r, c, aggregation=aggregation) for r, c in zip(ranks, per_image)]

    def _concepts_per_image(self, concepts, n_images: int) -> list[list[str]]:
        if isinstance(concepts, (str,)) or not isinstance(concepts, Sequence):
            concepts = [concepts]
        concepts = list(concepts)
        if not concepts:
            raise ValueError("no concepts given: pass at least one WordNet noun synset name such as 'cat.n.01'")
        if all(isinstance(c, (list, tuple)) for c in concepts):
            if len(concepts) != n_images:
                raise ValueError(f"{len(concepts)} concept lists for {n_images} images")
            return [self.vocabulary.resolve_many(c) for c in concepts]
        names = self.vocabulary.resolve_many(concepts)  # validated before any window is embedded
        return [names] * n_images

    def _input_frame(self, maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        return map_to_input_frame(maps.float(), height, width).to(images.device)

    def _values(self, result: ConceptMaps, normalize: bool) -> torch.Tensor:
        if normalize:
            return result.maps
        # max_rank_sim averaged over the covering windows: comparable across images and concepts.
        return 1.0 - result.mean_rank / len(self.vocabulary)

    # ----------------------------------------------------------------------------------------- public
    @log_usage()
    def attribute(self, inputs, target=None, aggregation: str | None = None, normalize: bool = True,
                  additional_forward_args: None = None) -> Any:
        r"""ConVis map of each image for its target concept.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            target (str, Synset, int, list, Tensor or None): the concept per image: a WordNet noun synset name
                (``"dog.n.01"``) or ``Synset`` of T; a class index or class name of the classifier (resolved
                through ``class_synsets``, the name itself, or its single noun sense); a list of those (one per
                image, or one for all); an integer tensor of class indices; or None for the classifier's
                predicted class.
            aggregation: overrides the constructor's order for this call.
            normalize: True: the paper's ``1 − minmax`` map in [0, 1]. False: the un-normalised mean
                max_rank_sim ``1 − r̄/|T|`` (comparable across images and concepts; what the map min-maxes).
            additional_forward_args: refused with a ``ValueError`` unless None (the classifier's forward takes
                only images).

        Returns:
            Tensor (or a 1-tuple if ``inputs`` was a tuple): ``(N, 1, H, W)`` float32 on the inputs' device.

        Raises:
            ValueError: invalid images, an empty target list, an unknown, verb or out-of-vocabulary synset, an
                ambiguous class name.
        """
        images, is_tuple, device = self._inputs(inputs, additional_forward_args)
        self._check_aggregation(aggregation)
        names = self.target_concepts(target, images)
        pixels = self._pixels(images)
        ranks = self._ranks_per_image(pixels)
        # Images that share their ranks (a batch of one image expanded per target) also share one maps() call.
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(ranks):
            groups.setdefault(id(r), []).append(i)
        out = torch.empty(images.shape[0], 1, *images.shape[-2:], dtype=torch.float32, device=images.device)
        for members in groups.values():
            concepts = list(dict.fromkeys(names[i] for i in members))
            result = self.mapper.maps(ranks[members[0]], concepts, aggregation=aggregation)
            maps = self._input_frame(self._values(result, normalize), images)
            for i in members:
                out[i, 0] = maps[concepts.index(names[i])]
        return self._outputs(out, images, device, is_tuple)

    def _attribute_all(self, images: torch.Tensor, targets: list, aggregation: str | None = None,
                       normalize: bool = True) -> torch.Tensor:
        # One window sweep per image serves all K concepts.
        concepts = self._concepts(self.resolve_targets(targets, len(targets)), None)
        return self.attribute_concepts(images, concepts, aggregation=aggregation, normalize=normalize)

    @runs_passes
    def attribute_concepts(self, inputs, concepts: Sequence[ConceptLike] | ConceptLike,
                           aggregation: str | None = None, normalize: bool = True) -> torch.Tensor:
        """K concept maps per image from one window sweep per image.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)`` (or a 1-tuple).
            concepts: K synset names (or ``Synset`` objects) of T, the same for every image.
            aggregation: overrides the aggregation order.
            normalize: as in :meth:`attribute`.

        Returns:
            ``(N, K, H, W)`` float32 on the inputs' device.
        """
        images, _ = self._check(inputs)
        results = self.concept_maps(images, concepts, aggregation=aggregation)
        return torch.stack([self._input_frame(self._values(r, normalize), images) for r in results])

    @runs_passes
    def top_concepts(self, inputs, k: int | None = 10, *, under: ConceptLike | None = None,
                     candidates: Sequence[ConceptLike] | None = None, closure: bool = True,
                     aggregation: str = "mean_then_max") -> list[list[ConceptMass]]:
        """The concepts each image shows most, sorted by map mass (the authors' browsing interface).

        Every synset's map comes from the same window ranks and is scored as the webapp does (see
        :mod:`~captum_clip.convis.presence`): the share of the image where the concept's globally scaled score
        clears 225/255. The webapp shows the hierarchy one level at a time, each node's children sorted this way:
        pass ``under="animal.n.01"`` for that level. Over all of T, broad concepts (entity.n.01 covers everything)
        come first; ``closure=False`` scores each synset by its own text instead, listing the specific matches.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            k: how many to return per image (None: all candidates).
            under: list only the children of this synset in the hierarchy H.
            candidates: list only these synsets (default: all of T, or the children of *under*).
            closure: score c over Sub(c) (True) or by its own rank only (False).
            aggregation: the webapp used ``"mean_then_max"``.

        Returns:
            Per image, up to k :class:`ConceptMass` entries, most present first.
        """
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive integer or None, not {k!r}")
        self._check_aggregation(aggregation)
        if under is not None and candidates is not None:
            raise ValueError("pass either under= or candidates=, not both")
        names = None
        if under is not None:
            node = self.vocabulary.resolve(under)
            names = self.vocabulary.children(node)
            if not names:
                raise ValueError(f"{node!r} has no hyponyms in the vocabulary; nothing to list under it")
        elif candidates is not None:
            names = self.vocabulary.resolve_many(candidates)
        out = []
        for ranks in self.window_ranks(inputs):
            masses = concept_masses(ranks.ranks, self.vocabulary, self.mapper.coverage, aggregation=aggregation,
                                    candidates=names, closure=closure)
            out.append(masses[:k] if k is not None else masses)
        return out

