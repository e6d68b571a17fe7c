"""Mutual Knowledge on a generated scene of a red star and a blue ring, with the shipped scene model, offline.

    python -m captum_clip.shipped.mutual_example [--seed 3888] [--u 8] [--out mutual_scene.png]
        [--model shapes] [--pretrained FILE] [--survey]

The label set is the 36 "colour shape" classes the scene model was trained for, the bank is
:func:`~captum_clip.mutual.scene_descriptor_bank` (descriptors in that model's vocabulary), and u = 8 is the
number of descriptors a class has in that bank (the paper's u = 50 would exceed the 48-descriptor bank and make
every descriptor "mutual"). The concepts are fitted on the scene itself.
"""

from __future__ import annotations

import argparse
from typing import List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F

from ..core.classifier import ZeroShotClassifier
from . import Scene, generate_scene, single_object_classnames, to_tensor
from .zero_shot import ZERO_SHOT_TEMPLATES
from ..core.loading import ClipBundle, load_clip
from ..viz import to_display_images
from ..mutual.attribution import MutualConceptAttribution
from ..mutual.figure import save_concept_figure
from ..mutual.results import MutualExplanation
from .presets import scene_descriptor_bank

__all__ = ["RED_STAR_BLUE_RING_SEED", "RED_STAR_BLUE_RING_SEEDS", "SceneExplanation", "SceneSurvey",
           "concept_mass_on_objects", "explain_scene", "find_scene_seeds", "object_cell_share", "object_patch_fraction",
           "survey_scenes", "main"]

#: A two-object scene of the generator holding exactly a red star and a blue ring.
RED_STAR_BLUE_RING_SEED = 3888
#: The first 16 two-object scenes from seed 3000 on that hold exactly a red star and a blue ring
#: (``find_scene_seeds(("red star", "blue ring"), 3000, 11000)``); the survey runs over them.
RED_STAR_BLUE_RING_SEEDS = (3088, 3180, 3888, 3998, 6689, 6827, 6831, 7151, 7562, 8049, 8136, 8467, 9110, 10009,
                            10555, 10906)


class SceneExplanation(NamedTuple):
    """A scene, its model input, its explanation and the method that produced it."""

    scene: Scene
    image: torch.Tensor
    explanation: MutualExplanation
    method: MutualConceptAttribution


def explain_scene(seed: int = RED_STAR_BLUE_RING_SEED, bundle: Optional[ClipBundle] = None, u: int = 8,
                  n_objects: int = 2) -> SceneExplanation:
    """Explain the zero-shot prediction of one generated scene with the scene model and the scene bank.

    Args:
        seed: scene seed (default: a red star and a blue ring).
        bundle: the model; default ``load_clip("shapes")``.
        u: size of the class's descriptor set D_ŷ.
        n_objects: objects in the scene.

    Returns:
        :class:`SceneExplanation`.
    """
    bundle = bundle or load_clip("shapes")
    size = bundle.input_size[0]
    scene = generate_scene(seed, image_size=size, n_objects=n_objects)
    mean, std = bundle.image_mean_std
    image = to_tensor(scene.image, mean, std).to(bundle.device)
    classifier = ZeroShotClassifier(bundle, single_object_classnames(), list(ZERO_SHOT_TEMPLATES))
    method = MutualConceptAttribution(classifier, scene_descriptor_bank(), u=u)
    return SceneExplanation(scene, image, method.explain(image)[0], method)


def object_patch_fraction(explanation: MutualExplanation, scene: Scene, cell: int) -> List[float]:
    """Per concept, the fraction of its pixels on grid cells that touch an object.

    Concepts are unions of whole grid cells, so a concept on an object also covers the cell's background
    pixels; the cell-level criterion does not count those against it.

    Args:
        explanation: the scene's explanation.
        scene: the scene (its object masks).
        cell: pixels per grid cell.

    Returns:
        One fraction per concept, in importance order.
    """
    on_object = _object_cells(scene, cell)
    return [float((m & on_object).sum() / m.sum()) for m in explanation.masks]


def _object_cells(scene: Scene, cell: int) -> torch.Tensor:
    """(H, W) bool: the pixels of grid cells that touch an object."""
    objects = torch.from_numpy(scene.masks.any(axis=0))[None, None].float()
    cells = F.max_pool2d(objects, cell, ceil_mode=True)[0, 0] > 0
    return cells.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[: objects.shape[-2], : objects.shape[-1]]


def concept_mass_on_objects(explanation: MutualExplanation, scene: Scene, cell: int) -> float:
    """Share of all concept pixels that lie on grid cells touching an object (0 when there is no concept)."""
    mass = torch.tensor([float(m.sum()) for m in explanation.masks])
    if not len(mass):
        return 0.0
    fractions = torch.tensor(object_patch_fraction(explanation, scene, cell))
    return float((fractions * mass).sum() / mass.sum())


def find_scene_seeds(objects: Sequence[str], start: int, stop: int, image_size: int = 64) -> List[int]:
    """Seeds in ``[start, stop)`` whose two-object scene holds exactly ``objects`` (e.g. a red star and a blue ring)."""
    wanted = sorted(objects)
    return [seed for seed in range(start, stop)
            if sorted(generate_scene(seed, image_size=image_size, n_objects=len(wanted)).objects) == wanted]


def object_cell_share(scene: Scene, cell: int) -> float:
    """Fraction of the image's pixels on grid cells that touch an object: where a concept placed at random lands."""
    return float(_object_cells(scene, cell).float().mean())


class SceneSurvey(NamedTuple):
    """Per scene: the seed, the predicted class, the concept mass on object cells and the object cells' share."""

    seeds: List[int]
    predictions: List[str]
    on_objects: List[float]
    chance: List[float]


def survey_scenes(seeds: Sequence[int] = RED_STAR_BLUE_RING_SEEDS, bundle: Optional[ClipBundle] = None,
                  u: int = 8) -> SceneSurvey:
    """Explain each scene alone and measure where its concepts lie.

    ``on_objects`` is :func:`concept_mass_on_objects`; ``chance`` is
    :func:`object_cell_share`, what concepts placed without looking at the image would get.
    """
    bundle = bundle or load_clip("shapes")
    predictions, on_objects, chance = [], [], []
    for seed in seeds:
        result = explain_scene(seed, bundle=bundle, u=u)
        cell = result.method.tower.cell_size[0]
        predictions.append(result.explanation.target_name)
        on_objects.append(concept_mass_on_objects(result.explanation, result.scene, cell))
        chance.append(object_cell_share(result.scene, cell))
    return SceneSurvey(list(seeds), predictions, on_objects, chance)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=RED_STAR_BLUE_RING_SEED)
    parser.add_argument("--u", type=int, default=8)
    parser.add_argument("--out", default="mutual_scene.png")
    parser.add_argument("--model", default="shapes", help="the scene model, or a config JSON of the same kind")
    parser.add_argument("--pretrained", default=None, help="checkpoint for --model (default: the shipped weights)")
    parser.add_argument("--survey", action="store_true",
                        help="also explain each of the 16 red-star-and-blue-ring scenes of RED_STAR_BLUE_RING_SEEDS "
                             "and print where their concepts lie")
    args = parser.parse_args(argv)
    bundle = load_clip(args.model, pretrained=args.pretrained)
    result = explain_scene(args.seed, bundle=bundle, u=args.u)
    e, scene = result.explanation, result.scene
    cell = result.method.tower.cell_size[0]
    mean, std = result.method.classifier.bundle.image_mean_std
    model = "shipped 'shapes' model" if args.model == "shapes" and args.pretrained is None else args.model
    title = (f"scene {args.seed}: {scene.caption} - {model}, scene bank (D = {len(result.method.bank)}, "
             f"u = {args.u})\npredicted {e.target_name!r}: MI {e.mi:.2f}, AUC {e.auc:.2f}")
    path = save_concept_figure(args.out, to_display_images(result.image, mean, std)[0], e, title=title)
    print(f"wrote {path}")
    print(f"predicted: {e.target_name}")
    for descriptors, fraction in zip(e.concept_descriptors, object_patch_fraction(e, scene, cell)):
        print(f"  concept on object cells {fraction:.2f}: {', '.join(descriptors)}")
    print(f"Dv: {[d for d, _ in e.visual_descriptors]}")
    print(f"D_y: {e.text_descriptors}")
    print(f"mutual: {e.mutual}  MI {e.mi:.3f}  AUC {e.auc:.3f}")
    if args.survey:
        survey = survey_scenes(bundle=bundle, u=args.u)
        print("survey: seed, prediction, concept mass on object cells, object cells' share (chance)")
        for row in zip(survey.seeds, survey.predictions, survey.on_objects, survey.chance):
            print("  {} {:<12} {:.2f} {:.2f}".format(*row))
        n = len(survey.seeds)
        print(f"mean over {n} scenes: {sum(survey.on_objects) / n:.3f} on object cells, chance "
              f"{sum(survey.chance) / n:.3f}; scenes with more than half of the mass on object cells: "
              f"{sum(v > 0.5 for v in survey.on_objects)}/{n}")


if __name__ == "__main__":
    main()
