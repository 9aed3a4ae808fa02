"""The share of a call outside the network: timed in alternating blocks, shown only where it is told apart from 0."""

from __future__ import annotations

import re

import numpy as np
import pytest

from segbench.measure.timing import MIN_ROUNDS, outside_share, time_alternating
from segbench.report.markdown import outside_notes, outside_text


class Clock:
    """A fake perf_counter_ns that the fake calls move on: each call takes its own number of ms."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def spend(self, ms: float) -> None:
        self.now += int(ms * 1e6)


def test_blocks_alternate_and_each_blocks_cold_first_call_is_dropped() -> None:
    clock, order = Clock(), []

    def side(name: str, first_ms: float, ms: float):
        def call() -> None:
            # the first call after the other side ran is slow (cold caches), the rest are not
            order.append(name)
            clock.spend(first_ms if len(order) == 1 or order[-2] != name else ms)

        return call

    timed = time_alternating(
        side("e2e", 30, 10), side("net", 20, 6), iterations=4, min_seconds=0.5, block_seconds=0.1, clock=clock
    )
    # blocks of 0.1 s: e2e 30 ms + 10 ms x 7 = 100 ms -> 8 calls, 7 kept; net 20 + 6 x 14 = 104 ms -> 15, 14 kept
    assert timed.first_ms[0] == [10.0] * 7 and timed.second_ms[0] == [6.0] * 14
    assert timed.rounds == 3  # until 0.5 s are spent (each round is about 0.2 s)
    assert order[:9] == ["e2e"] * 8 + ["net"]


def test_a_call_longer_than_a_block_is_a_block_of_one_and_kept() -> None:
    clock = Clock()
    timed = time_alternating(
        lambda: clock.spend(700), lambda: clock.spend(650), iterations=3, block_seconds=0.25, clock=clock
    )
    assert timed.first_ms == [[700.0]] * 3 and timed.second_ms == [[650.0]] * 3


def test_the_share_and_whether_it_is_told_apart_from_zero() -> None:
    rng = np.random.default_rng(1)
    e2e = [list(10 + rng.normal(0, 0.2, 20)) for _ in range(8)]
    network = [list(6 + rng.normal(0, 0.2, 20)) for _ in range(8)]
    clear = outside_share(e2e, network)
    assert clear["share"] == pytest.approx(0.4, abs=0.02) and clear["low"] > 0.35 and clear["resolved"]
    assert clear["rounds"] == 8
    # the network alone as long as the whole call, within a wide spread: not told apart from zero
    noisy = outside_share(
        [list(10 + rng.normal(0, 3, 3)) for _ in range(6)], [list(10 + rng.normal(0, 3, 3)) for _ in range(6)]
    )
    assert noisy["low"] < 0 < noisy["high"] and not noisy["resolved"]
    with pytest.raises(ValueError, match="both sides of every round"):
        outside_share([[1.0]], [])


def test_a_clear_share_over_too_few_rounds_is_not_told_apart_from_zero() -> None:
    """A bootstrap over one to four rounds gives no real interval: one round is a single point above zero."""
    e2e, network = [[10.0, 10.2, 9.9]] * 8, [[6.0, 6.1, 5.9]] * 8
    for rounds in range(1, MIN_ROUNDS):
        few = outside_share(e2e[:rounds], network[:rounds])
        assert few["low"] > 0.35 and few["rounds"] == rounds and not few["resolved"]
    enough = outside_share(e2e[:MIN_ROUNDS], network[:MIN_ROUNDS])
    assert enough["low"] > 0.35 and enough["resolved"]
    assert MIN_ROUNDS >= 5


def test_too_few_rounds_are_worded_as_not_measured_apart_from_zero() -> None:
    few = {"share": 0.4, "low": 0.38, "high": 0.42, "rounds": 3, "resolved": False}
    old = {**few, "resolved": True}  # recorded before MIN_ROUNDS: the report applies it too
    assert outside_text(_case(few)) == outside_text(_case(old)) == "≈0 %"
    notes = outside_notes([_case(few), _case({**few, "rounds": 1})])
    assert notes[0] == (
        "- m ort-cpu fp32 fused at 1x8x8: outside network ≈0 %, not measured apart from zero: the whole call "
        "(p50 10.0 ms) and the bare network (p50 6.00 ms) were timed over only 3 rounds of alternating blocks, "
        f"fewer than the {MIN_ROUNDS} an interval needs; raise the suite's iterations or min_seconds for a share."
    )
    assert "over only 1 round of alternating blocks" in notes[1]


def _case(outside: dict | None, share: float | None = None) -> dict:
    case = {"label": "m", "pipeline": "ort-cpu fp32 fused", "batch": 1, "height": 8, "width": 8,
            "network": {"alternated_e2e_p50_ms": 10.0, "p50_ms": 6.0}, "timing": {"e2e": {"p50": 10.0}}}  # fmt: skip
    if outside is not None:
        case["outside_network"] = outside
    if share is not None:
        case["outside_network_share"] = share
    return case


def test_the_report_never_shows_a_negative_share() -> None:
    resolved = {"share": 0.125, "low": 0.1, "high": 0.15, "rounds": 9, "resolved": True}
    within = {"share": -0.03, "low": -0.07, "high": 0.01, "rounds": 9, "resolved": False}
    below = {"share": -0.08, "low": -0.1, "high": -0.05, "rounds": 9, "resolved": False}
    assert outside_text(_case(resolved)) == "12.5 %"
    assert outside_text(_case(within)) == outside_text(_case(below)) == "≈0 %"
    assert outside_text(_case(None, share=-0.03)) == "≈0 %"  # a run recorded before the blocks: no negative either
    assert outside_text(_case(None, share=0.2)) == "20.0 %"
    notes = outside_notes([_case(resolved), _case(within), _case(below)])
    assert len(notes) == 2
    assert notes[0].startswith("- m ort-cpu fp32 fused at 1x8x8: outside network ≈0 %: the whole call (p50 10.0 ms)")
    assert "half its width is 4.0 points): the steps around the network cost less than that spread." in notes[0]
    assert "the bare --no-fuse graph (p50 6.00 ms) ran slower than the whole pipeline (p50 10.0 ms)" in notes[1]
    assert not any(re.search(r"-\d", note) for note in notes)  # no negative figure, in the notes either


def test_a_load_change_between_the_two_timings_is_said() -> None:
    case = _case({"share": 0.4, "low": 0.3, "high": 0.5, "rounds": 5, "resolved": True})
    case["network"]["alternated_e2e_p50_ms"] = 15.0
    (note,) = outside_notes([case])
    assert "the whole call's p50 was 15.0 ms (10.0 ms in the table)" in note
