"""Hand-computed MI / dynamics / AUC / aggregation values (independent of the golden data)."""

from __future__ import annotations

import math

import pytest
import torch

from captum_clip.mutual.information import (
    aggregate_curves,
    mutual_descriptor_mask,
    mutual_information,
    mutual_information_dynamics,
    order_by_score,
)

LOG24 = math.log(24.0)  # N=4, M=3, k=2: log N + log M + log k
LOG12 = math.log(12.0)  # k=1
LOG2 = math.log(2.0)


def _case():
    # Visual descriptors X (unsorted) with scores; textual descriptors Y (padded with -1).
    x = torch.tensor([[10, 20, 30, 40, -1], [7, 8, -1, -1, -1]])
    s = torch.tensor([[0.1, 0.9, 0.5, 0.5, float("nan")], [0.3, 0.2, float("nan"), float("nan"), float("nan")]])
    y = torch.tensor([[30, 99, 10], [7, -1, -1]])
    return x, s, y


def test_order_is_stable_descending():
    x, s, _ = _case()
    ids, _ = order_by_score(x, s)
    # 30 and 40 tie at 0.5 and keep their input order.
    assert ids.tolist() == [[20, 30, 40, 10, -1], [7, 8, -1, -1, -1]]


def test_mi_is_the_codes_plus_form():
    x, _, y = _case()
    expected = [[True, False, True, False, False], [True, False, False, False, False]]
    assert mutual_descriptor_mask(x, y).tolist() == expected
    mi = mutual_information(x, y)
    # log 4 + log 3 - log(1/2 + 1e-9); the paper's "-" form would give log 4 + log 3 - log 2 = log 6 instead.
    assert mi[0].item() == pytest.approx(LOG24 - 2e-9, abs=1e-12)
    assert mi[0].item() != pytest.approx(math.log(6.0), abs=1e-3)
    assert mi[1].item() == pytest.approx(LOG2 - 1e-9, abs=1e-12)  # N=2, M=1, k=1


def test_dynamics_and_auc_by_hand():
    x, s, y = _case()
    dyn = mutual_information_dynamics(x, y, s)
    # Removal order 20, 30, 40, 10: k = 2, 2, 1, 1, 0.
    expected0 = [LOG24, LOG24, LOG12, LOG12, 0.0]
    assert dyn.curves[0, :5].tolist() == pytest.approx(expected0, abs=1e-8)
    assert dyn.lengths.tolist() == [5, 3] and dyn.curves.shape == (2, 6) and torch.isnan(dyn.curves[0, 5])
    assert dyn.auc[0].item() == pytest.approx((2 * LOG24 + 2 * LOG12) / 5, abs=1e-8)
    # Second image: removal order 7, 8 -> k = 1, 0, 0; NaN padding after 3 points.
    assert dyn.curves[1, :3].tolist() == pytest.approx([LOG2, 0.0, 0.0], abs=1e-8)
    assert torch.isnan(dyn.curves[1, 3:]).all()
    assert dyn.auc[1].item() == pytest.approx(LOG2 / 3, abs=1e-8)
    # Removing a non-mutual descriptor first keeps MI; the ordering matters.
    reversed_scores = -torch.nan_to_num(s, nan=0.0)
    dyn_rev = mutual_information_dynamics(x, y, reversed_scores)  # order 10, 30, 40, 20
    assert dyn_rev.curves[0, :5].tolist() == pytest.approx([LOG24, LOG12, 0.0, 0.0, 0.0], abs=1e-8)


def test_aggregation_zero_pads_and_averages():
    x, s, y = _case()
    dyn = mutual_information_dynamics(x, y, s)
    curve, auc = aggregate_curves(dyn.curves, dtype=torch.float64)
    expected = [(LOG24 + LOG2) / 2, LOG24 / 2, LOG12 / 2, LOG12 / 2, 0.0]
    assert curve.tolist() == pytest.approx(expected, abs=1e-8)
    assert auc.item() == pytest.approx(sum(expected) / 5, abs=1e-8)
    curve32, auc32 = aggregate_curves(dyn.curves)
    assert curve32.dtype == torch.float32
    assert curve32.tolist() == pytest.approx(expected, abs=1e-6)
    assert auc32.item() == pytest.approx(sum(expected) / 5, abs=1e-6)


def test_paper_example():
    # Spec: N=15, M=50, mutual at ranks 1, 3, 6 -> 7.72, 7.31, 7.31, 6.62, 6.62, 6.62, 0, ... and AUC 2.64.
    x = torch.arange(100, 115)[None]
    y = torch.cat([torch.tensor([100, 102, 105]), torch.arange(500, 547)])[None]
    dyn = mutual_information_dynamics(x, y)
    assert [round(v, 2) for v in dyn.curves[0, :7].tolist()] == [7.72, 7.31, 7.31, 6.62, 6.62, 6.62, 0.0]
    assert round(dyn.auc[0].item(), 2) == 2.64
