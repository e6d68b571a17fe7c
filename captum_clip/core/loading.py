"""Loading open_clip models: built-in names with pretrained tags, config files, local checkpoints."""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import open_clip
import torch
from torch import nn

from ..errors import CheckpointError, WeightsUnavailableError
from .device import model_device, model_dtype
from .geometry import PreprocessGeometry, preprocess_geometry
from .precision import check_precision
from .towers import vision_tower

ASSETS = Path(__file__).resolve().parents[1] / "assets"

#: Models that ship inside the package: name -> (open_clip config, safetensors weights).
BUILTIN_MODELS = {
    "shapes": (ASSETS / "shapes.json", ASSETS / "shapes.safetensors"),
}

#: Prompt templates a built-in model was trained with (others use CLIP Surgery's 85).
BUILTIN_TEMPLATES = {
    "shapes": ("a photo of a {}.", "a {}."),
}

CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def resolve_device(device: Optional[Union[str, torch.device]]) -> Optional[torch.device]:
    """``None`` (keep the model where it is), ``"auto"`` (CUDA where present, else CPU), or a device that exists.

    Raises:
        ValueError: a device string torch does not know, or a CUDA device that is not here.
    """
    if device is None:
        return None
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a device torch knows ({error}); pass 'cpu', 'cuda', "
                         "'cuda:1' or 'auto'.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asks for CUDA, but CUDA is not available on this machine; pass "
                             "device='cpu' (or 'auto', which picks CUDA only where it exists).")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}; pass one of those, "
                             "'cuda', 'auto' or 'cpu'.")
    elif resolved.type not in ("cpu", "mps", "xpu", "meta"):
        raise ValueError(f"device {device!r} is not supported here; pass 'cpu', 'cuda' or 'auto'.")
    return resolved


@dataclass
class ClipBundle:
    """An open_clip model with what is needed to feed it.

    Attributes:
        model: the CLIP model, in eval mode.
        preprocess: PIL image -> normalised ``(3, H, W)`` tensor (open_clip's eval transform).
        tokenizer: list of strings -> ``(n, context_length)`` token ids.
        name: the model name or config path it was loaded from.
        pretrained: the tag or checkpoint path of its weights, or None for random weights.
        templates: default prompt templates for classifiers of this model (None: CLIP
            Surgery's 85-template ensemble).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: every method runs its forward passes under autocast
            in this precision; the weights stay in fp32.
    """

    model: nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    pretrained: Optional[str] = None
    templates: Optional[Tuple[str, ...]] = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)

    @property
    def device(self) -> torch.device:
        """Where the model's weights are; every method moves its inputs there."""
        return model_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        """The model's floating dtype (e.g. ``torch.float16`` for a half-precision model)."""
        return model_dtype(self.model)

    @property
    def input_size(self) -> Tuple[int, int]:
        """The vision tower's native input ``(height, width)``."""
        return vision_tower(self.model).native_image_size

    @property
    def geometry(self) -> "PreprocessGeometry":
        """The resize and centre crop ``preprocess`` applies (replayed on masks and boxes by evaluation)."""
        return preprocess_geometry(self.preprocess)

    @property
    def interpolation(self) -> str:
        """The resize interpolation of ``preprocess`` (``"bicubic"``, open_clip's default, when it cannot be read)."""
        for transform in getattr(self.preprocess, "transforms", []):
            mode = getattr(transform, "interpolation", None)
            if mode is not None:
                name = getattr(mode, "value", str(mode)).lower()
                if name in ("bicubic", "bilinear", "nearest"):
                    return name
        return "bicubic"

    @property
    def image_mean_std(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """The normalisation constants of ``preprocess`` (for turning tensors back into pictures)."""
        for transform in getattr(self.preprocess, "transforms", []):
            if hasattr(transform, "mean") and hasattr(transform, "std"):
                return tuple(transform.mean), tuple(transform.std)
        return open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD


def _is_checkpoint_file(value: str) -> bool:
    return Path(value).suffix.lower() in CHECKPOINT_SUFFIXES


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"Could not read open_clip model config {path}: {error}") from error
    # Accept both a bare model config and an open_clip_config.json (model_cfg + preprocess_cfg).
    if "model_cfg" not in config:
        config = {"model_cfg": config}
    if "vision_cfg" not in config["model_cfg"] or "text_cfg" not in config["model_cfg"]:
        raise ValueError(f"{path} is not an open_clip model config: it needs 'vision_cfg' and 'text_cfg'.")
    return config


class _DropRandomInitWarnings(logging.Filter):
    """Hides open_clip's "no weights found, initialized randomly" warnings for a model whose weights load next."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "no CLIP weights found" not in message and "No pretrained weights loaded" not in message


@contextmanager
def _quiet_random_init(enabled: bool):
    drop = _DropRandomInitWarnings()
    if enabled:
        logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def _create_from_config(config_path: Path, weights_follow: bool = False):
    """Build (model, preprocess, tokenizer) from a config file through open_clip's own factory.

    ``weights_follow``: a checkpoint is loaded right after, so open_clip's warning that the model is randomly
    initialised would be false and is hidden.
    """
    config = _read_config(config_path)
    with tempfile.TemporaryDirectory() as folder, _quiet_random_init(weights_follow):
        # open_clip's 'local-dir:' schema builds any config without registering a global model name.
        (Path(folder) / "open_clip_config.json").write_text(json.dumps(config))
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    return model, preprocess, tokenizer


def _read_state_dict(path: Path) -> dict:
    """The checkpoint's tensors, read without running any pickled code; CheckpointError if unreadable."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes); download or copy it again.")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors, pickle, zip and EOF errors all mean the same thing here
        # torch.load's own text advises weights_only=False, i.e. running the file's code: not repeated here.
        reason = str(error).splitlines()[0] if path.suffix.lower() == ".safetensors" and str(error) else \
            type(error).__name__
        raise CheckpointError(
            f"Checkpoint {path} is not a readable {path.suffix} file (truncated or corrupt?): {reason}. "
            "Download or copy it again; open_clip checkpoints are .safetensors, .bin, .pt or .pth state dicts."
        ) from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"Checkpoint {path} holds a {type(state).__name__}, not a state dict of tensors.")
    return state


def _load_local_checkpoint(model: nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {path} for model {name!r} does not exist.")
    _read_state_dict(path)  # unreadable files fail here, with their own message, before open_clip sees them
    try:
        open_clip.load_checkpoint(model, str(path), strict=True)
    except (RuntimeError, AssertionError, KeyError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"Checkpoint {path} does not fit model {name!r}: {reason} "
            "Check that the config matches the architecture the weights were trained with."
        ) from error


def load_clip(
    name_or_config: Union[str, Path],
    pretrained: Optional[Union[str, Path]] = None,
    device: Optional[Union[str, torch.device]] = None,
    precision: str = "fp32",
) -> ClipBundle:
    """Load an open_clip model, its preprocessing and its tokenizer.

    Args:
        name_or_config: an open_clip model name (``"ViT-B-16"``, ``"RN50-quickgelu"``),
            a path to an open_clip model-config JSON, or ``"shapes"`` for the scene
            model that ships with captum_clip (loads offline).
        pretrained: an open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b88k"``), a
            local checkpoint file (``.safetensors``, ``.pt``, ``.pth`` or ``.bin``), or
            None for random weights (built-in ``"shapes"`` loads its own weights).
        device: where to put the model: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA where
            present, else CPU), or None (CPU, where open_clip builds it).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: the methods' forward passes run under autocast
            in it, with the weights kept in fp32 (see :attr:`ClipBundle.precision`).

    Returns:
        A :class:`ClipBundle` with the model in eval mode.

    Raises:
        WeightsUnavailableError: a pretrained tag whose weights cannot be downloaded or
            found in the cache (e.g. offline); the message says how to pass a local file.
        FileNotFoundError: a config or checkpoint path that does not exist.
        CheckpointError: a local checkpoint that is empty, unreadable (truncated, corrupt) or does not fit the
            model (a ``ValueError``); the message names the file.
        ValueError: a config that is not an open_clip config, a device that does not exist here, or an unknown
            precision.
    """
    check_precision(precision)
    name = str(name_or_config)
    pretrained = str(pretrained) if pretrained is not None else None
    device = resolve_device(device)  # before any model is built, so a bad device costs nothing

    if name in BUILTIN_MODELS:
        config_path, weights_path = BUILTIN_MODELS[name]
        if not config_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"The built-in model {name!r} is missing from this installation ({ASSETS}).")
        model, preprocess, tokenizer = _create_from_config(config_path, weights_follow=True)
        pretrained = pretrained or str(weights_path)
        _load_local_checkpoint(model, Path(pretrained), name)
    elif name.lower().endswith(".json") or Path(name).is_file():
        config_path = Path(name)
        if not config_path.is_file():
            raise FileNotFoundError(f"Model config {config_path} does not exist.")
        model, preprocess, tokenizer = _create_from_config(config_path, weights_follow=pretrained is not None)
        if pretrained is not None:
            if not _is_checkpoint_file(pretrained):
                raise ValueError(
                    f"With a config file, `pretrained` must be a local checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}); "
                    f"got {pretrained!r}."
                )
            _load_local_checkpoint(model, Path(pretrained), name)
    else:
        if name.replace("/", "-") not in open_clip.list_models() and ":" not in name:
            raise ValueError(
                f"Unknown model {name!r}: pass an open_clip model name (see open_clip.list_models()), "
                "a path to an open_clip config JSON, or 'shapes'."
            )
        local = pretrained is not None and _is_checkpoint_file(pretrained)
        if local and not Path(pretrained).is_file():
            raise FileNotFoundError(f"Checkpoint file {pretrained} for model {name!r} does not exist.")
        if local:
            _read_state_dict(Path(pretrained))
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        except (AssertionError, KeyError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(
                f"Checkpoint {pretrained} does not fit model {name!r}: {reason} "
                "Check that --model / name_or_config is the architecture the weights were trained with."
            ) from error
        except RuntimeError as error:
            if local:
                raise CheckpointError(
                    f"Checkpoint {pretrained} does not fit model {name!r}: {str(error).splitlines()[0]} "
                    "Check that --model / name_or_config is the architecture the weights were trained with."
                ) from error
            raise WeightsUnavailableError(
                f"Could not get weights {pretrained!r} for model {name!r}: {str(error).splitlines()[0]}\n"
                "Without network access, download the checkpoint elsewhere and pass the file: "
                f"load_clip({name!r}, pretrained='/path/to/open_clip_pytorch_model.bin') "
                f"(or --pretrained FILE on the command line). Tags for this model: "
                f"{open_clip.list_pretrained_tags_by_model(name.replace('/', '-'))}."
            ) from error
        tokenizer = open_clip.get_tokenizer(name)

    model = model.eval()
    if device is not None:
        model = model.to(device)
    return ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, name=name, pretrained=pretrained,
                      templates=BUILTIN_TEMPLATES.get(name), precision=precision)
