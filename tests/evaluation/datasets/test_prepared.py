"""PreparedDataset + collate: masks and boxes follow the bundle's own resize and centre crop.

Two non-square folder images, each holding one coloured rectangle with its mask and box. The shipped "shapes"
bundle resizes the short side to 64 and centre-crops 64x64; the sizes are chosen so that both steps land the
rectangle on whole pixels: 96x192 -> 64x128 -> columns 32..96 kept, so columns 78..138 become 20..60. After preparation the mask, the box and the
coloured pixels of the image must cover the same rectangle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from captum_clip import load_clip
from captum_clip.evaluation.datasets import PreparedDataset, collate, read_dataset
from captum_clip.shipped.scenes import CLIP_MEAN, CLIP_STD

# stem: (height, width, rectangle rows, rectangle columns, colour, expected rectangle (x0, y0, x1, y1) after prep)
IMAGES = {
    "tall": (192, 96, (78, 138), (24, 72), (30, 30, 220), (16, 20, 48, 60)),
    "wide": (96, 192, (24, 72), (78, 138), (220, 30, 30), (20, 16, 60, 48)),
}


@pytest.fixture(scope="module")
def bundle():
    return load_clip("shapes")


@pytest.fixture
def prepared(tmp_path, bundle):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "classes.txt").write_text("red rectangle\nblue rectangle\n")
    rows = ["stem,class_index,x0,y0,x1,y1"]
    for stem, (height, width, (r0, r1), (c0, c1), colour, _) in IMAGES.items():
        image = np.full((height, width, 3), 128, np.uint8)
        image[r0:r1, c0:c1] = colour
        mask = np.zeros((height, width), np.uint8)
        k = 1 if stem == "wide" else 2
        mask[r0:r1, c0:c1] = k
        Image.fromarray(image).save(tmp_path / "images" / f"{stem}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{stem}.png")
        rows.append(f"{stem},{k},{c0},{r0},{c1},{r1}")
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    return PreparedDataset(read_dataset("folder", tmp_path), bundle)


def coloured(image: torch.Tensor) -> torch.Tensor:
    """Pixels of a normalised ``(3, S, S)`` image that are far from grey -> ``(S, S)`` bool."""
    rgb = image * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
    return (rgb.amax(0) - rgb.amin(0)) > 0.4


@pytest.mark.parametrize("index, stem", [(0, "tall"), (1, "wide")])
def test_mask_box_and_image_land_on_the_same_pixels(prepared, index, stem):
    height, width, _, _, _, (x0, y0, x1, y1) = IMAGES[stem]
    item = prepared[index]
    k = 1 if stem == "wide" else 2
    assert item["stem"] == stem and item["original_size"] == (height, width) and item["classes"] == [k]
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
    expected = torch.zeros(64, 64, dtype=torch.long)
    expected[y0:y1, x0:x1] = k
    assert torch.equal(item["mask"], expected)  # nearest: exact
    torch.testing.assert_close(item["boxes"], torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32))
    assert item["box_labels"].tolist() == [k] and item["difficult"].tolist() == [False]
    # The bicubic image blurs the edges by at most a pixel; the rectangle itself is where the mask is.
    colour = coloured(item["image"])
    rows, cols = colour.any(1).nonzero().flatten(), colour.any(0).nonzero().flatten()
    found = torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=torch.float32)
    assert (found - item["boxes"][0]).abs().max() <= 1
    inside = item["mask"] == k
    assert (colour & inside).sum() / (colour | inside).sum() > 0.9


def test_collate_batches_items_of_different_sizes(prepared):
    batch = next(iter(DataLoader(prepared, batch_size=2, collate_fn=collate)))
    assert batch["image"].shape == (2, 3, 64, 64)
    assert batch["stem"] == ["tall", "wide"] and batch["index"] == [0, 1]
    assert [m.shape for m in batch["mask"]] == [(64, 64), (64, 64)]
    assert [b.shape for b in batch["boxes"]] == [(1, 4), (1, 4)]
    assert batch["original_size"] == [(192, 96), (96, 192)] and batch["classes"] == [[2], [1]]
    assert batch["label"] == [None, None]
