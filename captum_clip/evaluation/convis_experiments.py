"""The paper's two experiments end to end, on generated scenes (offline) or on a user's image folders.

* Localisation (:func:`scene_localisation`, :func:`folder_localisation`): ConVis maps → MaxBoxAcc
  (:mod:`.wsol`). On scenes each object is queried by its shape's synset, and the *pointing rate* (the map's
  maximum lies on the queried object) is reported next to its chance level.
* OOD detection (:func:`scene_ood`, :func:`folder_ood`): WordNet text scores against max-logit baselines
  (:mod:`.ood`).

Scenes come from the held-out seed range of :mod:`captum_clip.shipped.zero_shot`, so the shipped model never
trained on them; the OOD linear probe trains on scenes from the training range.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..shipped.zero_shot import HELD_OUT_SEED_START
from ..shipped.scenes import generate_scene, to_tensor
from ..core.loading import ClipBundle
from ..convis.attribution import ConVisAttribution
from ..convis.frames import box_to_square_frame, uint8_to_normalised
from .image_folders import class_folders, read_boxes_file
from .convis_ood import OODResult, encode_images, run_ood_experiment
from ..shipped.presets import SCENE_OOD_PAIRS, SHAPE_SYNSETS
from ..convis.vocabulary import ConceptVocabulary
from ..convis.windows import square_image
from .convis_wsol import BoxAccuracy, boxes_from_masks, max_box_accuracy

__all__ = [
    "LocalisationResult",
    "pointing_scores",
    "centre_prior_map",
    "scene_localisation",
    "folder_localisation",
    "scene_ood",
    "folder_ood",
]

#: Seed offset of the OOD test scenes inside the held-out range (the localisation scenes start at 0).
OOD_SEED_OFFSET = 500_000


@dataclass
class LocalisationResult:
    """Localisation of concept maps against ground truth.

    Attributes:
        n_images: images explained.
        n_queries: maps scored (one per queried object).
        box_accuracy: ConVis's :class:`~.wsol.BoxAccuracy`.
        baseline_box_accuracy: the same for a centred Gaussian map (a layout prior that ignores the image).
        pointing_rate: share of the map's maximum on the queried object (scenes only).
        pointing_any_object: share of the maximum on any object of the scene (scenes only).
        pointing_chance: the same share for a uniformly random pixel: the queried object's area fraction.
        per_concept: ``{synset: (queries, pointing rate)}`` (scenes only).
        maps: the ConVis maps, one per query, kept for figures.
        images: the ``(H, W, 3)`` uint8 image of each query (in the maps' frame).
        boxes: the ground-truth boxes of each query.
        concepts: the queried synset of each map.
        pointing: per query, the share of the map's maximum on the queried object (scenes only).
    """

    n_images: int
    n_queries: int
    box_accuracy: BoxAccuracy
    baseline_box_accuracy: BoxAccuracy
    pointing_rate: float | None = None
    pointing_any_object: float | None = None
    pointing_chance: float | None = None
    per_concept: dict[str, tuple[int, float]] = field(default_factory=dict)
    maps: list[np.ndarray] = field(default_factory=list, repr=False)
    images: list[np.ndarray] = field(default_factory=list, repr=False)
    boxes: list[np.ndarray] = field(default_factory=list, repr=False)
    concepts: list[str] = field(default_factory=list, repr=False)
    pointing: list[float] = field(default_factory=list, repr=False)

    def standard_errors(self) -> dict[str, float]:
        """Standard errors over queries: of the pointing rate (when scored) and of MaxBoxAcc at its threshold."""
        n = max(self.n_queries, 1)
        acc = self.box_accuracy.max_box_acc
        out = {"max_box_acc": float(np.sqrt(acc * (1 - acc) / n))}
        if self.pointing:
            out["pointing_rate"] = float(np.std(self.pointing) / np.sqrt(len(self.pointing)))
        return out


def pointing_scores(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's maximum that falls on *mask*.

    ConVis maps are constant on window-grid cells, so the maximum is usually a plateau; counting the share of
    its pixels on the object is the hit probability of a random tie-break.

    Args:
        saliency: ``(H, W)`` map.
        mask: ``(H, W)`` bool.

    Returns:
        A value in [0, 1].
    """
    top = saliency == saliency.max()
    return float(mask[top].mean())


def centre_prior_map(height: int, width: int) -> np.ndarray:
    """A centred Gaussian bump (σ = a quarter of each side), normalised to [0, 1]: the no-look baseline."""
    ys = (np.arange(height) - (height - 1) / 2) / (height / 4)
    xs = (np.arange(width) - (width - 1) / 2) / (width / 4)
    bump = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    return (bump - bump.min()) / (bump.max() - bump.min())


def scene_localisation(
    method: ConVisAttribution,
    n_scenes: int,
    *,
    seed: int = HELD_OUT_SEED_START,
    n_objects: int | None = None,
    image_size: int | None = None,
    progress: bool = True,
) -> LocalisationResult:
    """Query every object of generated scenes by its shape's synset; pointing rate and MaxBoxAcc.

    Args:
        method: ConVis on the scene model (e.g. ``build_method("convis", classifier)`` for ``load_clip("shapes")``).
        n_scenes: scenes to generate (seeds ``seed … seed + n_scenes − 1``).
        seed: first scene seed (default: the held-out range).
        n_objects: objects per scene (default: 1 to 3 at random).
        image_size: scene side (default: the model's input size).
        progress: a tqdm bar over scenes.

    Returns:
        :class:`LocalisationResult`; boxes come from the objects' masks.
    """
    if n_scenes < 1:
        raise ValueError(f"n_scenes must be positive, not {n_scenes}")
    size = image_size or method.bundle.input_size[0]
    mean, std = method.mean_std
    maps, boxes, hits, any_hits, chance, concepts, images = [], [], [], [], [], [], []
    for s in tqdm(range(seed, seed + n_scenes), desc="ConVis: scenes", disable=not progress):
        scene = generate_scene(s, image_size=size, n_objects=n_objects)
        shapes = [SHAPE_SYNSETS[shape] for shape in scene.shapes]
        scene_maps = method.attribute_concepts(to_tensor(scene.image[None], mean, std), shapes)[0].cpu().numpy()
        gt = boxes_from_masks(scene.masks)
        anywhere = scene.masks.any(0)
        for k, concept in enumerate(shapes):
            maps.append(scene_maps[k])
            images.append(scene.image)
            boxes.append(gt[k : k + 1])
            hits.append(pointing_scores(scene_maps[k], scene.masks[k]))
            any_hits.append(pointing_scores(scene_maps[k], anywhere))
            chance.append(float(scene.masks[k].mean()))
            concepts.append(concept)
    per_concept = {
        c: (sum(1 for x in concepts if x == c), float(np.mean([h for h, x in zip(hits, concepts) if x == c])))
        for c in dict.fromkeys(concepts)
    }
    prior = centre_prior_map(size, size)
    return LocalisationResult(
        n_images=n_scenes,
        n_queries=len(maps),
        box_accuracy=max_box_accuracy(maps, boxes),
        baseline_box_accuracy=max_box_accuracy([prior] * len(maps), boxes),
        pointing_rate=float(np.mean(hits)),
        pointing_any_object=float(np.mean(any_hits)),
        pointing_chance=float(np.mean(chance)),
        per_concept=per_concept,
        maps=maps,
        images=images,
        boxes=boxes,
        concepts=concepts,
        pointing=hits,
    )


def _open_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


def folder_localisation(
    method: ConVisAttribution,
    images: str | os.PathLike,
    boxes_file: str | os.PathLike,
    concept: str,
    *,
    limit: int | None = None,
    progress: bool = True,
) -> LocalisationResult:
    """MaxBoxAcc of one concept's ConVis maps on a folder of images with ground-truth boxes (e.g. CUB with
    ``bird.n.01``).

    As in the reference, everything happens in the squared frame: each image is centre-cropped and resized to
    ``method.windows.image_size``, and its boxes are shifted, clipped and scaled with it (a box entirely outside
    the crop is dropped; an image left without boxes is skipped).

    Args:
        method: ConVis on the model.
        images: the image folder; the boxes file's paths are relative to it.
        boxes_file: see :func:`~.image_folders.read_boxes_file`.
        concept: the synset to localise.
        limit: evaluate at most this many images (in the boxes file's order).
        progress: a tqdm bar.

    Returns:
        :class:`LocalisationResult` without pointing scores.
    """
    root = Path(images)
    concept = method.vocabulary.resolve(concept)
    table = read_boxes_file(boxes_file)
    names = list(table)[:limit] if limit else list(table)
    size = method.windows.image_size
    maps, boxes, squared = [], [], []
    for name in tqdm(names, desc="ConVis: images", disable=not progress):
        pixels = _open_rgb(root / name)
        height, width = pixels.shape[:2]
        moved = [b for b in (box_to_square_frame(box, height, width, size) for box in table[name]) if b is not None]
        if not moved:
            continue
        squared.append(square_image(pixels, size))
        x = uint8_to_normalised(squared[-1], *method.mean_std)
        maps.append(method.attribute(x, target=concept)[0, 0].cpu().numpy())
        boxes.append(np.stack(moved))
    if not maps:
        raise ValueError("no image with a box inside its centre crop")
    prior = centre_prior_map(size, size)
    return LocalisationResult(
        n_images=len(maps), n_queries=len(maps), box_accuracy=max_box_accuracy(maps, boxes),
        baseline_box_accuracy=max_box_accuracy([prior] * len(maps), boxes), maps=maps, images=squared,
        boxes=boxes, concepts=[concept] * len(maps),
    )


def _scene_embeddings(bundle: ClipBundle, seeds: Sequence[int], size: int) -> tuple[torch.Tensor, list[str]]:
    mean, std = bundle.image_mean_std
    scenes = [generate_scene(s, image_size=size, n_objects=1) for s in seeds]
    images = to_tensor(np.stack([scene.image for scene in scenes]), mean, std)
    return encode_images(bundle, [images]), [SHAPE_SYNSETS[scene.shapes[0]] for scene in scenes]


def scene_ood(
    bundle: ClipBundle,
    vocabulary: ConceptVocabulary,
    *,
    pairs: Sequence[tuple[str, str]] = SCENE_OOD_PAIRS,
    n_test: int = 600,
    n_train: int = 600,
    seed: int = HELD_OUT_SEED_START + OOD_SEED_OFFSET,
    train_seed: int = 0,
) -> list[OODResult]:
    """OOD detection on single-object scenes, each scene's class being its shape's synset.

    Args:
        bundle: the scene model.
        vocabulary: T and H (e.g. :func:`~.scene_concepts.scene_vocabulary`).
        pairs: ``(ID synset, OOD synset)`` pairs.
        n_test: test scenes (all shapes; each pair uses those under its two synsets).
        n_train: training scenes for the linear-probe baseline (training seed range).
        seed: first test seed (held-out range).
        train_seed: first training seed.

    Returns:
        One :class:`~.ood.OODResult` per pair.
    """
    size = bundle.input_size[0]
    test, test_classes = _scene_embeddings(bundle, range(seed, seed + n_test), size)
    train, train_classes = _scene_embeddings(bundle, range(train_seed, train_seed + n_train), size)
    return [
        run_ood_experiment(bundle, test, test_classes, id_synset, ood_synset, vocabulary,
                           train_embeddings=train, train_synsets=train_classes)
        for id_synset, ood_synset in pairs
    ]


def _folder_embeddings(bundle: ClipBundle, root, wordnet, limit: int | None) -> tuple[torch.Tensor, list[str]]:
    folders = class_folders(root, wordnet, limit)
    paths = [(folder.synset, path) for folder in folders for path in folder.images]
    if not paths:
        raise ValueError(f"the class folders under {root} hold no images")
    images = (bundle.preprocess(Image.fromarray(_open_rgb(p))) for _, p in tqdm(paths, desc="embedding images"))
    return encode_images(bundle, images), [s for s, _ in paths]


def folder_ood(
    bundle: ClipBundle,
    root: str | os.PathLike,
    id_synset: str,
    ood_synset: str,
    vocabulary: ConceptVocabulary,
    *,
    train_root: str | os.PathLike | None = None,
    limit: int | None = None,
) -> OODResult:
    """OOD detection on an ImageNet-style folder (class folders named by WordNet ID or synset name).

    Args:
        bundle: the model.
        root: test images, one folder per class (e.g. ImageNet ``val`` sorted into wnid folders).
        id_synset: ID concept (e.g. ``bird.n.01``); classes descending from it are ID.
        ood_synset: OOD concept (e.g. ``hunting_dog.n.01``).
        vocabulary: T and H.
        train_root: training images in the same layout, for the linear-probe MLS (optional).
        limit: at most this many images per class folder.

    Returns:
        :class:`~.ood.OODResult`.
    """
    wordnet = vocabulary._reader(None)
    test, classes = _folder_embeddings(bundle, root, wordnet, limit)
    train = train_classes = None
    if train_root is not None:
        train, train_classes = _folder_embeddings(bundle, train_root, wordnet, limit)
    return run_ood_experiment(bundle, test, classes, id_synset, ood_synset, vocabulary,
                              train_embeddings=train, train_synsets=train_classes)
