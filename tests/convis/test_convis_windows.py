"""Window geometry and crops: the reference's PIL pipeline, written out in the test, and the golden crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from captum_clip.convis.windows import (
    WindowConfig,
    embed_windows,
    iter_crop_batches,
    padded_canvas,
    square_image,
    window_crop,
    window_grid,
)


def _reference_crop(canvas: np.ndarray, box, radius: float) -> np.ndarray:
    """The reference's ``load_clip_mask_filtered``: full-canvas blurred mask, paste black, one-short crop."""
    x, y, b = box
    size = canvas.shape[0]
    mask = np.full((size, size), 255, np.uint8)
    mask[y : y + b, x : x + b] = 0
    blurred = Image.fromarray(mask).filter(ImageFilter.GaussianBlur(radius=radius))
    image = Image.fromarray(canvas)
    image.paste(Image.new("RGB", image.size, 0), (0, 0), blurred)
    return np.asarray(image.crop((x, y, min(x + b, size) - 1, min(y + b, size) - 1)))


@pytest.fixture(scope="module")
def noise_canvas():
    return np.random.RandomState(5).randint(0, 256, (96, 96, 3), dtype=np.uint8)


@pytest.mark.parametrize("radius", [0.5, 2.0, 3.3])
def test_crops_equal_the_full_canvas_pil_pipeline(noise_canvas, radius):
    config = WindowConfig(image_size=32, sizes=(40, 16), stride=8, pad=32, rim_blur=radius)
    # Corners, edges, interior and windows running off the canvas.
    for box in [(0, 0, 40), (8, 0, 40), (24, 48, 40), (72, 72, 40), (88, 16, 40), (0, 88, 16), (40, 40, 16),
                (80, 80, 16), (88, 88, 16), (2, 5, 16)]:
        assert np.array_equal(window_crop(noise_canvas, box, config), _reference_crop(noise_canvas, box, radius)), box


def test_plain_and_full_size_variants(noise_canvas):
    plain = WindowConfig(image_size=32, sizes=(16,), stride=8, pad=32, rim_blur=None, crop_minus1=False)
    assert np.array_equal(window_crop(noise_canvas, (8, 24, 16), plain), noise_canvas[24:40, 8:24])
    rim_only = WindowConfig(image_size=32, sizes=(16,), stride=8, pad=32, crop_minus1=False)
    crop = window_crop(noise_canvas, (8, 24, 16), rim_only)
    assert crop.shape == (16, 16, 3)
    # The blur darkens only the outermost ring (and corners most).
    assert np.array_equal(crop[2:-2, 2:-2], noise_canvas[26:38, 10:22])
    assert (crop[0].astype(int) <= noise_canvas[24, 8:24]).all()
    assert (crop[0] < noise_canvas[24, 8:24]).any()
    one_short = WindowConfig(image_size=32, sizes=(16,), stride=8, pad=32, rim_blur=None)
    assert window_crop(noise_canvas, (8, 24, 16), one_short).shape == (15, 15, 3)


def test_window_config_validation():
    with pytest.raises(ValueError, match="stride"):
        WindowConfig(stride=80)
    with pytest.raises(ValueError, match="pad_fill"):
        WindowConfig(pad_fill="mirror")
    with pytest.raises(ValueError, match="sizes"):
        WindowConfig(sizes=())
    assert WindowConfig().canvas_size == 480


def test_square_image_crops_floor_left_then_resizes():
    # 7 wide, 4 high: 3 excess columns, 1 removed on the left, 2 on the right.
    pixels = np.arange(7 * 4 * 3, dtype=np.uint8).reshape(4, 7, 3)
    out = square_image(pixels, size=4)
    assert np.array_equal(out, pixels[:, 1:5])
    tall = np.arange(4 * 7 * 3, dtype=np.uint8).reshape(7, 4, 3)
    assert np.array_equal(square_image(tall, size=4), tall[1:5])
    # A CHW uint8 tensor and a PIL image give the same result.
    assert np.array_equal(square_image(torch.from_numpy(pixels).permute(2, 0, 1), size=4), out)
    assert np.array_equal(square_image(Image.fromarray(pixels), size=4), out)
    with pytest.raises(ValueError, match="uint8"):
        square_image(np.zeros((4, 4, 3), np.float32))


def test_padding_fills():
    image = np.full((4, 4, 3), 200, np.uint8)
    canvas = padded_canvas(image, WindowConfig(image_size=4, sizes=(2,), stride=2, pad=2, pad_fill="gray"))
    assert canvas.shape == (8, 8, 3)
    assert (canvas[2:6, 2:6] == 200).all() and (canvas[:2] == 127).all()
    noisy = padded_canvas(image, WindowConfig(image_size=4, sizes=(2,), stride=2, pad=2, noise_seed=3))
    assert np.array_equal(noisy, padded_canvas(image, WindowConfig(image_size=4, sizes=(2,), stride=2, pad=2,
                                                                   noise_seed=3)))
    assert noisy.max() <= 254


def test_batches_group_equal_shapes_and_embedding_keeps_row_order(noise_canvas):
    config = WindowConfig(image_size=32, sizes=(40, 16), stride=8, pad=32)
    boxes = window_grid(config).boxes
    seen = []
    for rows, crops in iter_crop_batches(noise_canvas, boxes, config, batch_size=7):
        assert crops.dtype == torch.uint8 and crops.shape[1] == 3 and len(rows) <= 7
        seen.extend(rows.tolist())
        first = window_crop(noise_canvas, tuple(boxes[rows[0]].tolist()), config)
        assert np.array_equal(crops[0].permute(1, 2, 0).numpy(), first)
    assert sorted(seen) == list(range(len(boxes)))

    calls = []

    def encode(crops):  # (mean, height, width) of each crop: checks rows land where they belong
        calls.append(len(crops))
        c = crops.float()
        return torch.stack([c.mean((1, 2, 3)), torch.full((len(c),), crops.shape[2] * 1.0),
                            torch.full((len(c),), crops.shape[3] * 1.0)], 1)

    out = embed_windows(noise_canvas, boxes, encode, config, batch_size=16)
    assert max(calls) <= 16 and out.shape == (len(boxes), 3)
    for i in [0, 5, 77, len(boxes) - 1]:
        crop = window_crop(noise_canvas, tuple(boxes[i].tolist()), config)
        assert out[i].tolist() == pytest.approx([crop.mean(), crop.shape[0], crop.shape[1]], rel=1e-6)
    with pytest.raises(ValueError, match="encode_images returned"):
        embed_windows(noise_canvas, boxes, lambda c: torch.zeros(1, 3), config)


# ------------------------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("image", ["chelsea", "coffee"])
def test_golden_geometry_and_crops(image, golden_case, convis_golden_dir):
    case = golden_case(image)
    squared = square_image(Image.open(convis_golden_dir / f"{image}.png"))
    assert np.array_equal(squared, case["image_224"])
    config = WindowConfig()
    canvas = padded_canvas(squared, config)
    noise = np.load(convis_golden_dir / "padding_noise.npy")
    outside = np.ones((480, 480), bool)
    outside[128:352, 128:352] = False
    assert np.array_equal(canvas[outside], noise[outside])
    assert np.array_equal(canvas[128:352, 128:352], case["image_224"])
    grid = window_grid(config)
    assert np.array_equal(grid.boxes.numpy(), case["windows"])
    assert np.array_equal(grid.overlaps_image.numpy(), case["overlaps_image"])
    assert int(grid.overlaps_image.sum()) == 730
    sizes = np.array([window_crop(canvas, tuple(box), config).shape[1::-1] for box in case["windows"]])
    assert np.array_equal(sizes, case["crop_size"])
    for index in case["sample_crop_indices"]:
        crop = window_crop(canvas, tuple(case["windows"][index]), config)
        assert np.array_equal(crop, case[f"sample_crop_{index}"]), index
