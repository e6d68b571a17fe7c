"""Mutual Knowledge (Sammani & Deligiannis, NeurIPS 2024) as a Captum ``Attribution`` for open_clip models.

Pipeline for a batch of images, all steps batched over images:

(a) visual concepts: last-block features -> GDC foreground -> PCA / k-means parts, fitted jointly on the batch
    (or on ``reference_images``) -> pixel masks (:mod:`.concepts`);
(b) each concept -> descriptors: ellipse of its largest region, three visual prompts, *all prompts of all
    images through the image encoder in one batched pass*, concept embedding = mean of the 3, scores against
    the bank, top-k ∩, relevance filter, Sinkhorn, top-3 per concept, Dv ordered by 2.5 cos (:mod:`.prompts`,
    :mod:`.matching`);
(c) the language side: the top-u descriptors of the explained class;
(d) mutual information of Dv and D_ŷ, its dynamics and AUC (:mod:`.information`).

Where the paper and the released code disagree, the code is followed (see ``docs/mutual.md``).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from captum.log import log_usage
from torch import Tensor

from ..base.inputs import check_images
from ..base.method import ClipAttribution, runs_passes
from ..base.targets import ResolvedTargets, TargetLike
from ..core.classifier import ZeroShotClassifier
from ..defaults import fill_defaults
from ..errors import require_finite
from .bank_embeddings import DESCRIPTOR_TEMPLATE, BankEmbeddings, encode_descriptor_bank
from .concepts import ConceptBasis, VisualConcepts, apply_concept_basis, fit_concept_basis, tower_features
from .descriptor_bank import BankSource, DescriptorBank, load_descriptor_bank, wordnet_descriptor_bank
from .information import mutual_descriptor_mask, mutual_information_dynamics
from .matching import DescriptorMatch, class_descriptors, match_descriptors
from .prompts import RENDERERS, VisualPromptStack, concept_embedding, denormalize_to_uint8, ellipse_masks, \
    fit_concept_ellipses, normalize_uint8_images, prompt_layers, render_visual_prompts
from .results import MutualExplanation

__all__ = ["MutualConceptAttribution", "ReferenceLike"]

#: ``reference_images`` may be images to fit the concepts on, or a basis fitted before.
ReferenceLike = Union[None, Tensor, ConceptBasis]

_FOREGROUND_METHODS = ("svd", "pca")
_PART_METHODS = ("pca", "kmeans")


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


class MutualConceptAttribution(ClipAttribution):
    r"""Concepts that CLIP's vision and language encoders share for a zero-shot prediction.

    Sammani & Deligiannis, "Interpreting and Analysing CLIP's Zero-Shot Image Classification via Mutual
    Knowledge", NeurIPS 2024 (arXiv 2410.13016).

    The vision side names visual concepts (parts of the prominent patches) with descriptors of a bank; the
    language side lists the descriptors closest to the class embedding; the mutual information of the two sets
    and how fast it drops as visual descriptors are removed (AUC) measure the shared knowledge. Forward-only,
    no gradients; the model is never modified.

    Concepts are fitted *jointly* on the images explained together (the paper explains the 50 validation
    images of a class at once): a part id means the same part in every image, and one image's concepts depend
    on the rest of the batch. Pass ``reference_images`` to fit them on another set (e.g. a class-sized batch)
    and apply them to ``inputs``; explaining a batch equals explaining its images one at a time with that batch
    (or its :meth:`fit_concepts` basis) as the reference.

    Args:
        classifier (ZeroShotClassifier): model, tokenizer and the class embeddings w_y of the label set.
        descriptors: the descriptor bank: a ``{class: [descriptors]}`` JSON path or mapping (deduplicated in
            first-occurrence order), a list of strings, or a :class:`DescriptorBank`. Default (None): the defaults
            table's (:mod:`captum_clip.defaults`): a bank generated from WordNet for the classifier's class names
            (:func:`wordnet_descriptor_bank`), or the scene bank for the shipped model.
        facet (str): ``"tokens"`` (last-block output, the released notebook) or ``"keys"`` (last-block keys, the
            paper's CorLoc preference).
        foreground_method (str): ``"svd"`` (GDC) or ``"pca"``.
        part_method (str): ``"pca"`` or ``"kmeans"``.
        n_parts (int): L, parts per fit (5).
        k (int): per-concept top-k of the candidate intersection (500; clipped to the bank size).
        offset (float): relevance-filter offset below the candidates' mean relevance (0.02).
        tau (float): Sinkhorn temperature (1).
        sinkhorn_iters (int): at most this many Sinkhorn iterations (1000); it stops earlier on convergence.
        top (int): descriptors per concept (3).
        u (int): size of the class's descriptor set D_ŷ (None: the defaults table's, 50, or 8 for the shipped
            model's scene bank; clipped to the bank size).
        score_scale (float): CLIPScore's w = 2.5.
        thickness (int): ellipse outline thickness (1).
        blur_ksize (int): Gaussian kernel of the blurred prompt (11).
        min_second_size (int): the second foreground component is kept from this many patches (5).
        random_state (int): k-means seed.
        template (str): template of the descriptor classifier W_D ("a photo showing {}").
        cache_dir (str or os.PathLike, optional): where bank embeddings (and the WordNet bank) are cached; default
            :func:`captum_clip.core.cache.cache_root`.
        use_cache (bool): read and write those caches.
        prompt_batch_size (int, optional): prompt images per image-encoder call; None: the tower's pass size for
            the device (on a CPU about 1,536 tokens, e.g. 23 prompts at the shipped model's 64 px, faster per
            image than one large pass; 256 on a GPU), in passes of equal size.
    """

    def __init__(
        self,
        classifier: ZeroShotClassifier,
        descriptors: Optional[BankSource] = None,
        *,
        facet: str = "tokens",
        foreground_method: str = "svd",
        part_method: str = "pca",
        n_parts: int = 5,
        k: int = 500,
        offset: float = 0.02,
        tau: float = 1.0,
        sinkhorn_iters: int = 1000,
        top: int = 3,
        u: Optional[int] = None,
        score_scale: float = 2.5,
        thickness: int = 1,
        blur_ksize: int = 11,
        min_second_size: int = 5,
        random_state: int = 0,
        template: str = DESCRIPTOR_TEMPLATE,
        cache_dir=None,
        use_cache: bool = True,
        prompt_batch_size: Optional[int] = None,
    ) -> None:
        super().__init__(classifier)
        options = fill_defaults("mutual", classifier, {"descriptors": descriptors, "u": u})
        descriptors, u = options["descriptors"], options["u"]
        if facet not in classifier.tower.FEATURE_FACETS:
            raise ValueError(f"facet must be one of {classifier.tower.FEATURE_FACETS}; got {facet!r}.")
        if foreground_method not in _FOREGROUND_METHODS:
            raise ValueError(f"foreground_method must be one of {_FOREGROUND_METHODS}; got {foreground_method!r}.")
        if part_method not in _PART_METHODS:
            raise ValueError(f"part_method must be one of {_PART_METHODS}; got {part_method!r}.")
        if blur_ksize < 1 or blur_ksize % 2 == 0:
            raise ValueError(f"blur_ksize must be a positive odd integer; got {blur_ksize!r}.")
        if not tau > 0:
            raise ValueError(f"tau must be positive; got {tau!r}.")
        self.facet = facet
        self.foreground_method = foreground_method
        self.part_method = part_method
        self.n_parts = _positive_int("n_parts", n_parts)
        self.k = _positive_int("k", k)
        self.offset = float(offset)
        self.tau = float(tau)
        self.sinkhorn_iters = _positive_int("sinkhorn_iters", sinkhorn_iters)
        self.top = _positive_int("top", top)
        self.u = _positive_int("u", u)
        self.score_scale = float(score_scale)
        self.thickness = _positive_int("thickness", thickness)
        self.blur_ksize = int(blur_ksize)
        self.min_second_size = _positive_int("min_second_size", min_second_size)
        self.random_state = int(random_state)
        self.prompt_batch_size = None if prompt_batch_size is None else _positive_int("prompt_batch_size",
                                                                                     prompt_batch_size)
        self.mean_std = classifier.bundle.image_mean_std

        if descriptors is None:
            self.bank: DescriptorBank = wordnet_descriptor_bank(classifier.classnames, cache_dir=cache_dir,
                                                                use_cache=use_cache)
        else:
            self.bank = load_descriptor_bank(descriptors)
        self.bank_embeddings: BankEmbeddings = encode_descriptor_bank(
            self.bank, classifier.model, classifier.tokenizer, template=template, cache_dir=cache_dir,
            use_cache=use_cache,
        ).to(self.bundle.device)

    # ----------------------------------------------------------------------------------------- stage (a)
    def _check(self, inputs) -> Tuple[Tensor, bool]:
        images, is_tuple, _ = self._inputs(inputs)
        return images, is_tuple

    @runs_passes
    def fit_concepts(self, reference_images: Tensor) -> ConceptBasis:
        """Fit the foreground and parts on a set of images (e.g. the 50 images of a class).

        Args:
            reference_images: normalised images ``(R, 3, H, W)``.

        Returns:
            A :class:`ConceptBasis` to pass as ``reference_images`` to :meth:`explain` / :meth:`attribute`.
        """
        images = check_images(reference_images, self.tower.cell_size).to(self.bundle.device)
        patches, _, grid = tower_features(self.tower, images, self.facet)
        return self._fit(patches, grid)

    def _fit(self, patches: Tensor, grid) -> ConceptBasis:
        return fit_concept_basis(patches, grid, self.facet, self.foreground_method, self.part_method, self.n_parts,
                                 self.min_second_size, self.random_state)

    @runs_passes
    def visual_concepts(self, inputs, reference_images: ReferenceLike = None) -> VisualConcepts:
        """Stage (a) only: the visual concepts of ``inputs``.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)`` (or a 1-tuple of them).
            reference_images: None (fit on ``inputs``), images to fit on, or a :class:`ConceptBasis`.

        Returns:
            :class:`VisualConcepts` in the reference's visiting order.
        """
        return self._visual_concepts(self._check(inputs)[0], reference_images)

    def _visual_concepts(self, images: Tensor, reference_images: ReferenceLike) -> VisualConcepts:
        patches, embeddings, grid = tower_features(self.tower, images, self.facet)
        if isinstance(reference_images, ConceptBasis):
            basis = reference_images
            if basis.facet != self.facet or basis.parts.components.shape[1] != patches.shape[-1]:
                raise ValueError(
                    f"the concept basis was fitted on {basis.facet!r} features with "
                    f"{basis.parts.components.shape[1]} channels; this method uses {self.facet!r} features with "
                    f"{patches.shape[-1]} channels."
                )
        elif reference_images is None:
            basis = self._fit(patches, grid)
        elif isinstance(reference_images, Tensor):
            basis = self.fit_concepts(reference_images)
        else:
            raise ValueError("reference_images must be None, an image tensor (R, 3, H, W) or a ConceptBasis from "
                             f"fit_concepts; got {type(reference_images).__name__}.")
        return apply_concept_basis(basis, patches, embeddings, grid, tuple(images.shape[-2:]), self.tower.cell_size)

    # ----------------------------------------------------------------------------------------- stage (b)
    def _encode_prompts(self, prompts, device) -> Tensor:
        """(n, H, W, 3) uint8 prompt images -> (n, E) embeddings, in passes of at most ``prompt_batch_size``.

        ``prompts`` is a numpy array, a tensor or a lazy :class:`~.prompts.VisualPromptStack` (composed a chunk at
        a time, on its device).
        """
        mean, std = self.mean_std
        rows = []
        most = self.prompt_batch_size or self.tower.images_per_pass(tuple(prompts.shape[1:3]), device)
        n = len(prompts)
        per_pass = math.ceil(n / math.ceil(n / most)) if n else 1  # passes of equal size
        with torch.no_grad():
            for start in range(0, len(prompts), per_pass):
                batch = normalize_uint8_images(prompts[start:start + per_pass], mean, std)
                rows.append(require_finite(self.tower.encode(batch.to(device)).float(),
                                           "Mutual Knowledge: the visual-prompt embeddings"))
        return torch.cat(rows) if rows else torch.zeros(0, self.bank_embeddings.prompted.shape[1], device=device)

    @runs_passes
    def concept_embeddings(self, images: Tensor, concepts: VisualConcepts, renderer: str = "torch"
                           ) -> Tuple[Tensor, Tensor, np.ndarray]:
        """Embed every concept through its three visual prompts, all images' prompts batched together.

        The prompts of all (image, concept) pairs are drawn together: ellipse masks and compositing are tensor ops
        on the images' device (``renderer="torch"``, OpenCV's pixels exactly), then encoded in equal passes of at
        most ``prompt_batch_size`` (None: the tower's pass size for the device). ``renderer="opencv"`` draws them
        with the reference's ``cv2`` loop instead (same pixels).

        Args:
            images: the normalised images ``(B, 3, H, W)`` the concepts belong to.
            concepts: their :class:`VisualConcepts`.
            renderer: ``"torch"`` or ``"opencv"`` (see :mod:`.prompts`).

        Returns:
            ``(z, valid, ellipses)``: z (B, L, E) float32 concept embeddings (mean of the 3 unit-norm prompt
            embeddings, not renormalised; zeros at invalid slots), valid (B, L) bool (concept present with a
            non-empty mask), ellipses (B, L, 5) float64 (NaN at invalid slots).
        """
        if renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {RENDERERS}; got {renderer!r}.")
        b, n_slots = concepts.part_ids.shape
        ellipses, valid = self._prompt_ellipses(concepts)
        valid = valid.to(images.device)
        rows, cols = torch.nonzero(valid, as_tuple=True)
        embedded = self._encode_prompts(self._draw_prompts(images, ellipses, rows, cols, renderer), images.device)
        z = torch.zeros(b, n_slots, embedded.shape[-1], device=images.device)
        if len(rows):
            z[rows, cols] = concept_embedding(embedded.view(len(rows), 3, -1))
        return z, valid, ellipses

    @staticmethod
    def _prompt_ellipses(concepts: VisualConcepts) -> Tuple[np.ndarray, Tensor]:
        """``(ellipses, valid)``: each slot's fitted ellipse (B, L, 5), NaN where none, and (B, L) whether the
        slot holds a concept with a non-empty mask."""
        n_slots = concepts.part_ids.shape[1]
        ellipses = fit_concept_ellipses(concepts.masks)
        slot = torch.arange(n_slots, device=concepts.n_concepts.device)[None, :]
        valid = torch.from_numpy(np.isfinite(ellipses).all(axis=-1)).to(concepts.n_concepts.device)
        return ellipses, valid & (slot < concepts.n_concepts[:, None])

    def _draw_prompts(self, images: Tensor, ellipses: np.ndarray, rows: Tensor, cols: Tensor, renderer: str
                      ) -> Union[VisualPromptStack, np.ndarray]:
        """The three prompts [red, gray, blur] of each pair (image ``rows[i]``, concept ``cols[i]``): a lazy
        :class:`~.prompts.VisualPromptStack` on the images' device (``"torch"``) or a ``(3n, H, W, 3)`` uint8
        array (``"opencv"``), with the same pixels."""
        mean, std = self.mean_std
        h, w = images.shape[-2:]
        # The reference draws on the uint8 image re-derived from the normalised tensor (truncating).
        if renderer == "torch":
            base = denormalize_to_uint8(images, mean, std, as_tensor=True)
            masks = ellipse_masks(torch.from_numpy(ellipses).to(images.device)[rows, cols], (h, w), self.thickness)
            return VisualPromptStack(prompt_layers(base, self.blur_ksize), rows, masks)
        drawn = render_visual_prompts(denormalize_to_uint8(images, mean, std), ellipses,
                                      thickness=self.thickness, blur_ksize=self.blur_ksize, renderer="opencv")
        r, c = rows.cpu().numpy(), cols.cpu().numpy()
        return np.stack([drawn.red[r, c], drawn.gray[r, c], drawn.blur[r, c]], axis=1).reshape(-1, h, w, 3)

    # ------------------------------------------------------------------------------------- stages (c, d)
    def _class_embeddings(self, images: Tensor, embeddings: Tensor, target: Union[TargetLike, ResolvedTargets]
                          ) -> Tuple[Tensor, List[Optional[int]], List[str]]:
        """w_ŷ (B, E), class indices (None for free text) and names; None = the zero-shot prediction."""
        targets = target if isinstance(target, ResolvedTargets) else self.resolve_targets(target, images.shape[0])
        text = self.classifier.text_features.to(embeddings.device)
        if targets.texts is not None:
            weights = self.classifier.encode_text(targets.texts).to(embeddings.device).float()
            return weights, targets.class_rows(), list(targets.texts)
        indices_t = (self.predicted_classes(embeddings=embeddings) if targets.predicted
                     else targets.indices.to(text.device))
        indices = [int(i) for i in indices_t.tolist()]
        return text[indices_t].float(), indices, [self.classifier.classnames[i] for i in indices]

    @runs_passes
    def explain_concepts(self, inputs, concepts: VisualConcepts, target: TargetLike = None) -> List[MutualExplanation]:
        """Stages (b)-(d) for given visual concepts (e.g. from :meth:`visual_concepts`, possibly edited).

        Args:
            inputs (Tensor or tuple[Tensor]): the normalised images ``(N, 3, H, W)`` the concepts belong to.
            concepts: their :class:`VisualConcepts`.
            target: as in :meth:`explain`.

        Returns:
            One :class:`MutualExplanation` per image.
        """
        images, _ = self._check(inputs)
        if concepts.masks.shape[0] != images.shape[0] or concepts.masks.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"concepts of {tuple(concepts.masks.shape)} do not belong to images of "
                             f"{tuple(images.shape)}.")
        return self._explain_concepts(images, concepts, target)

    def _explain_concepts(self, images: Tensor, concepts: VisualConcepts, target: Union[TargetLike, ResolvedTargets]
                          ) -> List[MutualExplanation]:
        embeddings = concepts.image_embeddings.to(images.device)
        class_weights, indices, names = self._class_embeddings(images, embeddings, target)
        z, valid, ellipses = self.concept_embeddings(images, concepts)
        bank = self.bank_embeddings.to(images.device)  # no-op unless the model moved since construction
        concept_scores = z @ bank.prompted.T  # ℓ (B, L, D)
        relevance = embeddings @ bank.bare.T  # r (B, D)
        match = match_descriptors(
            concept_scores, relevance, valid, k=self.k, offset=self.offset, tau=self.tau,
            sinkhorn_iters=self.sinkhorn_iters, top=self.top, score_scale=self.score_scale,
        )
        class_ids = class_descriptors(class_weights @ bank.prompted.T, torch.arange(images.shape[0]), self.u)
        dynamics = mutual_information_dynamics(match.dv_ids, class_ids, match.dv_scores)
        importance = self._concept_importance(embeddings, z, valid, match, relevance)
        return self._per_image(concepts, match, class_ids, dynamics, importance, valid, ellipses, indices, names)

    @staticmethod
    def _concept_importance(embeddings: Tensor, z: Tensor, valid: Tensor, match: DescriptorMatch,
                            relevance: Tensor) -> Tensor:
        """(B, L) cos(E_img(x), z_j) x cos(E_img(x), E_txt(first descriptor of j)); 0 without descriptor."""
        visual = (F.normalize(z, dim=-1) * embeddings[:, None, :]).sum(-1)
        first = match.selected[..., 0]
        textual = relevance.gather(-1, first.clamp(min=0))
        textual = torch.where(first >= 0, textual, torch.zeros_like(textual))
        return torch.where(valid, visual * textual, torch.zeros_like(visual))

    def _per_image(self, concepts, match, class_ids, dynamics, importance, valid, ellipses, indices, names
                   ) -> List[MutualExplanation]:
        words = self.bank.descriptors
        mutual = mutual_descriptor_mask(match.dv_ids, class_ids)
        results = []
        for b in range(len(indices)):
            slots = torch.nonzero(valid[b]).flatten()
            # Most important concept first; stable so ties keep the visiting order.
            slots = slots[importance[b, slots].sort(descending=True, stable=True).indices]
            slots_cpu = slots.cpu()
            dv_n = int(match.dv_lengths[b])
            dv_ids = match.dv_ids[b, :dv_n].tolist()
            dv_scores = match.dv_scores[b, :dv_n].tolist()
            text_ids = class_ids[b].tolist()
            n_points = int(dynamics.lengths[b])
            results.append(MutualExplanation(
                masks=concepts.masks[b, slots].cpu(),
                concept_descriptors=[[words[i] for i in match.selected[b, j].tolist() if i >= 0] for j in slots_cpu],
                visual_descriptors=[(words[i], float(s)) for i, s in zip(dv_ids, dv_scores)],
                text_descriptors=[words[i] for i in text_ids],
                mutual=[words[i] for i, m in zip(dv_ids, mutual[b, :dv_n].tolist()) if m],
                mi=float(dynamics.mi[b]),
                mi_curve=dynamics.curves[b, :n_points].cpu(),
                auc=float(dynamics.auc[b]),
                target=indices[b],
                target_name=names[b],
                importance=importance[b, slots].float().cpu(),
                part_ids=[int(p) for p in concepts.part_ids[b, slots_cpu].tolist()],
                ellipses=ellipses[b, slots_cpu.numpy()],
                foreground=concepts.foreground[b].cpu(),
                visual_ids=dv_ids,
                text_ids=text_ids,
            ))
        return results

    # -------------------------------------------------------------------------------------------- public
    @runs_passes
    def explain(self, inputs, target: TargetLike = None, reference_images: ReferenceLike = None
                ) -> List[MutualExplanation]:
        r"""Mutual-knowledge explanation of every image.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``, preprocessed like the model's
                images (prompts are drawn at this size and encoded again at it).
            target (int, str, list, Tensor or None): the class whose textual concepts D_ŷ are compared: a class
                index or name of the classifier, or free text (its prompt-ensembled embedding plays w_ŷ). A single
                value applies to every image; None uses each image's zero-shot prediction (the paper's dataset
                mode; the released demo passes the ground-truth class).
            reference_images (Tensor, ConceptBasis or None): what the visual concepts are fitted on: None fits
                them jointly on ``inputs``; images ``(R, 3, H', W')`` or a :meth:`fit_concepts` basis fit them
                there and apply them to ``inputs``.

        Returns:
            list[MutualExplanation]: one per image (see its attributes ``masks``, ``concept_descriptors``,
            ``visual_descriptors``, ``text_descriptors``, ``mutual``, ``mi``, ``mi_curve``, ``auc``).
        """
        return self._explain(self._check(inputs)[0], target, reference_images)

    def _explain(self, images: Tensor, target: TargetLike, reference_images: ReferenceLike) -> List[MutualExplanation]:
        # Resolved first, so a bad target fails before any forward pass.
        targets = self.resolve_targets(target, images.shape[0])
        return self._explain_concepts(images, self._visual_concepts(images, reference_images), targets)

    @log_usage()
    def attribute(self, inputs, target: TargetLike = None, reference_images: ReferenceLike = None,
                  additional_forward_args: None = None):
        r"""Concept map of every image: each concept's mask weighted by its importance.

        Importance = cos(E_img(x), z_j) x cos(E_img(x), E_txt(first descriptor of j)) (the spec's reading of the
        paper's concept ranking); pixels outside every concept are 0. Masks are disjoint, so each pixel holds
        the importance of its concept.

        Args:
            inputs (Tensor or tuple[Tensor]): normalised images ``(N, 3, H, W)``.
            target: as in :meth:`explain` (it changes the textual side, not the concept masks or weights).
            reference_images: as in :meth:`explain`.
            additional_forward_args: refused with a ``ValueError`` unless None (the classifier's forward takes
                only images).

        Returns:
            Tensor (or a 1-tuple if ``inputs`` was a tuple): ``(N, 1, H, W)`` float32 on the inputs' device.
        """
        images, is_tuple, device = self._inputs(inputs, additional_forward_args)
        return self._outputs(self._concept_maps(images, target, reference_images), images, device, is_tuple)

    def _concept_maps(self, images: Tensor, target, reference_images: ReferenceLike) -> Tensor:
        explanations = self._explain(images, target, reference_images)
        return torch.stack([e.attribution_map() for e in explanations]).unsqueeze(1).to(images.device)

    def _attribute_all(self, images: Tensor, targets: list, reference_images: ReferenceLike = None) -> Tensor:
        # The concept masks and their weights do not depend on the target (it changes only the textual side), so
        # the K maps of an image are one map; explaining the batch once keeps the joint concept fit of attribute.
        self.resolve_targets(targets, len(targets))
        maps = self._concept_maps(images, None, reference_images)
        return maps.expand(-1, len(targets), -1, -1).clone()

    map_normalisation = ("none: each concept's pixels hold its importance cos(x, z_j) x cos(x, t_j), a product of "
                         "cosines; 0 outside every concept")
