"""ConVisAttribution as a Captum method: shapes, frames, targets, batch = loop, model unchanged, NoiseTunnel.

Everything runs on the tiny random ViT of tests/conftest.py with a 41-window geometry and a ~45-synset vocabulary,
so a window sweep costs milliseconds; the golden equivalence of the underlying ConceptMapper is in
test_convis_golden_maps.py, and :func:`test_matches_the_concept_mapper` ties the two together.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_clip.convis.attribution import ConVisAttribution
from captum_clip.convis.bundle_adapters import bundle_image_encoder
from captum_clip.convis.concept_maps import ConceptMapper
from captum_clip.convis.encoders import pil_preprocess_image_encoder, tensor_resize_image_encoder
from captum_clip.convis.frames import map_to_input_frame, normalised_to_uint8, square_crop_box, uint8_to_normalised
from captum_clip.convis.vocabulary import ConceptVocabulary
from captum_clip.convis.windows import WindowConfig

from ..conftest import images_for, torch_threads

SYNSETS = ["dog.n.01", "cat.n.01", "cup.n.01", "car.n.01", "circle.n.01", "star.n.05", "tiger.n.02"]
SMALL_WINDOWS = WindowConfig(image_size=32, sizes=(16, 8), stride=8, pad=8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def small_vocabulary(real_wordnet) -> ConceptVocabulary:
    return ConceptVocabulary.from_synsets(SYNSETS, wordnet=real_wordnet)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("convis_attr_cache")


@pytest.fixture(scope="module")
def make(tiny_classifiers, small_vocabulary, cache_dir):
    def build(model=None, **options):
        model = tiny_classifiers["vit"] if model is None else model
        options = {"windows": SMALL_WINDOWS, "cache_dir": cache_dir, **options}
        return ConVisAttribution(model, small_vocabulary, **options)

    return build


def test_attribute_returns_input_frame_maps(make, tiny_bundles):
    method = make()
    images = images_for(tiny_bundles["vit"], n=2)
    maps = method.attribute(images, target="dog.n.01")
    assert maps.shape == (2, 1, 64, 64) and maps.dtype == torch.float32
    assert maps.amin() >= 0 and maps.amax() <= 1
    assert torch.all(maps.flatten(1).amax(1) == 1)  # min-max per map
    as_tuple = method.attribute((images,), target="dog.n.01")
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], maps)
    assert not method.has_convergence_delta()


def test_matches_the_concept_mapper(make, tiny_bundles, small_vocabulary):
    """On a square input of the working size, attribute() is exactly ConceptMapper on the de-normalised pixels."""
    bundle = tiny_bundles["vit"]
    method = make(resize="pil")
    images = images_for(bundle, n=1, size=32, seed=3)
    pixels = normalised_to_uint8(images, *bundle.image_mean_std)[0]
    mapper = ConceptMapper(small_vocabulary, method.text_bank, bundle_image_encoder(bundle, "pil"),
                           windows=SMALL_WINDOWS)
    expected = mapper(pixels, ["cat.n.01", "tiger.n.02"]).maps.float()
    got = method.attribute_concepts(images, ["cat.n.01", "tiger.n.02"])[0]
    assert torch.equal(got, expected)


def test_batch_equals_loop_and_concepts_equal_targets(make, tiny_bundles):
    method = make()
    images = images_for(tiny_bundles["vit"], n=3, seed=1)
    targets = ["dog.n.01", "circle.n.01", "car.n.01"]
    batch = method.attribute(images, target=targets)
    loop = torch.cat([method.attribute(images[i : i + 1], target=t) for i, t in enumerate(targets)])
    assert torch.equal(batch, loop)
    many = method.attribute_concepts(images, targets)
    assert many.shape == (3, 3, 64, 64)
    for k, concept in enumerate(targets):
        assert torch.equal(many[:, k : k + 1], method.attribute(images, target=concept))


def test_one_sweep_per_distinct_image(make, tiny_bundles, monkeypatch):
    method = make()
    calls = []
    original = method.mapper.window_ranks
    monkeypatch.setattr(method.mapper, "window_ranks", lambda image: calls.append(1) or original(image))
    image = images_for(tiny_bundles["vit"], n=1, seed=2)
    maps = method.attribute(image.expand(4, -1, -1, -1), target=["dog.n.01", "cat.n.01", "cup.n.01", "dog.n.01"])
    assert len(calls) == 1
    assert torch.equal(maps[0], maps[3]) and not torch.equal(maps[0], maps[1])


@pytest.mark.parametrize("target, message", [
    ("zyzzyx.n.01", "not a synset of WordNet"),
    ("run.v.01", "verb"),
    ([], "non-empty list"),
    ("skyscraper.n.01", "not in the concept vocabulary"),
    ("dog", "ambiguous"),
    (0, "ambiguous: it has 8 WordNet noun senses .*cat.n.01"),
    (2, "'red star' has no WordNet noun sense"),
    (7, "out of range"),
    (["dog.n.01", "cat.n.01", "cup.n.01"], "target has 3 entries but inputs has 2 images"),
    (torch.tensor([0.5]), "integer class indices"),
])
def test_bad_targets_raise_clear_errors(make, tiny_bundles, target, message):
    method = make()
    with pytest.raises(ValueError, match=message):
        method.attribute(images_for(tiny_bundles["vit"], n=2), target=target)


def test_bad_options_raise(make, tiny_bundles):
    with pytest.raises(ValueError, match="aggregation"):
        make().attribute(images_for(tiny_bundles["vit"], n=1), target="dog.n.01", aggregation="avg")
    with pytest.raises(ValueError, match="text_source"):
        make(text_source="gloss")
    with pytest.raises(ValueError, match="resize"):
        make(resize="cv2")
    with pytest.raises(TypeError, match="ZeroShotClassifier"):
        make(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="floating-point"):
        make().attribute(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), target="dog.n.01")


def test_class_targets_resolve_through_the_classifier(make, tiny_bundles, tiny_classifiers):
    images = images_for(tiny_bundles["vit"], n=2)
    method = make(class_synsets={"cat": "cat.n.01", "dog": "dog.n.01", "red star": "star.n.05",
                                 "blue ring": "circle.n.01"})
    by_index = method.attribute(images, target=torch.tensor([0, 2]))
    assert torch.equal(by_index, method.attribute(images, target=["cat.n.01", "star.n.05"]))
    assert torch.equal(method.attribute(images, target=["cat", "red star"]), by_index)
    # None explains the classifier's predicted class.
    predicted = tiny_classifiers["vit"](images).argmax(-1).tolist()
    assert method.target_concepts(None, images) == [method.resolver(tiny_classifiers["vit"].classnames[i])
                                                   for i in predicted]
    # A callable mapping, and a bundle without a classifier (synsets only).
    assert make(class_synsets=lambda name: "cup.n.01").target_concepts([1, 3]) == ["cup.n.01", "cup.n.01"]
    bare = make(tiny_bundles["vit"])
    with pytest.raises(ValueError, match="built without a classifier"):
        bare.attribute(images, target=0)
    with pytest.raises(ValueError, match="needs a concept"):
        bare.attribute(images)


def test_non_square_inputs_are_mapped_back_to_their_centre_square(make, tiny_bundles):
    method = make()
    images = images_for(tiny_bundles["vit"], n=1, size=(40, 56), seed=4)
    maps = method.attribute(images, target="cat.n.01")
    assert maps.shape == (1, 1, 40, 56)
    top, left, side = square_crop_box(40, 56)
    assert (top, left, side) == (0, 8, 40)
    assert maps[..., :left].abs().sum() == 0 and maps[..., left + side :].abs().sum() == 0
    assert maps[..., left : left + side].amax() == 1


def test_frame_helpers():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    assert np.array_equal(normalised_to_uint8(uint8_to_normalised(pixels, mean, std), mean, std), pixels)
    assert square_crop_box(10, 15) == (0, 2, 10) and square_crop_box(15, 10) == (2, 0, 10)
    maps = torch.arange(16.0).view(1, 4, 4)
    assert torch.equal(map_to_input_frame(maps, 4, 4), maps)
    placed = map_to_input_frame(maps, 4, 7)
    assert torch.equal(placed[:, :, 1:5], maps) and placed[:, :, [0, 5, 6]].abs().sum() == 0


def test_unnormalised_values_are_mean_rank_similarity(make, tiny_bundles):
    method = make()
    images = images_for(tiny_bundles["vit"], n=1, size=32)
    raw = method.attribute(images, target="car.n.01", normalize=False)[0, 0]
    assert raw.amin() > 0 and raw.amax() <= 1
    minmax = (raw - raw.min()) / (raw.max() - raw.min())
    torch.testing.assert_close(minmax, method.attribute(images, target="car.n.01")[0, 0], rtol=0, atol=1e-6)


def test_both_aggregation_orders(make, tiny_bundles):
    images = images_for(tiny_bundles["vit"], n=1, size=32)
    canonical = make().concept_maps(images, ["dog.n.01"])[0]
    webapp = make(aggregation="mean_then_max").concept_maps(images, ["dog.n.01"])[0]
    assert canonical.aggregation == "max_then_mean" and webapp.aggregation == "mean_then_max"
    # A per-window min is never above the min of per-synset means.
    assert (canonical.mean_rank <= webapp.mean_rank + 1e-9).all()
    override = make().attribute(images, target="dog.n.01", aggregation="mean_then_max")
    torch.testing.assert_close(override[0, 0], webapp.maps[0].float())


def test_tensor_resize_matches_the_pil_preprocess_to_one_grey_level(tiny_bundles):
    """Both window encoders see the same pixels up to PIL's fixed-point rounding."""
    bundle = tiny_bundles["vit"]
    mean, std = bundle.image_mean_std
    identity = lambda batch: batch.flatten(1)  # noqa: E731 - expose the preprocessed inputs
    pil = pil_preprocess_image_encoder(identity, bundle.preprocess)
    tensor = tensor_resize_image_encoder(identity, 64, mean, std)
    generator = torch.Generator().manual_seed(0)
    for shape in [(127, 127), (63, 63), (31, 31)]:
        crops = torch.randint(0, 256, (3, 3, *shape), generator=generator, dtype=torch.uint8)
        levels = (pil(crops) - tensor(crops)).view(3, 3, -1).abs() * torch.tensor(std).view(1, 3, 1) * 255
        assert levels.max() <= 1.01, shape
        assert (levels > 0.5).float().mean() < 0.01


def test_top_concepts_lists_by_map_mass(make, tiny_bundles, small_vocabulary):
    method = make()
    images = images_for(tiny_bundles["vit"], n=2, seed=5)
    listing = method.top_concepts(images, k=None)
    assert len(listing) == 2 and len(listing[0]) == len(small_vocabulary)
    for rows in listing:
        masses = [r.mass for r in rows]
        assert masses == sorted(masses, reverse=True) and all(0 <= m <= 1 for m in masses)
        # Sub(entity) is all of T, so its best rank is 0 in every window: it covers the whole image.
        root = next(r for r in rows if r.concept == "entity.n.01")
        assert root.mass == 1.0 and root.best_rank == 0
    level = method.top_concepts(images[:1], k=3, under="entity.n.01")[0]
    assert {r.concept for r in level} <= set(small_vocabulary.children("entity.n.01"))
    specific = method.top_concepts(images[:1], k=2, closure=False)[0]
    assert len(specific) == 2
    chosen = method.top_concepts(images[:1], candidates=["dog.n.01", "cat.n.01"])[0]
    assert {r.concept for r in chosen} == {"dog.n.01", "cat.n.01"}
    with pytest.raises(ValueError, match="no hyponyms"):
        method.top_concepts(images[:1], under="tiger.n.02")


def test_tensor_resize_reproduces_golden_window_ranks(tiny_clip, golden_case, convis_golden_dir, reference_vocabulary):
    """The fast window encoder against the reference's recorded windows (every 12th of chelsea's 730).

    It feeds the model the reference's pixels up to one grey level, so r_min matches the golden value on nearly
    every window and is never off by more than a few ranks.
    """
    from PIL import Image

    from captum_clip.convis.ranks import similarity_ranks, subtree_min_ranks
    from captum_clip.convis.windows import REFERENCE_WINDOWS, embed_windows, padded_canvas, square_image

    model, _, _ = tiny_clip
    case = golden_case("chelsea")
    boxes = torch.from_numpy(case["windows"][case["overlaps_image"]])[::12]
    encoder = tensor_resize_image_encoder(model.encode_image, 224, (0.48145466, 0.4578275, 0.40821073),
                                          (0.26862954, 0.26130258, 0.27577711))
    canvas = padded_canvas(square_image(Image.open(convis_golden_dir / "chelsea.png")), REFERENCE_WINDOWS)
    embeddings = embed_windows(canvas, boxes, encoder, batch_size=64)
    golden_d = torch.from_numpy(np.load(convis_golden_dir / "text_bank_tiny-vit.npz")["D"])
    subtrees = [reference_vocabulary.subtree(c) for c in case["concepts"]]
    r_min = subtree_min_ranks(similarity_ranks(embeddings, golden_d), subtrees).T.numpy()
    gold = case["r_min"][:, case["overlaps_image"]][:, ::12]
    assert (r_min == gold).mean() > 0.95
    assert np.abs(r_min - gold).max() <= 3


def test_default_batch_is_the_towers_pass_size(make, tiny_classifiers):
    for kind in ("vit", "resnet"):
        tower = tiny_classifiers[kind].tower
        assert make(tiny_classifiers[kind]).batch_size == tower.images_per_pass(tower.native_image_size, "cpu")
    assert make(batch_size=3).batch_size == 3
