"""Procedural shape scenes with pixel-exact ground truth.

Every scene is a textured grey-ish background holding 1-3 coloured shapes.
Each shape comes with a boolean mask and the caption names every object, so
an explanation for the query "red star" can be scored against the pixels of
the red star.  Within one scene all shapes are different and all colours are
different, which makes a query naming only a shape or only a colour select a
single object.

Scenes are a pure function of their integer seed: ``generate_scene(s)``
returns the same pixels on every machine and every call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch
from scipy import ndimage
from skimage import draw
from torch.utils.data import Dataset

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")

# Saturated colours far apart in RGB and from any grey, so that pixel
# colour alone decides the colour name even after jitter and noise.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 175, 55),
    "blue": (40, 75, 225),
    "yellow": (240, 215, 35),
    "purple": (145, 55, 195),
    "orange": (250, 135, 20),
}

# OpenAI CLIP preprocessing statistics (per RGB channel, for images in [0, 1]).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

DEFAULT_IMAGE_SIZE = 64
MAX_OBJECTS = 3

# Object "radius" (centre to farthest point) as a fraction of the image side.
# Objects span several patches of an 8-pixel ViT patch grid on a 64-pixel
# image (at least ~3x3), so that patch features can localise them and the
# outline is legible to a small model.  Fewer objects may be larger.
MIN_RADIUS_FRACTION = 0.17
MAX_RADIUS_FRACTION_BY_COUNT = {1: 0.34, 2: 0.28, 3: 0.24}

_COLOR_JITTER = 18  # max per-channel offset of an object's colour
_PIXEL_NOISE_STD = 5.0  # sensor-like noise over the whole image
_LAYOUT_ATTEMPTS = 4  # whole layouts tried, each with smaller objects
# Every shape lies within this many radii of its centre (the cross's arm
# corners reach 1.053 radii).
_EXTENT = 1.06
_GAP_PIXELS = 2  # minimum free border kept around every placed object
# Shapes stand nearly upright (a star points up, a square sits on its side):
# canonical poses keep the shape classes learnable for a small model on a CPU
# budget, and the jitter still varies their outlines.
_MAX_ROTATION = np.deg2rad(20)


@dataclass(frozen=True)
class Scene:
    """One generated scene.

    Attributes:
        image: (H, W, 3) uint8 RGB image.
        masks: (n, H, W) bool, one mask per object, pairwise disjoint.
        shapes: n shape names, aligned with ``masks``.
        colors: n colour names, aligned with ``masks``.
        caption: sentence naming every object, e.g. "a red star and a blue ring".
        seed: the seed the scene was generated from.
    """

    image: np.ndarray
    masks: np.ndarray
    shapes: list[str]
    colors: list[str]
    caption: str
    seed: int

    @property
    def objects(self) -> list[str]:
        """Object phrases such as ``["red star", "blue ring"]``, aligned with ``masks``."""
        return [object_phrase(c, s) for c, s in zip(self.colors, self.shapes)]


# --------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------


def object_phrase(color: str, shape: str) -> str:
    """``("red", "star") -> "red star"``."""
    return f"{color} {shape}"


def with_article(phrase: str) -> str:
    """Prefix "a" or "an" as English requires: "an orange star", "a red star"."""
    article = "an" if phrase[0] in "aeiou" else "a"
    return f"{article} {phrase}"


def join_phrases(phrases: Sequence[str]) -> str:
    """``["x", "y", "z"] -> "x, y and z"``."""
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def describe(colors: Sequence[str], shapes: Sequence[str]) -> str:
    """Caption naming every object in order: "a red star, a blue ring and a green cross"."""
    return join_phrases([with_article(object_phrase(c, s)) for c, s in zip(colors, shapes)])


def single_object_classnames() -> list[str]:
    """All colour+shape class names ("red circle", ...), colour-major order."""
    return [object_phrase(c, s) for c in COLORS for s in SHAPES]


# --------------------------------------------------------------------------
# Rasterising shapes
# --------------------------------------------------------------------------


def _polygon_mask(
    radii: np.ndarray, angles: np.ndarray, center: tuple[float, float], size: int
) -> np.ndarray:
    """Fill the polygon with vertices at polar coordinates around ``center`` -> (size, size) bool."""
    rows = center[0] - radii * np.sin(angles)
    cols = center[1] + radii * np.cos(angles)
    mask = np.zeros((size, size), dtype=bool)
    rr, cc = draw.polygon(rows, cols, shape=mask.shape)
    mask[rr, cc] = True
    return mask


def _regular_polygon(n_vertices: int, radius: float, rotation: float) -> tuple[np.ndarray, np.ndarray]:
    angles = rotation + np.arange(n_vertices) * (2 * np.pi / n_vertices)
    return np.full(n_vertices, radius), angles


def _star(radius: float, rotation: float) -> tuple[np.ndarray, np.ndarray]:
    # Five points alternating between the outer and a deep inner radius; the
    # inner ratio keeps the arms thick enough to survive rasterising at ~10 px.
    angles = rotation + np.arange(10) * (np.pi / 5)
    radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    return radii, angles


def _cross(radius: float, rotation: float) -> tuple[np.ndarray, np.ndarray]:
    """A plus sign with arm half-width ``0.33 * radius`` as a 12-vertex polygon."""
    half_arm = 0.33 * radius
    # Corner points of one quadrant (x, y), repeated for the four rotations.
    quadrant = np.array([[radius, half_arm], [half_arm, half_arm], [half_arm, radius]])
    points = []
    for k in range(4):
        c, s = np.cos(k * np.pi / 2), np.sin(k * np.pi / 2)
        points.append(quadrant @ np.array([[c, s], [-s, c]]))
    xy = np.concatenate(points)
    radii = np.hypot(xy[:, 0], xy[:, 1])
    angles = np.arctan2(xy[:, 1], xy[:, 0]) + rotation
    return radii, angles


def _disk_mask(center: tuple[float, float], radius: float, size: int) -> np.ndarray:
    rows, cols = np.ogrid[:size, :size]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius**2


def shape_mask(shape: str, center: tuple[float, float], radius: float, rotation: float, size: int) -> np.ndarray:
    """Rasterise one filled shape -> (size, size) bool mask.

    ``radius`` is the distance from the centre to the farthest point of the
    shape; ``rotation`` is in radians (ignored by the rotation-invariant
    circle and ring).
    """
    if shape == "circle":
        return _disk_mask(center, radius, size)
    if shape == "ring":
        # The hole is wide enough to show background at the smallest size.
        return _disk_mask(center, radius, size) & ~_disk_mask(center, 0.55 * radius, size)
    if shape == "square":
        radii, angles = _regular_polygon(4, radius, rotation + np.pi / 4)
    elif shape == "triangle":
        radii, angles = _regular_polygon(3, radius, rotation + np.pi / 2)
    elif shape == "star":
        radii, angles = _star(radius, rotation + np.pi / 2)
    elif shape == "cross":
        radii, angles = _cross(radius, rotation)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return _polygon_mask(radii, angles, center, size)


# --------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------


def _unit_pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    """A zero-mean texture with values roughly in [-1, 1] -> (size, size) float."""
    kind = rng.integers(4)
    rows, cols = np.mgrid[:size, :size] / size
    if kind == 0:  # stripes at a random angle and frequency
        angle = rng.uniform(0, np.pi)
        frequency = rng.uniform(2, 7)
        phase = rng.uniform(0, 2 * np.pi)
        coordinate = rows * np.cos(angle) + cols * np.sin(angle)
        return np.sin(2 * np.pi * frequency * coordinate + phase)
    if kind == 1:  # linear gradient
        angle = rng.uniform(0, 2 * np.pi)
        coordinate = (rows - 0.5) * np.cos(angle) + (cols - 0.5) * np.sin(angle)
        return 2 * coordinate
    # blurred noise, either fine-grained or blotchy
    sigma = size * (rng.uniform(0.01, 0.03) if kind == 2 else rng.uniform(0.05, 0.12))
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return noise / (np.abs(noise).max() + 1e-8)


def make_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-contrast, nearly grey texture -> (size, size, 3) float in [0, 255]."""
    base = rng.uniform(75, 175)
    tint = rng.uniform(-8, 8, size=3)  # a slight cast, never a named colour
    contrast = rng.uniform(8, 30)
    pattern = _unit_pattern(rng, size)
    return base + tint + contrast * pattern[..., None]


# --------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------


def _room(occupied: np.ndarray) -> np.ndarray:
    """Largest object radius that fits at each pixel as the centre -> (H, W) float.

    The object must stay ``_GAP_PIXELS`` away from occupied pixels and inside
    the image.
    """
    free = np.pad(~occupied, 1, constant_values=False)  # the frame counts as occupied
    distance = ndimage.distance_transform_edt(free)[1:-1, 1:-1]
    return (distance - _GAP_PIXELS - 1) / _EXTENT


def _place_object(
    rng: np.random.Generator, shape: str, occupied: np.ndarray, max_fraction: float
) -> np.ndarray | None:
    """Mask of ``shape`` at a random spot that keeps clear of ``occupied`` -> (H, W) bool, or None if full.

    The radius is drawn first, then the centre among the pixels with room for
    it (shrinking the radius to the largest room left when it fits nowhere),
    so placing needs one rasterisation and never overlaps.
    """
    size = occupied.shape[0]
    room = _room(occupied)
    radius = size * rng.uniform(MIN_RADIUS_FRACTION, max_fraction)
    radius = min(radius, room.max())
    if radius < size * MIN_RADIUS_FRACTION:
        return None
    candidates = np.flatnonzero(room >= radius)
    row, col = divmod(int(candidates[rng.integers(candidates.size)]), size)
    rotation = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION)
    return shape_mask(shape, (row, col), radius, rotation, size)


def _max_radius_fraction(n_objects: int) -> float:
    return MAX_RADIUS_FRACTION_BY_COUNT.get(n_objects, min(MAX_RADIUS_FRACTION_BY_COUNT.values()))


def _place_objects(rng: np.random.Generator, shapes: Sequence[str], size: int) -> list[np.ndarray]:
    """Masks for ``shapes`` at random, pairwise separated positions -> list of (size, size) bool.

    When an object finds no free spot, the whole layout is redrawn with a
    smaller size range, so crowded scenes still get every object.  Only if
    all layouts fail are trailing objects dropped (rare: ~1 in 10^4 scenes).
    """
    best: list[np.ndarray] = []
    for layout in range(_LAYOUT_ATTEMPTS):
        shrink = layout / _LAYOUT_ATTEMPTS
        largest = _max_radius_fraction(len(shapes))
        max_fraction = largest - shrink * (largest - MIN_RADIUS_FRACTION)
        masks: list[np.ndarray] = []
        occupied = np.zeros((size, size), dtype=bool)
        for shape in shapes:
            mask = _place_object(rng, shape, occupied, max_fraction)
            if mask is None:
                break
            masks.append(mask)
            # Nothing goes inside a ring's hole.
            occupied |= ndimage.binary_fill_holes(mask) if shape == "ring" else mask
        if len(masks) == len(shapes):
            return masks
        best = max(best, masks, key=len)
    return best


def _object_color(rng: np.random.Generator, color: str) -> np.ndarray:
    rgb = np.asarray(PALETTE[color], dtype=float)
    return rgb + rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, size=3)


def generate_scene(
    seed: int,
    image_size: int = DEFAULT_IMAGE_SIZE,
    n_objects: int | None = None,
    max_objects: int = MAX_OBJECTS,
) -> Scene:
    """Generate the scene determined by ``seed``.

    Args:
        seed: any non-negative integer; equal seeds give identical scenes.
        image_size: side length H = W of the square image in pixels.
        n_objects: number of objects; ``None`` draws it uniformly from
            ``1..max_objects``.
        max_objects: upper bound used when ``n_objects`` is None (at most 6).

    Returns:
        A :class:`Scene` with an (H, W, 3) uint8 image and (n, H, W) bool masks.
    """
    rng = np.random.default_rng(seed)
    if n_objects is None:
        n_objects = int(rng.integers(1, max_objects + 1))
    if not 1 <= n_objects <= min(len(SHAPES), len(COLORS)):
        raise ValueError(f"n_objects must be in 1..{min(len(SHAPES), len(COLORS))}, got {n_objects}")

    shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), n_objects, replace=False)]
    colors = [COLORS[i] for i in rng.choice(len(COLORS), n_objects, replace=False)]
    image = make_background(rng, image_size)

    masks = _place_objects(rng, shapes, image_size)
    shapes, colors = shapes[: len(masks)], colors[: len(masks)]
    for mask, color in zip(masks, colors):
        image[mask] = _object_color(rng, color)
    image = image + rng.normal(0.0, _PIXEL_NOISE_STD, size=image.shape)
    return Scene(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        masks=np.stack(masks),
        shapes=shapes,
        colors=colors,
        caption=describe(colors, shapes),
        seed=int(seed),
    )


def make_scenes(n: int, seed: int = 0, **scene_kwargs) -> list[Scene]:
    """Scenes for seeds ``seed, seed + 1, ..., seed + n - 1`` (kwargs go to :func:`generate_scene`)."""
    return [generate_scene(seed + i, **scene_kwargs) for i in range(n)]


# --------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


_SHAPE_WORDS = {**{s: s for s in SHAPES}, **{_plural(s): s for s in SHAPES}}


def parse_query(query: str) -> tuple[str | None, str | None]:
    """Extract the colour and shape a query mentions -> (color or None, shape or None).

    Accepts bare class names ("red star", "star", "red") and prompts built
    from them ("a photo of a red star."); plurals count ("crosses").

    Raises:
        ValueError: if the query names neither a known colour nor a shape, or
            names more than one of either.
    """
    words = re.findall(r"[a-z]+", query.lower())
    colors = {w for w in words if w in COLORS}
    shapes = {_SHAPE_WORDS[w] for w in words if w in _SHAPE_WORDS}
    if len(colors) > 1 or len(shapes) > 1:
        raise ValueError(f"query {query!r} names several objects; name one colour and/or one shape")
    if not colors and not shapes:
        raise ValueError(f"query {query!r} names no colour from {COLORS} and no shape from {SHAPES}")
    return next(iter(colors), None), next(iter(shapes), None)


def object_indices(scene: Scene, query: str) -> list[int]:
    """Indices of the objects in ``scene`` matching every attribute the query names."""
    color, shape = parse_query(query)
    return [
        i
        for i, (c, s) in enumerate(zip(scene.colors, scene.shapes))
        if (color is None or c == color) and (shape is None or s == shape)
    ]


def masks_for(scene: Scene, query: str) -> np.ndarray:
    """Ground-truth mask of the object the query names -> (H, W) bool.

    ``"red star"``, ``"star"`` and ``"red"`` all select the red star of a
    scene holding one.  When no object matches (e.g. querying "green star" on
    a scene without one) the mask is all False, which makes absent-object
    queries easy to evaluate too.
    """
    mask = np.zeros(scene.masks.shape[1:], dtype=bool)
    for i in object_indices(scene, query):
        mask |= scene.masks[i]
    return mask


# --------------------------------------------------------------------------
# Tensors
# --------------------------------------------------------------------------


def to_tensor(
    images: np.ndarray | Sequence[np.ndarray],
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """uint8 RGB image(s) (H, W, 3) or (N, H, W, 3) -> normalised (N, 3, H, W) float32."""
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) images, got shape {batch.shape}")
    pixels = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t


class SceneItem(NamedTuple):
    """One dataset item.

    Attributes:
        image: (3, H, W) float32, normalised with the dataset's mean/std.
        masks: (n, 1, H, W) float32 in {0, 1}, one per object.
        caption: the scene caption.
        objects: n object phrases ("red star"), aligned with ``masks``.
    """

    image: torch.Tensor
    masks: torch.Tensor
    caption: str
    objects: list[str]


class ShapesDataset(Dataset):
    """``n`` scenes with seeds ``seed .. seed + n - 1`` as model-ready tensors.

    Scenes are generated on access (cheap and deterministic), so the dataset
    holds no pixels.  Items have different numbers of masks; batch them with
    :func:`collate_scene_items`.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        image_size: int = DEFAULT_IMAGE_SIZE,
        n_objects: int | None = None,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ):
        self.n = n
        self.seed = seed
        self.image_size = image_size
        self.n_objects = n_objects
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> Scene:
        """The raw :class:`Scene` behind item ``index``."""
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} scenes")
        return generate_scene(self.seed + index, image_size=self.image_size, n_objects=self.n_objects)

    def __getitem__(self, index: int) -> SceneItem:
        scene = self.scene(index)
        return SceneItem(
            image=to_tensor(scene.image, self.mean, self.std)[0],
            masks=torch.from_numpy(scene.masks).float().unsqueeze(1),
            caption=scene.caption,
            objects=scene.objects,
        )


def collate_scene_items(items: Sequence[SceneItem]) -> SceneItem:
    """Batch items: images stacked to (B, 3, H, W); masks, captions and objects stay per-item lists."""
    return SceneItem(
        image=torch.stack([item.image for item in items]),
        masks=[item.masks for item in items],
        caption=[item.caption for item in items],
        objects=[item.objects for item in items],
    )
