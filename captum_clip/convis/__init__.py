"""Concept Visualization (ConVis; Giulivi & Boracchi, 2024) for open_clip-style CLIP models.

Pieces, each usable on its own:

* :mod:`.wordnet`: locate and load WordNet 3.0 through nltk (nltk data or Debian's ``wordnet-base``).
* :mod:`.vocabulary`: the concept vocabulary T, its hyponym hierarchy H and concept closures Sub(c).
* :mod:`.text_bank`: the cached CLIP text embeddings of the synsets' glosses.
* :mod:`.windows`: the padded canvas, the window grid and the crops the image encoder sees.
* :mod:`.ranks` and :mod:`.aggregation`: per-window ranks, best rank in Sub(c), per-pixel maps.
* :mod:`.concept_maps`: :class:`ConceptMapper`, which ties them together for one image.
* :mod:`.encoders`: adapters from ``encode_image``/``encode_text`` + preprocessing to the callables above.

On top of them:

* :class:`ConVisAttribution` (:mod:`.attribution`): the Captum ``Attribution`` for open_clip bundles and
  zero-shot classifiers (normalised tensors in, ``(N, 1, H, W)`` maps in the input frame out), with
  :meth:`~ConVisAttribution.attribute_concepts` for K maps at once and :meth:`~ConVisAttribution.top_concepts`
  for the concepts an image shows most (:mod:`.presence`).
* :mod:`.targets`: synset names or classifier classes → concepts (ambiguous class names are reported).
* :mod:`.scene_concepts`: the generated scenes' shapes and colours as WordNet synsets, for the shipped model.
* The paper's experiments: :mod:`.wsol` (MaxBoxAcc), :mod:`.ood` (WordNet-text OOD scores, AUROC),
  :mod:`.experiments` (both, on generated scenes or a user's folders), :mod:`.image_folders`.
"""

from .aggregation import AGGREGATIONS, AggregatedMaps, WindowCoverage, aggregate_ranks, normalise_maps
from .attribution import TEXT_SOURCES, ConVisAttribution
from .bundle_adapters import bundle_image_encoder, bundle_text_encoder, text_tower_fingerprint
from .concept_maps import ConceptMapper, ConceptMaps, WindowRanks
from .encoders import pil_preprocess_image_encoder, tensor_resize_image_encoder, tokenizer_text_encoder
from .experiments import LocalisationResult, folder_localisation, folder_ood, scene_localisation, scene_ood
from .frames import map_to_input_frame, normalised_to_uint8, uint8_to_normalised
from .ood import OOD_TEXT_SCORES, OODResult, ood_auroc, ood_texts, run_ood_experiment
from .presence import ConceptMass, concept_masses, subtree_min_all
from .ranks import similarity_ranks, subtree_min, subtree_min_ranks, window_similarities
from .scene_concepts import COLOR_SYNSETS, SCENE_TEXT_SOURCE, SHAPE_SYNSETS, scene_class_synset, scene_vocabulary
from .targets import ClassSynsetResolver
from .text_bank import TextBank, build_text_bank, default_cache_dir, text_bank_cache_path
from .vocabulary import (
    DEFAULT_VOCABULARY_RULE,
    ConceptVocabulary,
    default_vocabulary,
    read_word_list,
)
from .windows import (
    REFERENCE_WINDOWS,
    WindowConfig,
    WindowGrid,
    embed_windows,
    iter_crop_batches,
    padded_canvas,
    square_image,
    window_crop,
    window_grid,
)
from .wordnet import WordNetNotFoundError, find_wordnet, load_wordnet, sense_tag_counts
from .wsol import BoxAccuracy, largest_component_box, max_box_accuracy

__all__ = [
    "AGGREGATIONS",
    "AggregatedMaps",
    "BoxAccuracy",
    "COLOR_SYNSETS",
    "ClassSynsetResolver",
    "ConVisAttribution",
    "ConceptMass",
    "LocalisationResult",
    "OODResult",
    "OOD_TEXT_SCORES",
    "SCENE_TEXT_SOURCE",
    "SHAPE_SYNSETS",
    "TEXT_SOURCES",
    "bundle_image_encoder",
    "bundle_text_encoder",
    "concept_masses",
    "folder_localisation",
    "folder_ood",
    "largest_component_box",
    "map_to_input_frame",
    "max_box_accuracy",
    "normalised_to_uint8",
    "ood_auroc",
    "ood_texts",
    "run_ood_experiment",
    "scene_class_synset",
    "scene_localisation",
    "scene_ood",
    "scene_vocabulary",
    "subtree_min_all",
    "tensor_resize_image_encoder",
    "text_tower_fingerprint",
    "uint8_to_normalised",
    "ConceptMapper",
    "ConceptMaps",
    "ConceptVocabulary",
    "DEFAULT_VOCABULARY_RULE",
    "REFERENCE_WINDOWS",
    "TextBank",
    "WindowConfig",
    "WindowCoverage",
    "WindowGrid",
    "WindowRanks",
    "WordNetNotFoundError",
    "aggregate_ranks",
    "build_text_bank",
    "default_cache_dir",
    "default_vocabulary",
    "embed_windows",
    "find_wordnet",
    "iter_crop_batches",
    "load_wordnet",
    "normalise_maps",
    "padded_canvas",
    "pil_preprocess_image_encoder",
    "read_word_list",
    "sense_tag_counts",
    "similarity_ranks",
    "square_image",
    "subtree_min",
    "subtree_min_ranks",
    "text_bank_cache_path",
    "tokenizer_text_encoder",
    "window_crop",
    "window_grid",
    "window_similarities",
]
