"""WordNet 3.0 access through nltk, from whichever copy this machine has.

Everything in ``captum_clip.convis`` that needs WordNet gets it from :func:`load_wordnet`, so the search order,
the nltk 3.10 path authorisation and the Debian work-arounds live only here.

Search order:

1. **nltk's own data**: a ``corpora/wordnet`` directory (or ``corpora/wordnet.zip``) on ``nltk.data.path``, as
   ``python -m nltk.downloader wordnet`` installs it.
2. **The system WordNet 3.0** of the Debian/Ubuntu package ``wordnet-base`` (``/usr/share/wordnet``, or the
   directory named by WordNet's own ``WNSEARCHDIR`` variable).

The Debian package needs two adaptations, both handled by :class:`WordNetReader`:

* It has no ``lexnames`` file, which nltk reads when it opens the database. Its content is fixed by the WordNet
  3.0 format (the 45 lexicographer files, ``lexnames(5WN)``), so the reader serves it from memory.
* It has no ``index.sense``, which nltk reads only to map sense keys between WordNet versions for the
  multilingual (OMW) functions. Those are not enabled here, so that mapping is skipped.

nltk 3.10 opens corpus files only below an *authorised* root: an entry of ``nltk.data.path`` (or ``NLTK_DATA``),
after resolving symlinks, and each file must stay inside the corpus root after resolution (``nltk.pathsec``).
Symlinking the Debian files into an nltk-style directory is therefore refused (the links resolve outside the
corpus root); the reader instead opens the Debian directory in place and registers that directory on
``nltk.data.path``.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nltk
from nltk.corpus.reader.wordnet import WordNetCorpusReader

from .errors import WordNetNotFoundError

__all__ = [
    "DEFAULT_SYSTEM_WORDNET_DIR",
    "LEXNAMES",
    "WordNetLocation",
    "WordNetNotFoundError",
    "WordNetReader",
    "find_wordnet",
    "load_wordnet",
    "clear_wordnet_cache",
    "lexnames_text",
    "sense_tag_counts",
]

#: Where Debian's ``wordnet-base`` package installs the WordNet 3.0 database files.
DEFAULT_SYSTEM_WORDNET_DIR = Path("/usr/share/wordnet")

#: The 45 WordNet 3.0 lexicographer files in their standard order (``lexnames(5WN)``): the synset data files
#: store the *index* into this list, so the order is part of the database format.
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change",
    "verb.cognition", "verb.communication", "verb.competition", "verb.consumption", "verb.contact",
    "verb.creation", "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social",
    "verb.stative", "verb.weather", "adj.ppl",
)

# The third column of ``lexnames`` is the syntactic category number of the file's part of speech.
_POS_NUMBER = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

#: The database files nltk opens when it builds a reader; a directory with all of them is a usable WordNet.
_REQUIRED_FILES = tuple(
    f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))

_INSTALL_HINT = (
    "WordNet 3.0 was not found. Install it with one of:\n"
    "  sudo apt-get install wordnet-base        (Debian/Ubuntu; installs /usr/share/wordnet)\n"
    "  python -m nltk.downloader wordnet        (nltk's own copy, under ~/nltk_data)\n"
    "or point WNSEARCHDIR at a directory holding the WordNet 3.0 database files."
)


@dataclass(frozen=True)
class WordNetLocation:
    """Where a WordNet database was found.

    Attributes:
        kind: ``"nltk"`` for nltk's own data package, ``"system"`` for the Debian-style directory.
        root: the database directory: a path string for ``"system"``, nltk's path pointer for ``"nltk"``
            (a directory, or an entry of ``wordnet.zip``).
    """

    kind: Literal["nltk", "system"]
    root: object


def lexnames_text() -> str:
    """The content of WordNet 3.0's ``lexnames`` file.

    Returns:
        45 lines ``"NN<TAB>name<TAB>pos_number"``, as in the Princeton distribution.
    """
    return "".join(
        f"{i:02d}\t{name}\t{_POS_NUMBER[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


class WordNetReader(WordNetCorpusReader):
    """nltk's WordNet reader, tolerant of the two files Debian's ``wordnet-base`` leaves out.

    Args:
        root: the WordNet database directory (or an nltk ``PathPointer``); it must lie below an authorised
            ``nltk.data.path`` entry.
    """

    def __init__(self, root) -> None:
        # omw_reader=None: multilingual lookups are not needed for gloss/hypernym work, and nltk warns about it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The multilingual functions are not available")
            super().__init__(root, omw_reader=None)

    def open(self, file: str):  # noqa: A003 - nltk's method name
        """Open a database file, serving ``lexnames`` from memory when the directory lacks it."""
        if file == "lexnames" and not _has_file(self._root, "lexnames"):
            return io.StringIO(lexnames_text())
        return super().open(file)

    def map_wn(self, version: str = "wordnet"):
        """Skip the sense-key version map: it only serves OMW lookups and needs ``index.sense``."""
        return None


def _has_file(root, name: str) -> bool:
    # Both nltk path pointers (directory and zip) refuse to join a name that does not exist.
    try:
        root.join(name)
    except OSError:
        return False
    return True


def _system_candidates(system_dirs: Sequence[str | os.PathLike] | None) -> list[Path]:
    if system_dirs is not None:
        return [Path(d) for d in system_dirs]
    candidates = []
    if os.environ.get("WNSEARCHDIR"):
        candidates.append(Path(os.environ["WNSEARCHDIR"]))
    candidates.append(DEFAULT_SYSTEM_WORDNET_DIR)
    return candidates


def _is_wordnet_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in _REQUIRED_FILES)


def find_wordnet(system_dirs: Sequence[str | os.PathLike] | None = None) -> WordNetLocation:
    """Locate a WordNet database without loading it.

    Args:
        system_dirs: directories to try after nltk's data path; default ``$WNSEARCHDIR`` (when set) then
            ``/usr/share/wordnet``.

    Returns:
        The first usable location: nltk's data package first, then the system directories.

    Raises:
        WordNetNotFoundError: when neither exists; the message names the install commands.
    """
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            found = nltk.data.find(resource)
        except LookupError:
            continue
        return WordNetLocation("nltk", found)
    tried = []
    for candidate in _system_candidates(system_dirs):
        tried.append(str(candidate))
        if _is_wordnet_dir(candidate):
            return WordNetLocation("system", str(candidate.resolve()))
    raise WordNetNotFoundError(
        f"{_INSTALL_HINT}\n(searched nltk.data.path for corpora/wordnet and the directories {tried})"
    )


def _authorise(directory: str) -> None:
    """Register *directory* as an nltk data root, which nltk 3.10 requires before it opens files there."""
    resolved = str(Path(directory).resolve())
    if not any(str(Path(str(p)).expanduser().resolve()) == resolved for p in nltk.data.path if isinstance(p, str)):
        # Appended, so nltk's own resource search keeps its normal priority.
        nltk.data.path.append(resolved)


_cache: dict[tuple[str, str], WordNetCorpusReader] = {}
_cache_lock = threading.Lock()


def load_wordnet(system_dirs: Sequence[str | os.PathLike] | None = None) -> WordNetCorpusReader:
    """The WordNet reader every ConVis module uses, built once per database location.

    Args:
        system_dirs: see :func:`find_wordnet`.

    Returns:
        An nltk ``WordNetCorpusReader`` (a :class:`WordNetReader`), cached per location.

    Raises:
        WordNetNotFoundError: when no WordNet is installed.
    """
    location = find_wordnet(system_dirs)
    key = (location.kind, str(location.root))
    with _cache_lock:
        reader = _cache.get(key)
        if reader is None:
            if location.kind == "system":
                _authorise(location.root)
            reader = WordNetReader(location.root)
            _cache[key] = reader
    return reader


def clear_wordnet_cache() -> None:
    """Forget the readers built so far (tests use it to switch between fake databases)."""
    with _cache_lock:
        _cache.clear()


def sense_tag_counts(wordnet: WordNetCorpusReader) -> dict[str, int]:
    """How often each word sense was tagged in the semantic concordances (WordNet's ``cntlist.rev``).

    ``Lemma.count()`` gives the same numbers one binary search at a time; reading the file once is ~100x
    faster when tens of thousands of lemmas are needed.

    Args:
        wordnet: a reader from :func:`load_wordnet`.

    Returns:
        ``{sense_key: tag_count}``, e.g. ``{"cat%1:05:00::": 18, ...}``; senses never tagged are absent.
    """
    counts: dict[str, int] = {}
    with wordnet.open("cntlist.rev") as stream:
        for line in stream:
            fields = line.split()
            if len(fields) == 3:
                counts[fields[0]] = int(fields[2])
    return counts
