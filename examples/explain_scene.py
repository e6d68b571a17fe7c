"""Explain a generated scene with the shipped scene model, then score the maps with Quantus.

    python examples/explain_scene.py [--seed 7] [--out scene_explained.png]

Runs offline on CPU in well under a minute.
"""

import argparse

import numpy as np
import torch

from captum_clip import CLIPGradCAM, SurgeryCAM, ZeroShotClassifier, load_clip
from captum_clip.shipped import generate_scene, single_object_classnames, to_tensor
from captum_clip.evaluation import evaluate_metric, make_explain_func, make_metric
from captum_clip.viz import save_overlay, to_display_images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="scene_explained.png")
    args = parser.parse_args()

    bundle = load_clip("shapes")
    classifier = ZeroShotClassifier(bundle, single_object_classnames())
    scene = generate_scene(args.seed, image_size=64, n_objects=2)
    image = to_tensor(scene.image)                                   # (1, 3, 64, 64), normalised
    targets = [classifier.class_index(name) for name in scene.objects]
    images = image.expand(len(targets), -1, -1, -1)

    maps = {
        "CLIP Surgery": SurgeryCAM(classifier).attribute(images, target=targets)[:, 0],
        "Grad-CAM": CLIPGradCAM(classifier).attribute(images, target=targets)[:, 0],
    }
    mean, std = bundle.image_mean_std
    save_overlay(args.out, to_display_images(image, mean, std)[0], maps, scene.objects, title=scene.caption)
    print(f"{scene.caption}: wrote {args.out}")

    # Does each map point at the queried object? (Quantus PointingGame with the true masks.)
    masks = scene.masks[:, None].astype(np.float32)                  # (2, 1, 64, 64)
    for name, method in [("surgery", "surgery"), ("Grad-CAM", "gradcam")]:
        hits = evaluate_metric(make_metric("PointingGame"), classifier, images.numpy(), np.array(targets),
                               s_batch=masks, explain_func=make_explain_func(method))
        print(f"{name:>8} pointing game: {hits.tolist()}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
