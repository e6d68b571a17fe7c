"""The one on-disk cache of text embeddings: one location and one keying scheme for every bank.

A bank (classifier class embeddings, ConVis synset texts, Mutual descriptors) depends only on the text tower and
its strings, so it is encoded once and kept as ``<root>/<kind>/<key>.safetensors``. The key hashes the parts that
determine the embeddings (the text tower's fingerprint, the strings, the templates); the parts are also stored
as metadata and compared on reading, so a collision or an edited file is re-encoded instead of served.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import platformdirs
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

#: Environment variable that moves the cache (e.g. to a shared disk on a cluster).
CACHE_ENV = "CAPTUM_CLIP_CACHE_DIR"

# Bumped whenever the stored layout or the meaning of a cached file changes.
CACHE_FORMAT = "2"

PathLike = Union[str, "os.PathLike[str]"]


def cache_root(cache_dir: Optional[PathLike] = None) -> Path:
    """The cache root: ``cache_dir`` if given, else ``$CAPTUM_CLIP_CACHE_DIR``, else the platform's user cache
    directory (``~/.cache/captum_clip`` on Linux, honouring ``$XDG_CACHE_HOME``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(platformdirs.user_cache_dir("captum_clip", appauthor=False))


def digest_strings(strings: Sequence[str]) -> str:
    """A short hash of an ordered list of strings (rows of a bank)."""
    return hashlib.sha256("\n".join(strings).encode("utf-8")).hexdigest()[:40]


def cache_path(kind: str, key: Mapping[str, str], cache_dir: Optional[PathLike] = None) -> Path:
    """``<root>/<kind>/<hash of the key>.safetensors``."""
    h = hashlib.sha256(CACHE_FORMAT.encode())
    for name in sorted(key):
        h.update(f"\0{name}={key[name]}".encode("utf-8"))
    return cache_root(cache_dir) / kind / f"{h.hexdigest()[:40]}.safetensors"


def _read(path: Path, metadata: Dict[str, str], names: Sequence[str], rows: int) -> Optional[Dict[str, Tensor]]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = handle.metadata() or {}
        tensors = load_file(str(path))
        tensors = {name: tensors[name].float() for name in names}
    except (OSError, SafetensorError, KeyError) as error:
        warnings.warn(f"ignoring unreadable embedding cache {path}: {error}", RuntimeWarning, stacklevel=4)
        return None
    if any(stored.get(k) != v for k, v in metadata.items()) or any(t.shape[0] != rows for t in tensors.values()):
        warnings.warn(f"ignoring embedding cache {path}: its metadata or rows do not match", RuntimeWarning,
                      stacklevel=4)
        return None
    return tensors


def _write(path: Path, tensors: Dict[str, Tensor], metadata: Dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename, so that a concurrent reader (another rank) never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        os.close(fd)
    except OSError as error:
        warnings.warn(f"cannot write the embedding cache under {path.parent} ({error}); set {CACHE_ENV} to a "
                      "writable directory to keep encoded banks", RuntimeWarning, stacklevel=4)
        return
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_embeddings(kind: str, key: Mapping[str, str], compute: Callable[[], Dict[str, Tensor]], *,
                      names: Sequence[str], rows: int, cache_dir: Optional[PathLike] = None, use_cache: bool = True
                      ) -> Tuple[Dict[str, Tensor], bool]:
    """Named embedding matrices of one bank, read from the cache or computed and stored.

    Args:
        kind: the bank's folder under the root (``"class_embeddings"``, ``"convis_text_banks"``, ...).
        key: every string that determines the embeddings; hashed into the file name and stored as metadata.
        compute: returns ``{name: (rows, E) tensor}`` for every name in ``names`` when the cache has no valid entry.
        names: the matrices the bank holds.
        rows: the rows each matrix must have.
        cache_dir: the cache root (see :func:`cache_root`).
        use_cache: read and write the cache; False always computes.

    Returns:
        ``(tensors, from_cache)``: float32 tensors on the CPU when read, as computed otherwise.
    """
    metadata = {"format": CACHE_FORMAT, **{k: str(v) for k, v in key.items()}}
    path = cache_path(kind, key, cache_dir)
    if use_cache and path.is_file():
        tensors = _read(path, metadata, names, rows)
        if tensors is not None:
            return tensors, True
    tensors = compute()
    if use_cache:
        _write(path, tensors, metadata)
    return tensors, False
