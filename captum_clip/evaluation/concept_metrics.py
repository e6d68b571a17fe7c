"""The paper's concept-evaluation metrics (App. E): Deletion, Insertion, AccDrop and AccInc over concepts.

No code was released for them; this is a reconstruction, and the guessed details are marked **guess**:

* Concepts are removed / revealed one at a time in decreasing importance (the ranking of
  :class:`~captum_clip.mutual.MutualExplanation`: cos(E_img(x), z_j) x cos(E_img(x), E_txt(first descriptor))).
* Removing a concept **blurs** its pixels instead of zeroing them (the paper: to stay in distribution).
  **Guess:** the blur is App. A.3's 11x11 Gaussian (sigma 2, reflect-101 border), for deletion and for the
  insertion baseline alike.
* Deletion tracks the explained class's score 2.5 cos(E_img(x_t), w_ŷ) from the original image as concepts are
  blurred; Insertion starts from the whole image blurred and restores concepts. AccDrop / AccInc track top-1
  correctness (Chefer et al.'s positive-perturbation test) instead of the score.
* Every curve has L + 1 points (t = 0..L concepts, L = the number of concept slots, 5 in the paper); an image
  with fewer concepts keeps its last value for the remaining steps (there is nothing left to blur).
* **Guess:** the "AUC" is the un-normalised trapezoid over unit steps, sum_t (y_t + y_{t+1}) / 2, which matches
  the magnitudes of the paper's Table 1 (1.5-3.4). AccDrop / AccInc average the correctness over images first.

All perturbed images of a batch go through the image encoder together.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.classifier import ZeroShotClassifier
from ..mutual.results import ranked_concept_masks

__all__ = [
    "ConceptCurves",
    "gaussian_blur",
    "concept_perturbation_curves",
    "trapezoid_auc",
    "concept_deletion",
    "concept_insertion",
    "accuracy_drop",
    "accuracy_increase",
    "concept_metric_values",
    "evaluate_concepts",
]

#: CLIPScore's w, the paper's score scale.
SCORE_SCALE = 2.5


class ConceptCurves(NamedTuple):
    """Per-image curves of a concept perturbation run.

    Attributes:
        scores: (B, L + 1) float32 score_scale x cos(E_img(x_t), w_target) at each step.
        correct: (B, L + 1) bool top-1 prediction of x_t == label.
        auc: (B,) float32 trapezoid AUC of ``scores``.
    """

    scores: Tensor
    correct: Tensor
    auc: Tensor


def gaussian_blur(images: Tensor, ksize: int = 11, sigma: float = 0.0) -> Tensor:
    """Per-channel Gaussian blur with OpenCV's kernel and reflect-101 border, on any (normalised) images.

    Blurring commutes with the per-channel affine normalisation, so blurring normalised tensors equals blurring
    the pixels (before uint8 rounding).

    Args:
        images: (B, C, H, W).
        ksize: odd kernel size (11).
        sigma: standard deviation; <= 0 uses OpenCV's rule 0.3 ((ksize - 1) / 2 - 1) + 0.8 (= 2 for 11).

    Returns:
        (B, C, H, W) blurred images.
    """
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"ksize must be a positive odd integer; got {ksize}.")
    if sigma <= 0:
        sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    half = ksize // 2
    offsets = torch.arange(ksize, dtype=torch.float64, device=images.device) - half
    kernel = torch.exp(-(offsets ** 2) / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).to(images.dtype)
    c = images.shape[1]
    # reflect (= OpenCV's reflect-101) needs the pad to be smaller than the image side; tiny images replicate.
    mode = "reflect" if min(images.shape[-2:]) > half else "replicate"
    x = F.pad(images, (half, half, half, half), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, ksize).expand(c, 1, 1, ksize), groups=c)
    return F.conv2d(x, kernel.view(1, 1, ksize, 1).expand(c, 1, ksize, 1), groups=c)


def trapezoid_auc(curves: Tensor) -> Tensor:
    """Un-normalised trapezoid over unit steps along the last axis (**guess**, see the module docstring)."""
    return 0.5 * (curves[..., :-1] + curves[..., 1:]).sum(dim=-1)


def concept_perturbation_curves(
    classifier: ZeroShotClassifier,
    images: Tensor,
    concept_masks: Tensor,
    mode: str = "deletion",
    target: Optional[Tensor] = None,
    labels: Optional[Tensor] = None,
    blur_ksize: int = 11,
    score_scale: float = SCORE_SCALE,
    batch_size: int = 256,
) -> ConceptCurves:
    """Blur (deletion) or restore (insertion) concepts one at a time in rank order and track the prediction.

    Args:
        classifier: the zero-shot classifier.
        images: (B, 3, H, W) normalised images.
        concept_masks: (B, L, H, W) bool, most important concept first, empty masks for missing concepts
            (e.g. :func:`~captum_clip.mutual.ranked_concept_masks`).
        mode: ``"deletion"`` (start from the image, blur concepts) or ``"insertion"`` (start from the blurred
            image, restore concepts).
        target: (B,) class indices whose score is tracked; default the prediction on the original images.
        labels: (B,) class indices correctness is checked against; default ``target``.
        blur_ksize: Gaussian kernel size of the blur.
        score_scale: multiplier of the cosine (2.5).
        batch_size: perturbed images per encoder call.

    Returns:
        :class:`ConceptCurves`.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion'; got {mode!r}.")
    if concept_masks.dim() != 4 or concept_masks.shape[0] != images.shape[0] or \
            concept_masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"concept_masks must be (B, L, H, W) matching images {tuple(images.shape)}; got "
                         f"{tuple(concept_masks.shape)}.")
    b, n_slots = concept_masks.shape[:2]
    masks = concept_masks.to(images.device, torch.bool)
    text = classifier.text_features.to(images.device)
    with torch.no_grad():
        if target is None:
            target = (classifier.image_features(images) @ text.T).argmax(dim=-1)
        target = torch.as_tensor(target, device=images.device).long().view(-1)
        labels = target if labels is None else torch.as_tensor(labels, device=images.device).long().view(-1)
        blurred = gaussian_blur(images, blur_ksize)
        # Step t has the first t concepts blurred (deletion) or restored (insertion).
        steps = torch.cat([torch.zeros_like(masks[:, :1]), masks.cumsum(dim=1) > 0], dim=1)  # (B, L+1, H, W)
        changed = steps[:, :, None]
        if mode == "deletion":
            perturbed = torch.where(changed, blurred[:, None], images[:, None])
        else:
            perturbed = torch.where(changed, images[:, None], blurred[:, None])
        flat = perturbed.reshape(b * (n_slots + 1), *images.shape[1:])
        features = torch.cat([classifier.image_features(flat[i:i + batch_size])
                              for i in range(0, flat.shape[0], batch_size)])
        cosines = (features @ text.T).view(b, n_slots + 1, -1)
    scores = score_scale * cosines.gather(-1, target.view(b, 1, 1).expand(b, n_slots + 1, 1)).squeeze(-1)
    correct = cosines.argmax(dim=-1) == labels[:, None]
    return ConceptCurves(scores.float(), correct, trapezoid_auc(scores.float()))


def concept_deletion(classifier, images, concept_masks, target=None, **options) -> Tensor:
    """Deletion (lower is better): AUC of the class score as concepts are blurred in rank order.

    Returns:
        (B,) float32 per-image AUC (see :func:`concept_perturbation_curves` for the arguments).
    """
    return concept_perturbation_curves(classifier, images, concept_masks, "deletion", target, **options).auc


def concept_insertion(classifier, images, concept_masks, target=None, **options) -> Tensor:
    """Insertion (higher is better): AUC of the class score as concepts are restored on the blurred image.

    Returns:
        (B,) float32 per-image AUC.
    """
    return concept_perturbation_curves(classifier, images, concept_masks, "insertion", target, **options).auc


def accuracy_drop(classifier, images, concept_masks, labels, **options) -> Tensor:
    """AccDrop (lower is better): AUC of top-1 accuracy over the images as concepts are blurred.

    Args:
        labels: (B,) ground-truth class indices.

    Returns:
        () float32 AUC of the accuracy curve (accuracy = mean correctness at each step).
    """
    curves = concept_perturbation_curves(classifier, images, concept_masks, "deletion", labels=labels, **options)
    return trapezoid_auc(curves.correct.float().mean(dim=0))


def accuracy_increase(classifier, images, concept_masks, labels, **options) -> Tensor:
    """AccInc (higher is better): AUC of top-1 accuracy as concepts are restored on the blurred image.

    Returns:
        () float32 AUC of the accuracy curve.
    """
    curves = concept_perturbation_curves(classifier, images, concept_masks, "insertion", labels=labels, **options)
    return trapezoid_auc(curves.correct.float().mean(dim=0))


def concept_metric_values(method, images: Tensor, labels: Tensor, target=None, reference_images=None,
                          blur_ksize: int = 11) -> Dict[str, Tensor]:
    """The four concept metrics per image, for a :class:`~captum_clip.mutual.MutualConceptAttribution`.

    Args:
        method: the attribution (its classifier, ``n_parts`` and ranking are used).
        images: (B, 3, H, W) normalised images.
        labels: (B,) ground-truth class indices (for AccDrop / AccInc).
        target: the class whose score Deletion / Insertion track, and whose concepts are ranked; default the
            zero-shot prediction.
        reference_images: passed to ``explain``.
        blur_ksize: blur kernel size.

    Returns:
        ``{"deletion", "insertion", "acc_drop", "acc_inc"}``, each (B,) float32. An image's AccDrop / AccInc
        is the AUC of its own 0/1 correctness curve; their mean over images is the paper's AUC of the
        accuracy curve, since the AUC is linear.
    """
    explanations = method.explain(images, target, reference_images)
    masks = ranked_concept_masks(explanations, method.n_parts).to(images.device)
    classifier = method.classifier
    indices = [e.target for e in explanations]
    tracked = None if any(i is None for i in indices) else torch.tensor(indices, device=images.device)
    labels = torch.as_tensor(labels, device=images.device).long().view(-1)
    deletion = concept_perturbation_curves(classifier, images, masks, "deletion", tracked, labels, blur_ksize)
    insertion = concept_perturbation_curves(classifier, images, masks, "insertion", tracked, labels, blur_ksize)
    return {
        "deletion": deletion.auc,
        "insertion": insertion.auc,
        "acc_drop": trapezoid_auc(deletion.correct.float()),
        "acc_inc": trapezoid_auc(insertion.correct.float()),
    }


def evaluate_concepts(method, images: Tensor, labels: Tensor, target=None, reference_images=None,
                      blur_ksize: int = 11) -> Dict[str, float]:
    """All four concept metrics of a :class:`~captum_clip.mutual.MutualConceptAttribution` on a batch.

    Arguments as :func:`concept_metric_values`.

    Returns:
        ``{"deletion", "insertion", "acc_drop", "acc_inc"}``, each averaged over the images.
    """
    values = concept_metric_values(method, images, labels, target, reference_images, blur_ksize)
    return {name: float(value.mean()) for name, value in values.items()}
