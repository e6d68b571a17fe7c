"""Concept Visualization (ConVis; Giulivi & Boracchi, 2024) for open_clip-style CLIP models.

Pieces, each usable on its own:

* :mod:`.wordnet`: locate and load WordNet 3.0 through nltk (nltk data or Debian's ``wordnet-base``).
* :mod:`.vocabulary`: the concept vocabulary T, its hyponym hierarchy H and concept closures Sub(c).
* :mod:`.text_bank`: the cached CLIP text embeddings of the synsets' glosses.
* :mod:`.windows`: the padded canvas, the window grid and the crops the image encoder sees.
* :mod:`.ranks` and :mod:`.aggregation`: per-window ranks, best rank in Sub(c), per-pixel maps.
* :mod:`.concept_maps`: :class:`ConceptMapper`, which ties them together for one image.
* :mod:`.encoders`: adapters from ``encode_image``/``encode_text`` + preprocessing to the callables above.
"""

from .aggregation import AGGREGATIONS, AggregatedMaps, WindowCoverage, aggregate_ranks, normalise_maps
from .concept_maps import ConceptMapper, ConceptMaps, WindowRanks
from .encoders import pil_preprocess_image_encoder, tokenizer_text_encoder
from .ranks import similarity_ranks, subtree_min, subtree_min_ranks, window_similarities
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

__all__ = [
    "AGGREGATIONS",
    "AggregatedMaps",
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
