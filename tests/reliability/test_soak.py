"""Long runs: resident memory must not grow while one Segmenter serves thousands of mixed-size frames."""

from __future__ import annotations

import json

import pytest

from segbench.cases.soak import frame_sizes, main, soak


def test_soak_record_on_a_short_run(exported, tmp_path):
    """The soak runner itself, on 60 frames: every size served, RSS sampled, the record written."""
    out = tmp_path / "soak.json"
    assert main([str(exported("unet")), "--frames", "60", "--every", "20", "--warmup", "20", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [s["frame"] for s in record["samples"]] == [20, 40, 60]
    assert record["frames"] == 60 and record["backend"] == "ort-cpu" and record["distinct_sizes"] > 5
    assert record["rss_growth_after_warmup_pct"] < 5.0


def test_frame_sizes_mix_camera_and_odd_sizes_reproducibly():
    sizes = frame_sizes(2000, seed=3)
    assert sizes == frame_sizes(2000, seed=3) and len(set(sizes)) == 32
    assert (1080, 1920) in sizes and min(h for h, _ in sizes) < 100


@pytest.mark.soak
def test_ten_thousand_frames_grow_rss_by_less_than_five_percent(exported):
    """`pytest -m soak`: the long run (minutes); the committed record is benchmarks/results/cpu-2core/soak.json."""
    record = soak(str(exported("unet")), frames=10_000)
    assert record["rss_growth_after_warmup_pct"] < 5.0, record
