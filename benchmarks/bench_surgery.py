"""Cost of each method relative to one vanilla ``encode_image`` forward, measured in one run.

ViT-B-16 with random weights (no download needed), 224 px, B=8 images, K=80 classes.
Text embeddings are computed once when the classifier is built and are not timed.

    python benchmarks/bench_surgery.py [--repeats 3] [--devices cpu,cuda] [--precisions fp32,bf16] [--batch 8]
        [--out benchmarks/results_surgery.md]

Each precision is the bundle's (autocast around every forward pass, weights in fp32); the vanilla anchor runs
under the same autocast, so a ratio compares like with like. The throughput column is the inverse of the ratio:
the method's images per second as a fraction of vanilla ``encode_image``'s.
"""

from __future__ import annotations

import argparse
import platform

import open_clip
import torch

from _tables import publish
from _timing import device_precisions, paired

from captum_clip import CLIPGradCAM, CLIPIntegratedGradients, ClipBundle, RawCLIPSimilarity, SurgeryCAM, ZeroShotClassifier
from captum_clip.core.precision import autocast


def run(device: torch.device, repeats: int, batch: int, classes: int, precision: str = "fp32") -> list:
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16").eval().to(device)
    bundle = ClipBundle(model=model, preprocess=None, tokenizer=open_clip.get_tokenizer("ViT-B-16"), name="ViT-B-16",
                        precision=precision)
    # One template keeps the untimed set-up short on CPU; the timed work does not depend on it.
    classifier = ZeroShotClassifier(bundle, [f"class {i}" for i in range(classes)], templates=["a photo of a {}."])
    images = torch.randn(batch, 3, 224, 224, device=device)
    surgery, raw, gradcam, ig = SurgeryCAM(classifier), RawCLIPSimilarity(classifier), CLIPGradCAM(classifier), \
        CLIPIntegratedGradients(classifier)

    def vanilla():
        with torch.no_grad(), autocast(device, precision):
            model.encode_image(images)

    rows = [
        ("vanilla encode_image", f"B={batch}", vanilla),
        ("SurgeryCAM (label set, predicted class)", f"B={batch}, K={classes}", lambda: surgery.attribute(images)),
        ("SurgeryCAM, all K maps", f"B={batch}, K={classes}", lambda: surgery.attribute_all(images)),
        ("SurgeryCAM, the reference's way", f"{batch} images one at a time, K={classes}",
         lambda: [surgery.attribute(images[i:i + 1]) for i in range(batch)]),
        ("raw CLIP similarity", f"B={batch}, K={classes}", lambda: raw.attribute(images)),
        ("Grad-CAM, 10 targets", f"B={batch}, 10 calls", lambda: [gradcam.attribute(images, target=k) for k in range(10)]),
        ("Grad-CAM attribute_all, 10 targets", f"B={batch}, one shared forward",
         lambda: gradcam.attribute_all(images, targets=list(range(10)))),
        ("Integrated Gradients, n_steps=50", "1 image", lambda: ig.attribute(images[:1], target=0, n_steps=50,
                                                                           internal_batch_size=batch)),
    ]
    # A GPU's first calls pay for kernel selection and handles, so every row is warmed up there; on a CPU the
    # long rows (Grad-CAM's 10 calls, IG) would double the run for nothing.
    for function in [row[2] for row in rows] if device.type == "cuda" else (vanilla, rows[1][2], rows[3][2]):
        function()
    # Grad-CAM and IG are many passes each already: one paired run is enough.
    results = []
    for name, setting, function in rows:
        repeats_here = 1 if name.startswith(("Grad-CAM,", "Integrated")) else repeats
        seconds, ratio = paired(function, vanilla, repeats_here, device)
        results.append((name, setting, seconds, ratio))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16 (one table each)")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args()

    lines = [f"torch {torch.__version__}, open_clip {open_clip.__version__}, {platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads", ""]
    for device, label, precision in device_precisions(args.devices, args.precisions):
        lines += [f"### {label}, {precision}", "", "| method | setting | seconds | × vanilla forward (median of "
                  "paired runs) | throughput, × vanilla |", "|---|---|---:|---:|---:|"]
        for method, setting, seconds, ratio in run(device, args.repeats, args.batch, args.classes, precision):
            lines.append(f"| {method} | {setting} | {seconds:.4f} | {ratio:.2f} | {1 / ratio:.2f} |")
        lines.append("")
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
