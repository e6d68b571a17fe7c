"""The scene synset table, the OOD and localisation experiments end to end (tiny model, few windows), the
registry / Quantus adapter and the CLI subcommands.

The numbers these produce on tiny random models mean nothing; the tests pin the plumbing: which images count as
ID or OOD, which boxes are compared, that every output is in range, and that a user's folders are read.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from captum_clip.convis.attribution import ConVisAttribution
from captum_clip.evaluation.convis_experiments import (
    centre_prior_map,
    folder_localisation,
    folder_ood,
    pointing_scores,
    scene_localisation,
    scene_ood,
)
from captum_clip.evaluation.convis_ood import (descends_from, encode_images, ood_auroc, ood_texts,
                                               run_ood_experiment)
from captum_clip.shipped.presets import COLOR_SYNSETS, SHAPE_SYNSETS, scene_class_synset
from captum_clip.convis.vocabulary import ConceptVocabulary
from captum_clip.convis.windows import WindowConfig
from captum_clip.shipped import COLORS, SHAPES

from ..conftest import TINY_CONFIGS, torch_threads

SMALL_WINDOWS = WindowConfig(image_size=32, sizes=(16, 8), stride=8, pad=8)

#: Words that must appear in the gloss of each shape's synset: the sense is the drawn figure.
SHAPE_GLOSS_WORDS = {
    "circle": "two axes are of equal length",
    "square": "four equal sides",
    "triangle": "three-sided polygon",
    "star": "plane figure with 5 or more points",
    "cross": "structure on which jesus was crucified",
    "ring": "toroidal shape",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def shapes_vocabulary(real_wordnet) -> ConceptVocabulary:
    """The scene synsets, a few distractors and their hypernyms (a small stand-in for scene_vocabulary())."""
    return ConceptVocabulary.from_synsets(
        [*SHAPE_SYNSETS.values(), *COLOR_SYNSETS.values(), "greek_cross.n.01", "dog.n.01", "cup.n.01"],
        wordnet=real_wordnet,
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("convis_experiment_cache")


def test_scene_synset_table_has_the_intended_senses(real_wordnet):
    assert set(SHAPE_SYNSETS) == set(SHAPES) and set(COLOR_SYNSETS) == set(COLORS)
    for shape, name in SHAPE_SYNSETS.items():
        synset = real_wordnet.synset(name)
        assert synset.name() == name and synset.pos() == "n"
        assert SHAPE_GLOSS_WORDS[shape] in synset.definition().lower(), (name, synset.definition())
    # The drawn plus shape is the equal-armed cross, a hyponym of cross.n.03.
    greek = real_wordnet.synset("greek_cross.n.01")
    assert "four arms the same length" in greek.definition()
    assert greek.hypernyms() == [real_wordnet.synset("cross.n.03")]
    for color, name in COLOR_SYNSETS.items():
        synset = real_wordnet.synset(name)
        assert color in synset.lemma_names() and real_wordnet.synset("chromatic_color.n.01") in synset.hypernyms()
    assert scene_class_synset("red star") == "star.n.05" and scene_class_synset("blue") == "blue.n.01"
    assert scene_class_synset("a photo of a green ring.") == "ring.n.02"


def test_ood_texts_and_auroc(shapes_vocabulary):
    texts = ood_texts(shapes_vocabulary, "polygon.n.01")
    wn = shapes_vocabulary._reader(None)
    assert texts["id_definition"] == [wn.synset("polygon.n.01").definition()]
    # Leaves of Sub(polygon) in this H: the square and the triangle.
    assert sorted(texts["hierarchy_definitions"]) == sorted(
        wn.synset(s).definition() for s in ("square.n.01", "triangle.n.01"))
    assert {"polygon", "polygonal shape", "square", "triangle", "trigon", "rectangle"} <= set(texts["hierarchy_lemmas"])
    assert descends_from("square.n.01", "polygon.n.01", shapes_vocabulary)
    assert not descends_from("circle.n.01", "polygon.n.01", shapes_vocabulary)
    # OOD = positive and flagged by a low score: perfectly separated low OOD scores give 1, reversed 0.
    assert ood_auroc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([0, 0, 1, 1])) == 1.0
    assert ood_auroc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1])) == 0.0
    assert ood_auroc(np.array([0.5, 0.9, 0.1, 0.7]), np.array([0, 0, 1, 1])) == 0.75
    with pytest.raises(ValueError, match="both"):
        ood_auroc(np.array([0.1, 0.2]), np.array([0, 0]))


def test_ood_experiment_selects_images_by_synset(tiny_bundles, shapes_vocabulary):
    bundle = tiny_bundles["vit"]
    embeddings = torch.nn.functional.normalize(torch.randn(8, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    classes = ["square.n.01", "triangle.n.01", "circle.n.01", "star.n.05"] * 2
    result = run_ood_experiment(bundle, embeddings, classes, "polygon.n.01", "conic_section.n.01", shapes_vocabulary,
                                train_embeddings=embeddings, train_synsets=classes)
    assert (result.n_id, result.n_ood) == (4, 2)
    assert result.id_classes == ["square.n.01", "triangle.n.01"] and result.ood_classes == ["circle.n.01"]
    assert set(result.auroc) == {"id_definition", "hierarchy_definitions", "hierarchy_lemmas", "mls_linear_probe",
                                 "mls_zero_shot"}
    assert all(0 <= v <= 1 for v in result.auroc.values())
    with pytest.raises(ValueError, match="overlap"):
        run_ood_experiment(bundle, embeddings, classes, "polygon.n.01", "square.n.01", shapes_vocabulary)


def test_scene_ood_runs_offline(tiny_bundles, shapes_vocabulary):
    results = scene_ood(tiny_bundles["vit"], shapes_vocabulary, n_test=40, n_train=40)
    assert [(r.id_synset, r.ood_synset) for r in results] == [("polygon.n.01", "conic_section.n.01"),
                                                             ("plane_figure.n.01", "solid.n.03")]
    assert results[1].ood_classes == ["ring.n.02"] and "star.n.05" in results[1].id_classes
    assert all(0 <= v <= 1 for r in results for v in r.auroc.values())


def test_folder_ood_reads_wnid_and_synset_folders(tmp_path, tiny_bundles, shapes_vocabulary):
    rng = np.random.default_rng(0)
    for folder in ("square.n.01", "triangle.n.01", "circle.n.01", "ignored"):
        (tmp_path / folder).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    result = folder_ood(tiny_bundles["vit"], tmp_path, "polygon.n.01", "conic_section.n.01", shapes_vocabulary,
                        train_root=tmp_path, limit=2)
    assert (result.n_id, result.n_ood) == (4, 2) and "mls_linear_probe" in result.auroc


def test_ood_embeddings_are_encoded_in_the_bundles_precision(tiny_bundles):
    import dataclasses

    fp32 = tiny_bundles["vit"]
    bf16 = dataclasses.replace(fp32, precision="bf16")
    images = torch.randn(3, 3, *fp32.input_size, generator=torch.Generator().manual_seed(0))
    plain, reduced = encode_images(fp32, [images]), encode_images(bf16, [images])
    assert reduced.dtype == torch.float32 and torch.isfinite(reduced).all()
    assert not torch.equal(plain, reduced)  # autocast ran
    assert (plain - reduced).abs().max() < 0.05  # unit-norm rows: bf16's rounding, not another function
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())


def test_pointing_and_prior():
    saliency = np.zeros((4, 4))
    saliency[0, :2] = 1.0  # a plateau of two pixels, one on the object
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    assert pointing_scores(saliency, mask) == 0.5
    prior = centre_prior_map(5, 7)
    assert prior.shape == (5, 7) and prior[2, 3] == 1 and prior.min() == 0


def test_scene_localisation_runs_offline(tiny_bundles, shapes_vocabulary, cache_dir):
    method = ConVisAttribution(tiny_bundles["vit"], shapes_vocabulary, text_source="lemmas", windows=SMALL_WINDOWS,
                               cache_dir=cache_dir)
    result = scene_localisation(method, 3, n_objects=2, progress=False)
    assert result.n_images == 3 and result.n_queries == 6 and len(result.maps) == 6
    assert result.maps[0].shape == (64, 64)
    for value in (result.pointing_rate, result.pointing_any_object, result.pointing_chance,
                  result.box_accuracy.max_box_acc, result.baseline_box_accuracy.max_box_acc):
        assert 0 <= value <= 1
    assert result.pointing_rate <= result.pointing_any_object
    assert sum(n for n, _ in result.per_concept.values()) == 6


def test_folder_localisation_uses_the_square_frame(tmp_path, tiny_bundles, shapes_vocabulary, cache_dir):
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "boxes.txt").write_text("a.png 10 5 30 20\nb.png 0 0 5 5\n")  # b's box lies in the cropped margin
    method = ConVisAttribution(tiny_bundles["vit"], shapes_vocabulary, windows=SMALL_WINDOWS, cache_dir=cache_dir)
    result = folder_localisation(method, tmp_path, tmp_path / "boxes.txt", "circle.n.01", progress=False)
    assert result.n_images == 1 and result.maps[0].shape == (32, 32)
    assert result.pointing_rate is None


def test_registry_and_quantus_adapter(tiny_classifiers, tiny_bundles, shapes_vocabulary, cache_dir):
    from captum_clip.methods import DISPLAY_NAMES, METHODS, build_method
    from captum_clip.evaluation import make_explain_func

    assert "convis" in METHODS and DISPLAY_NAMES["convis"] == "ConVis"
    classifier = tiny_classifiers["vit"]  # classes: cat, dog, red star, blue ring
    options = dict(vocabulary=shapes_vocabulary, windows=SMALL_WINDOWS, cache_dir=cache_dir,
                   class_synsets=lambda name: scene_class_synset(name) if " " in name else "dog.n.01")
    method = build_method("convis", classifier, **options)
    assert isinstance(method, ConVisAttribution)
    explain = make_explain_func("convis", **options)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).numpy()
    maps = explain(model=classifier, inputs=x, targets=np.array([2, 3]))
    assert maps.shape == (2, 1, 64, 64) and maps.dtype == np.float32
    expected = method.attribute(torch.from_numpy(x), target=["star.n.05", "ring.n.02"]).numpy()
    np.testing.assert_array_equal(maps, expected)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tiny_bundles):
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    (folder / "tiny.json").write_text(json.dumps(TINY_CONFIGS["vit"]))
    save_file({k: v.contiguous() for k, v in tiny_bundles["vit"].model.state_dict().items()},
              str(folder / "tiny.safetensors"))
    (folder / "words.txt").write_text("cup\ndog\n")
    return folder


def _cli(folder, *arguments):
    return ["--model", str(folder / "tiny.json"), "--pretrained", str(folder / "tiny.safetensors"),
            "--words", str(folder / "words.txt"), *arguments]


def test_cli_subcommands(tiny_checkpoint, tmp_path, capsys, monkeypatch, cache_dir):
    from captum_clip.cli import main

    monkeypatch.setenv("CAPTUM_CLIP_CACHE_DIR", str(cache_dir))
    out = tmp_path / "wsol.json"
    main(["convis-wsol", "--scenes", "2", "--objects", "1", "--stride", "64", "--out", str(out),
          "--figure", str(tmp_path / "wsol.png"),
          *_cli(tiny_checkpoint)])
    printed = capsys.readouterr().out
    assert "MaxBoxAcc (IoU > 0.5)" in printed and "map maximum on the queried object" in printed
    assert json.loads(out.read_text())["n_queries"] == 2 and (tmp_path / "wsol.png").stat().st_size > 0

    main(["convis-ood", "--scenes", "30", "--train-scenes", "30", *_cli(tiny_checkpoint)])
    printed = capsys.readouterr().out
    assert "| polygon.n.01 | conic_section.n.01 |" in printed and "mls_linear_probe" in printed

    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    import captum_clip.core.loading as loading

    loaded, load_clip = [], loading.load_clip
    monkeypatch.setattr(loading, "load_clip", lambda *a, **k: loaded.append(load_clip(*a, **k)) or loaded[-1])
    main(["convis-top", str(image), "--k", "3", "--stride", "64", "--under", "entity.n.01", "--precision", "bf16",
          *_cli(tiny_checkpoint)])
    assert "| concept | mass | best rank |" in capsys.readouterr().out
    assert [bundle.precision for bundle in loaded] == ["bf16"]

    with pytest.raises(SystemExit, match="--boxes FILE and --concept"):
        main(["convis-wsol", "--images", str(tmp_path), *_cli(tiny_checkpoint)])


def test_cli_explain_with_convis(tiny_checkpoint, tmp_path, monkeypatch, cache_dir):
    from captum_clip.cli import main

    monkeypatch.setenv("CAPTUM_CLIP_CACHE_DIR", str(cache_dir))
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    model = ["--model", str(tiny_checkpoint / "tiny.json"), "--pretrained", str(tiny_checkpoint / "tiny.safetensors")]
    with pytest.raises(SystemExit, match="convis: class 'dog' is ambiguous"):
        main(["explain", str(image), "--method", "convis", "--text", "dog", *model, "--out", str(tmp_path / "x.png")])


def test_registry_gives_scene_classifiers_the_scene_table(tiny_bundles, shapes_vocabulary, cache_dir, monkeypatch):
    from captum_clip import ZeroShotClassifier
    from captum_clip.shipped import presets
    from captum_clip.shipped.presets import is_scene_classnames
    from captum_clip.methods import build_method

    assert is_scene_classnames(["red star", "blue ring", "green"]) and not is_scene_classnames(["cat", "red star"])
    # The full scene vocabulary is |T| = 7,181: too slow to encode here, so the preset gets a small one.
    monkeypatch.setattr(presets, "scene_vocabulary", lambda: shapes_vocabulary)
    classifier = ZeroShotClassifier(tiny_bundles["vit"], ["red star", "blue ring"], ["{}"])
    method = build_method("convis", classifier, windows=SMALL_WINDOWS, cache_dir=cache_dir)
    assert method.vocabulary is shapes_vocabulary
    assert method.text_source == "definition"  # lemmas only for the shipped model
    assert method.target_concepts([0, 1]) == ["star.n.05", "ring.n.02"]
