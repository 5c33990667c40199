"""The reference metrics against cases worked out by hand.

PR-AUC is the trapezoidal area under sklearn's precision-recall points, which include the
point (recall 0, precision 1); it is not sklearn's step-wise average precision.
"""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from probe.metrics import compute_metrics, per_label_ap, pr_auc

# 4 videos x 2 labels, used by several tests below.
Y = [[1, 0], [0, 1], [1, 1], [1, 0]]
S = [[0.9, 0.5], [0.3, 0.8], [0.6, 0.4], [0.2, 0.7]]


def test_pr_auc_is_trapezoidal_not_average_precision():
    # Ranked: .8(neg) .4(pos) .35(pos) .1(neg). (recall, precision) points, high threshold last:
    # (1, 1/2) at .1, (1, 2/3) at .35, (1/2, 1/2) at .4, (0, 0) at .8, then (0, 1).
    # Trapezoids: 1->1/2: (2/3 + 1/2)/2 * 1/2 = 7/24; 1/2->0: (1/2 + 0)/2 * 1/2 = 3/24 => 5/12.
    y, s = [0, 1, 1, 0], [0.1, 0.4, 0.35, 0.8]
    assert pr_auc(y, s) == pytest.approx(5 / 12)
    # Step-wise AP would be 1/2 * 1/2 + 1/2 * 2/3 = 7/12: the reference's number differs.
    assert average_precision_score(y, s) == pytest.approx(7 / 12)


def test_per_label_ap_by_hand():
    # Label 0: y 1,0,1,1 scores .9,.3,.6,.2. Points (r, p): (1, 3/4) (2/3, 2/3) (2/3, 1)
    # (1/3, 1) (0, 1). Area: (3/4 + 2/3)/2 * 1/3 = 17/72, then 1/3 + 1/3 => 65/72.
    # Label 1: y 0,1,1,0 scores .5,.8,.4,.7. Points: (1, 1/2) (1/2, 1/3) (1/2, 1/2) (1/2, 1)
    # (0, 1). Area: (1/2 + 1/3)/2 * 1/2 = 5/24, then 1/2 => 17/24.
    assert per_label_ap(Y, S) == pytest.approx([65 / 72, 17 / 24])


def test_aggregates_by_hand():
    m = compute_metrics(Y, S)
    # mAP: (65/72 + 51/72) / 2 = 29/36.
    assert m["map"] == pytest.approx(29 / 36)
    # wAP: supports 3 and 2 => (3 * 65/72 + 2 * 17/24) / 5 = 297/360.
    assert m["wap"] == pytest.approx(297 / 360)
    # sAP: videos 1-3 rank their positives first (AP 1); video 4 (y 1,0; s .2,.7) has points
    # (1, 1/2) (0, 0) (0, 1): area 1/4. Mean (1 + 1 + 1 + 1/4) / 4 = 13/16.
    assert m["sap"] == pytest.approx(13 / 16)
    # uAP over the 8 pairs, ranked .9+ .8+ .7- .6+ .5- .4+ .3- .2+ (5 positives). Points:
    # (1, 5/8) (.8, 4/7) (.8, 2/3) (.6, .6) (.6, 3/4) (.4, 2/3) (.4, 1) (.2, 1) (0, 1).
    uap = (5 / 8 + 4 / 7) / 2 * 0.2 + (2 / 3 + 0.6) / 2 * 0.2 + (3 / 4 + 2 / 3) / 2 * 0.2 + 0.4
    assert m["uap"] == pytest.approx(uap)
    assert m["uap"] == pytest.approx(67 / 560 + 19 / 150 + 17 / 120 + 2 / 5)


def test_label_without_positives_counts_as_zero_in_map_not_in_wap():
    # Label 0 is ranked perfectly (AP 1); label 1 has no positive (undefined => 0 in mAP, weight
    # 0 in wAP). Video 2 has no positive either: it counts as 0 in sAP.
    y, s = [[1, 0], [0, 0]], [[0.9, 0.1], [0.2, 0.3]]
    assert math.isnan(per_label_ap(y, s)[1])
    m = compute_metrics(y, s)
    assert m["map"] == pytest.approx(0.5)
    assert m["wap"] == pytest.approx(1.0)
    assert m["sap"] == pytest.approx(0.5)
    assert m["uap"] == pytest.approx(1.0)


def test_perfect_and_inverted_rankings():
    y = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert compute_metrics(y, y * 0.8 + 0.1) == pytest.approx(
        {"uap": 1.0, "map": 1.0, "wap": 1.0, "sap": 1.0}
    )
    # Inverted, one positive among three: points (1, 1/3) (0, 0) (0, 0) (0, 1) => 1/6.
    assert pr_auc([1, 0, 0], [0.1, 0.5, 0.9]) == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    "y, s, message",
    [
        ([1, 0], [0.5, 0.5], "2-D"),
        ([[1, 0]], [[0.5, 0.5, 0.5]], "shape"),
        ([[1, 2]], [[0.5, 0.5]], "only 0 and 1"),
        ([[1, 0]], [[0.5, np.nan]], "NaN"),
    ],
)
def test_bad_inputs_name_the_problem(y, s, message):
    with pytest.raises(ValueError, match=message):
        compute_metrics(y, s)


def test_chance_levels_by_hand():
    from probe.metrics import chance_metrics

    # 4 videos x 3 labels; positives per label 2, 1, 0 (3 of 12 pairs)
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]])
    chance = chance_metrics(y)
    assert chance["uap"] == pytest.approx(3 / 12)
    assert chance["map"] == pytest.approx((0.5 + 0.25 + 0) / 3)
    assert chance["wap"] == pytest.approx((0.5 * 2 + 0.25 * 1) / 3)  # weights = supports 2, 1
    assert chance["sap"] == pytest.approx((1 / 3 + 2 / 3 + 0 + 0) / 4)
    # a random ranking's μAP lands near its chance level
    rng = np.random.default_rng(0)
    y = (rng.random((4000, 5)) < 0.3).astype(int)
    from probe.metrics import micro_ap

    assert micro_ap(y, rng.random(y.shape)) == pytest.approx(chance_metrics(y)["uap"], abs=0.01)
