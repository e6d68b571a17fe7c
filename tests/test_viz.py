"""Every figure the package writes fits its canvas, and the overlay's colour scales say what they show.

``assert_layout`` is the one check of a figure's geometry: the written image is ``figsize * dpi`` pixels, every
text that is drawn lies on the canvas, and so does the figure's tight bounding box. Figures written by the CLI
are caught at ``Figure.savefig``, so the check sees exactly the figure that was saved.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from unittest import mock

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image

from captum_clip import load_clip
from captum_clip.cli import main
from captum_clip.core.loading import BUILTIN_MODELS
from captum_clip.viz import display_range, overlay_figure, overlay_rgb


SHIPPED = pytest.mark.skipif(not BUILTIN_MODELS["shapes"][1].is_file(), reason="shipped scene model not built")


# ---------------------------------------------------------------------------------------------- the checks
def _drawn_texts(figure: Figure) -> list:
    """The Text artists a draw of ``figure`` actually renders (visible, non-empty, inside a drawn parent)."""
    drawn, original = [], Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    with mock.patch.object(Text, "draw", draw):
        figure.canvas.draw()
    return drawn


def _inside(extent, box, tolerance: float) -> bool:
    return (extent.x0 >= box.x0 - tolerance and extent.y0 >= box.y0 - tolerance
            and extent.x1 <= box.x1 + tolerance and extent.y1 <= box.y1 + tolerance)


def assert_layout(figure: Figure, written=None, tolerance: float = 1.0) -> list:
    """Fail unless ``figure`` (and the PNG it was ``written`` to) fits its canvas.

    Checks: the canvas (and the written image) is ``figsize * dpi`` pixels; every drawn text's window extent lies
    within ``figure.bbox``; ``figure.get_tightbbox`` lies within the figure, both within ``tolerance`` pixels.

    Returns:
        The drawn Text artists, for further checks.
    """
    texts = _drawn_texts(figure)
    renderer = figure.canvas.get_renderer()
    pixels = figure.get_size_inches() * figure.dpi
    assert np.allclose(pixels, np.round(pixels), atol=1e-6), f"figsize * dpi = {pixels} is not whole pixels"
    expected = tuple(int(round(v)) for v in pixels)
    assert (int(renderer.width), int(renderer.height)) == expected
    if written is not None:
        assert Image.open(written).size == expected, f"{written}: {Image.open(written).size} != {expected}"
    outside = [(t.get_text()[:40], t.get_window_extent(renderer).bounds) for t in texts
               if not _inside(t.get_window_extent(renderer), figure.bbox, tolerance)]
    assert not outside, f"text outside the {expected} canvas: {outside}"
    tight = figure.get_tightbbox(renderer)  # in inches
    assert _inside(tight, figure.bbox_inches, tolerance / figure.dpi), f"tight bbox {tight} beyond the figure"
    return texts


def colour_bars(figure: Figure) -> list:
    return [axis._colorbar for axis in figure.axes if getattr(axis, "_colorbar", None) is not None]


def heat_images(figure: Figure) -> list:
    """The map layers of an overlay figure (the second image of each overlay panel), row by row."""
    return [axis.get_images()[1] for axis in figure.axes if len(axis.get_images()) == 2]


def assert_apart(figure: Figure, texts: list, tolerance: float = 0.5) -> None:
    """No two of ``texts`` overlap (by more than ``tolerance`` pixels each way)."""
    renderer = figure.canvas.get_renderer()
    boxes = np.array([t.get_window_extent(renderer).extents for t in texts])  # (n, 4): x0, y0, x1, y1
    overlap_x = np.minimum(boxes[:, None, 2], boxes[None, :, 2]) - np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    overlap_y = np.minimum(boxes[:, None, 3], boxes[None, :, 3]) - np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    clash = (overlap_x > tolerance) & (overlap_y > tolerance)
    np.fill_diagonal(clash, False)
    pairs = [(texts[i].get_text(), texts[j].get_text()) for i, j in zip(*np.nonzero(np.triu(clash)))]
    assert not pairs, f"overlapping texts: {pairs}"


@contextmanager
def saved_figures():
    """Collect ``(figure, path)`` of every ``Figure.savefig`` in the block."""
    saved, original = [], Figure.savefig

    def savefig(self, path, *args, **kwargs):
        saved.append((self, path))
        return original(self, path, *args, **kwargs)

    with mock.patch.object(Figure, "savefig", savefig):
        yield saved


# ---------------------------------------------------------------------------------------------- CLI figures
@pytest.fixture()
def quick_convis(monkeypatch, real_wordnet):
    """ConVis over a small vocabulary with a smooth stand-in for its window sweep: the figure is under test,
    not ConVis, whose maps (in [0, 1]) take minutes of CPU on the full vocabulary."""
    from captum_clip import defaults
    from captum_clip.convis.attribution import ConVisAttribution

    method_defaults = defaults.method_defaults

    def small_vocabulary(method, classifier):
        options = method_defaults(method, classifier)
        return {**options, "vocabulary": ["circle.n.01", "star.n.05", "cross.n.03"]} if method == "convis" else options

    def attribute_concepts(self, inputs, concepts, aggregation=None, normalize=True):
        images = inputs[0] if isinstance(inputs, tuple) else inputs
        height, width = images.shape[-2:]
        ramp = torch.linspace(0, 1, width).expand(height, width)
        return torch.stack([ramp ** (k + 1) for k in range(len(concepts))]).expand(images.shape[0], -1, -1, -1)

    monkeypatch.setattr(defaults, "method_defaults", small_vocabulary)
    monkeypatch.setattr(ConVisAttribution, "attribute_concepts", attribute_concepts)


def _overlay_titles(figure: Figure) -> list:
    return [axis.get_title() for axis in figure.axes if axis.get_title() and axis.get_title() != "input"]


def test_explain_overlay_with_ig_and_convis_fits(cli_files, tmp_path, quick_convis, real_wordnet):
    image, config, _ = cli_files
    out = tmp_path / "synsets.png"
    with saved_figures() as saved:
        main(["explain", str(image), "--text", "circle.n.01", "--text", "star.n.05", "--method", "gradcam,ig,convis",
              "--ig-steps", "2", "--model", str(config), "--out", str(out)])
    [(figure, path)] = saved
    assert_layout(figure, path)
    assert len(colour_bars(figure)) == 3 * 2  # one per overlay panel
    titles = _overlay_titles(figure)
    # Every query is a synset: the columns name the concept with its gloss, and no softmax over "a photo of
    # circle.n.01." is shown.
    assert titles[0].startswith("circle.n.01\n") and "equal length" in titles[0].replace("\n", " ")
    assert not any("p=" in title for title in titles)


def test_explain_convis_beside_class_queries_captions_its_row(cli_files, tmp_path, quick_convis):
    image, config, _ = cli_files
    out = tmp_path / "classes.png"
    with saved_figures() as saved:
        main(["explain", str(image), "--text", "red circle", "--text", "blue star", "--method", "surgery,convis",
              "--model", str(config), "--out", str(out), "--shared-scale"])
    [(figure, path)] = saved
    texts = assert_layout(figure, path)
    assert_apart(figure, texts)
    assert len(colour_bars(figure)) == 2  # one per row
    titles = _overlay_titles(figure)
    assert titles[0].startswith("red circle\n(p=")  # class-name queries keep their probability
    captions = [axis.get_xlabel() for axis in figure.axes if axis.get_xlabel()]
    assert len(captions) == 2 and captions[0].startswith("red circle → circle.n.01:")


def test_mutual_concept_figure_from_the_cli_fits(cli_files, tmp_path):
    image, config, bank = cli_files
    with saved_figures() as saved:
        main(["explain", str(image), "--text", "cat", "--text", "dog", "--method", "mutual", "--model", str(config),
              "--descriptors", str(bank), "--out", str(tmp_path / "mutual.png")])
    [(figure, path)] = saved
    _assert_concept_figure(figure, path)


@SHIPPED
@pytest.mark.parametrize("shared", [False, True])
def test_demo_figure_fits(tmp_path, shared):
    out = tmp_path / "demo.png"
    with saved_figures() as saved:
        main(["demo", "--out", str(out), "--method", "surgery,gradcam,ig", "--device", "cpu",
              *(["--shared-scale"] if shared else [])])
    [(figure, path)] = saved
    texts = assert_layout(figure, path)
    assert_apart(figure, texts)
    assert len(colour_bars(figure)) == (3 if shared else 3 * 2)
    heats = heat_images(figure)
    assert heats[0].get_cmap().name == "viridis"
    if shared:
        assert all(heats[2 * r].get_clim() == heats[2 * r + 1].get_clim() for r in range(3))


# ---------------------------------------------------------------------------------------------- the concept figure
def _assert_concept_figure(figure: Figure, path=None) -> None:
    texts = assert_layout(figure, path)
    ax_image, ax_concepts, ax_curve = figure.axes
    # The concept panel is the input panel's twin: same size and height, same limits (no band from an ellipse
    # past the edge).
    first, second = ax_image.get_position(), ax_concepts.get_position()
    assert math.isclose(first.y0, second.y0, abs_tol=1e-6) and math.isclose(first.height, second.height, abs_tol=1e-6)
    assert math.isclose(first.width, second.width, abs_tol=1e-6)
    assert ax_concepts.get_xlim() == ax_image.get_xlim() and ax_concepts.get_ylim() == ax_image.get_ylim()
    renderer = figure.canvas.get_renderer()
    ticks = [t for t in ax_curve.get_xticklabels() if t in texts]
    if ticks:
        assert_apart(figure, ticks)
    legend = ax_concepts.get_legend()
    if legend is not None:
        assert _inside(legend.get_window_extent(renderer), figure.bbox, 1.0)


def _synthetic_explanation(n_descriptors: int, n_concepts: int = 6, size: int = 64):
    from captum_clip.mutual.results import MutualExplanation

    rng = np.random.default_rng(0)
    masks = torch.zeros(n_concepts, size, size, dtype=torch.bool)
    for j in range(n_concepts):
        masks[j, 10 * j: 10 * j + 10, 5:40] = True
    descriptors = [f"descriptor number {i} with a rather long wordy phrase" for i in range(n_descriptors)]
    curve = np.sort(rng.random(n_descriptors + 1))[::-1] * 6
    return MutualExplanation(
        masks=masks,
        concept_descriptors=[descriptors[3 * j: 3 * j + 3] for j in range(n_concepts)],
        visual_descriptors=[(d, 1.0) for d in descriptors], text_descriptors=descriptors[::2],
        mutual=descriptors[::2], mi=float(curve[0]), mi_curve=torch.from_numpy(curve.copy()), auc=float(curve.mean()),
        target=0, target_name="blue ring", importance=torch.ones(n_concepts), part_ids=list(range(n_concepts)),
        # Ellipses reaching far past the image's edges.
        ellipses=np.array([[0.0, 10.0 * j, 80.0, 40.0, 30.0] for j in range(n_concepts)]),
        foreground=torch.ones(8, 8, dtype=torch.bool), visual_ids=list(range(n_descriptors)), text_ids=[0])


@pytest.mark.parametrize("n_descriptors", [12, 120])
def test_concept_figure_fits_many_descriptors_and_big_ellipses(n_descriptors):
    from captum_clip.mutual import concept_figure

    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    figure = concept_figure(image, _synthetic_explanation(n_descriptors), title="a title\nand a second line")
    _assert_concept_figure(figure)
    labels = [t.get_text() for t in figure.axes[2].get_xticklabels() if t.get_text()]
    assert labels[0] == "descriptor number 0 with a…"  # cut at 28 characters
    # 120 labels cannot stand side by side: only every k-th is named, and the axis says so.
    assert (len(labels) < n_descriptors) == (n_descriptors == 120)
    assert ("named" in figure.axes[2].get_xlabel()) == (n_descriptors == 120)


@SHIPPED
def test_shipped_mutual_example_figure_fits():
    from captum_clip.mutual import concept_figure
    from captum_clip.shipped.mutual_example import explain_scene
    from captum_clip.viz import to_display_images

    result = explain_scene(bundle=load_clip("shapes", device="cpu"))
    picture = to_display_images(result.image, *load_clip("shapes").image_mean_std)[0]
    _assert_concept_figure(concept_figure(picture, result.explanation, title="scene\npredicted"))


# ---------------------------------------------------------------------------------------------- other figures
def test_convis_localisation_figure_fits(tmp_path, real_wordnet):
    from captum_clip.evaluation.convis_figures import save_localisation_figure

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    maps = [rng.random((64, 64)) for _ in range(3)]
    with saved_figures() as saved:
        path = save_localisation_figure(tmp_path / "wsol.png", images, maps, ["circle.n.01", "star.n.05", "a text"],
                                        [np.array([[4, 4, 30, 30]])] * 3, 0.5,
                                        suptitle="ConVis on shapes (definition texts): MaxBoxAcc 0.50")
    [(figure, written)] = saved
    assert path == tmp_path / "wsol.png"
    texts = assert_layout(figure, written)
    assert_apart(figure, texts)
    assert len(colour_bars(figure)) == 1 and heat_images(figure)[0].get_cmap().name == "viridis"
    assert "equal length" in figure.axes[0].get_title().replace("\n", " ")  # the synset's gloss


def test_benchmark_and_evaluation_bar_charts_fit():
    from captum_clip.evaluation import reports
    from captum_clip.evaluation.benchmark import RANDOM_WEIGHTS, bar_chart

    keys = ["surgery", "surgery:redundancy=empty", "clip", "gradcam", "ig", "convis", "mutual", "random"]
    keys = [k for key in keys for k in (key, key + RANDOM_WEIGHTS)]
    metrics = ["PointingGame", "AttributionLocalisation", "TopKIntersection", "RelevanceRankAccuracy",
               "PixelFlipping"]
    rows = [{"method": key, "metric": metric, "mean": 0.5, "sem": 0.05} for key in keys for metric in metrics]
    figure = bar_chart(rows)
    assert_apart(figure, assert_layout(figure))
    results = {"config": {"main_metric": "mIoU", "higher_is_better": True}, "protocol": "CAM mIoU",
               "dataset": "VOC 2012", "methods": {key: {"mIoU": 0.4, "mIoU_stderr": 0.01} for key in keys}}
    # Its labels are diagonal: their axis-aligned boxes overlap where the glyphs do not, so only the layout.
    assert_layout(reports.figure(results))


# ---------------------------------------------------------------------------------------------- the scales
def _two_maps():
    image = np.full((32, 32, 3), 128, dtype=np.uint8)
    ramp = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    return image, np.stack([ramp, 10 * ramp])  # two queries, magnitudes 1 and 10


def test_shared_scale_gives_one_range_per_row():
    image, maps = _two_maps()
    figure = overlay_figure(image, {"A": maps, "B": -maps}, ["small", "large"], shared_scale=True, outlier_perc=0)
    heats = heat_images(figure)
    assert heats[0].get_clim() == heats[1].get_clim() == display_range(maps, outlier_perc=0) == (0.0, 10.0)
    assert heats[2].get_clim() == heats[3].get_clim() == (-10.0, 0.0)
    assert len(colour_bars(figure)) == 2
    alone = heat_images(overlay_figure(image, {"A": maps}, ["small", "large"], outlier_perc=0))
    assert alone[0].get_clim() == (0.0, 1.0) and alone[1].get_clim() == (0.0, 10.0)


def test_a_signed_map_uses_a_symmetric_diverging_range():
    image, maps = _two_maps()
    signed = maps - 0.3  # from -0.3 to 0.7 (and 9.7)
    figure = overlay_figure(image, {"IG": signed, "Grad-CAM": maps}, ["a", "b"], signed={"IG"}, outlier_perc=0)
    heats = heat_images(figure)
    assert heats[0].get_clim() == (-0.7, 0.7) and heats[0].get_cmap().name == "RdBu_r"
    assert heats[2].get_clim() == (0.0, 1.0) and heats[2].get_cmap().name == "viridis"
    # The mapping form and a name -> bool mapping mean the same.
    again = heat_images(overlay_figure(image, {"IG": signed}, ["a", "b"], signed={"IG": True}, outlier_perc=0))
    assert again[0].get_clim() == (-0.7, 0.7)
    with pytest.raises(ValueError, match="signed names"):
        overlay_figure(image, {"IG": signed}, ["a", "b"], signed={"Integrated gradients"})


def test_outlier_clipping_saturates_the_top_two_percent():
    image = np.full((50, 50, 3), 128, dtype=np.uint8)
    values = np.random.default_rng(0).exponential(size=(2, 50, 50))
    figure = overlay_figure(image, {"Grad-CAM": values, "raw CLIP": values}, ["a", "b"],
                            outlier_perc={"Grad-CAM": 2.0, "raw CLIP": 0.0})
    clipped, full = heat_images(figure)[0], heat_images(figure)[2]
    vmin, vmax = clipped.get_clim()
    assert np.isclose(np.mean(values[0] > vmax), 0.02, atol=1 / values[0].size)
    top = values[0] > vmax
    colours = clipped.to_rgba(values[0])
    assert np.allclose(colours[top], clipped.get_cmap()(1.0))  # the top 2 % share the top colour
    assert full.get_clim() == (values[0].min(), values[0].max())
    # The bars say so: an arrow end where values saturate, none where nothing does.
    bars = colour_bars(figure)  # row by row, one per panel
    assert [bars[0].extend, bars[2].extend] == ["max", "neither"]
    signed_low, signed_high = display_range(values - 1, signed=True, outlier_perc=2)
    assert signed_low == -signed_high and np.isclose(np.mean(np.abs(values - 1) > signed_high), 0.02, atol=1e-3)


def test_sparse_and_constant_maps_get_a_range_of_their_own():
    sparse = np.zeros((100, 100))
    sparse[0, :50] = np.linspace(1e-4, 1e-3, 50)  # 0.5 % of the pixels are non-zero
    assert display_range(sparse, outlier_perc=2) == (0.0, 1e-3)  # not (0, 1): the map would be invisible
    assert display_range(np.concatenate([sparse, -sparse]), signed=True, outlier_perc=2) == (-1e-3, 1e-3)
    low, high = display_range(np.full((4, 4), 1e17))
    assert low == 1e17 and high > low
    pixels = overlay_rgb(np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 1e17), low, high)
    assert pixels.dtype == np.uint8  # no division by zero


def test_overlay_keeps_its_positional_signature_and_checks_its_options():
    image, maps = _two_maps()
    figure = overlay_figure(image, {"A": torch.from_numpy(maps)[:, None]}, ["a", "b"], "title", 0.4, "inferno", 2.0)
    assert heat_images(figure)[0].get_cmap().name == "inferno" and heat_images(figure)[0].get_alpha() == 0.4
    assert_layout(figure)
    with pytest.raises(ValueError, match="outlier_perc names"):
        overlay_figure(image, {"A": maps}, ["a", "b"], outlier_perc={"B": 1.0})
    with pytest.raises(ValueError, match="one caption per query"):
        overlay_figure(image, {"A": maps}, ["a", "b"], panel_notes={"A": ["only one"]})


def test_methods_say_how_their_maps_display(tiny_classifiers):
    from captum_clip.methods import build_method
    from captum_clip.attr import CLIPIntegratedGradients

    classifier = tiny_classifiers["vit"]
    assert [build_method(name, classifier).display_outlier_perc for name in ("surgery", "clip", "gradcam", "ig")] \
        == [0.0, 0.0, 2.0, 2.0]
    assert not build_method("gradcam", classifier).signed_maps
    # IG's default map sums |attribution| over RGB: only the "sum" reduction is signed.
    assert not CLIPIntegratedGradients(classifier).signed_maps
    assert CLIPIntegratedGradients(classifier, channel_reduction="sum").signed_maps
