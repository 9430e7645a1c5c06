"""tools/timing.py, the one timing discipline of every printed speed: rotation of the order, medians,
spread, and the verdict that refuses to state a ratio measured on a busy machine."""
import pytest

from tools.timing import BUSY_SPREAD, interleaved_rounds, rate, ratio_verdict, spread


def test_rounds_rotate_the_order_and_pass_the_round_index():
    calls = []
    seconds = interleaved_rounds({name: (lambda k, name=name: calls.append((name, k)) or 1.0) for name in 'abc'}, 4)
    assert calls == [('a', 0), ('b', 0), ('c', 0), ('b', 1), ('c', 1), ('a', 1), ('c', 2), ('a', 2), ('b', 2),
                     ('a', 3), ('b', 3), ('c', 3)]
    assert seconds == {name: [1.0] * 4 for name in 'abc'}


def test_rate_is_the_median_round_and_spread_its_range():
    seconds = [0.5, 0.5, 0.25, 1.0, 0.5]  # 2, 2, 4, 1, 2 items/s for one item
    assert rate(seconds, 8) == 16
    assert spread(seconds) == pytest.approx((4 - 1) / 2)


def test_verdict_states_a_ratio_only_from_steady_rounds():
    assert ratio_verdict(1.6612, [0.05, BUSY_SPREAD]) == '1.66x images/s (spread 15%)'
    busy = ratio_verdict(0.57, [0.05, 0.8])
    assert busy.startswith('machine busy: spread 80%') and 'not reliable' in busy and '0.57x' in busy
