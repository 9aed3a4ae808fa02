"""The statistics segbench reports, on samples whose answers are known: percentiles, FPS, stage sums, speed-ups."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segbench.measure.resources import parse_tegrastats
from segbench.measure.timing import MIN_SAMPLES, split_stages, time_calls, time_frames
from segbench.report.markdown import network_size_notes
from segbench.report.results import add_speedups
from segrt.timing import LatencyStats


def test_percentiles_of_one_to_a_hundred() -> None:
    stats = LatencyStats.from_samples(list(range(1, 101)))
    # numpy's linear interpolation: position (n - 1) * q between sorted samples
    assert (stats.p50, stats.p90, stats.p99) == pytest.approx((50.5, 90.1, 99.01))
    assert (stats.min, stats.max, stats.mean, stats.count) == (1, 100, 50.5, 100)
    assert stats.std == pytest.approx(np.std(np.arange(1, 101)))


def test_fps_counts_frames_of_a_batch() -> None:
    stats = LatencyStats.from_samples([200.0, 200.0, 200.0], frames_per_sample=4)
    assert stats.fps == pytest.approx(20.0)  # 4 frames every 0.2 s


def fake_clock(step_ns: int):
    """A clock that advances `step_ns` every time it is read."""
    ticks = itertools.count(0, step_ns)
    return lambda: next(ticks)


def test_fixed_count_times_every_call_after_warmup() -> None:
    calls = []

    def call() -> dict[str, float]:
        calls.append(1)
        return {"pre": 1.0, "infer": 2.0}

    timed = time_calls(call, frames_per_call=2, warmup=3, iterations=7, clock=fake_clock(5_000_000))
    assert len(calls) == 10
    assert len(timed.e2e_ms) == 7
    assert timed.e2e_ms == [5.0] * 7  # each sample reads the clock twice: 5 ms apart
    assert timed.stages_ms["other"] == pytest.approx([2.0] * 7)
    assert timed.stats().fps == pytest.approx(2 * 1000 / 5.0)


class CallClock:
    """A clock that moves only while the timed call runs: each call takes `call_ms`."""

    def __init__(self, call_ms: float) -> None:
        self.now_ns = 0
        self.call_ns = int(call_ms * 1e6)

    def clock(self) -> int:
        return self.now_ns

    def call(self) -> dict[str, float]:
        self.now_ns += self.call_ns
        return {}


def samples(call_ms: float, **limits: float) -> int:
    """How many timed calls of `call_ms` each the loop takes under `limits` (iterations, min_seconds, seconds)."""
    time = CallClock(call_ms)
    timed = time_calls(time.call, frames_per_call=1, warmup=0, clock=time.clock, **limits)  # type: ignore[arg-type]
    assert timed.e2e_ms == pytest.approx([call_ms] * len(timed.e2e_ms))
    return len(timed.e2e_ms)


def test_frames_are_timed_in_order_after_warmup_calls_on_frame_0_which_are_recorded() -> None:
    seen: list[int] = []
    timed = time_frames(lambda i: seen.append(i) or {}, 4, warmup=2)
    assert seen == [0, 0, 0, 1, 2, 3] and len(timed.e2e_ms) == 4
    assert timed.warmup == 2 and timed.as_dict()["warmup"] == 2


def test_time_budget_stops_early_but_keeps_a_minimum() -> None:
    assert samples(10, iterations=1000, seconds=0.05) == 5  # 5 calls of 10 ms spend the 50 ms
    assert samples(10, iterations=1000, seconds=1e-9) == MIN_SAMPLES
    assert samples(300, iterations=20, seconds=0.5) == MIN_SAMPLES  # 0.6 s after two: a third all the same


def test_a_fast_call_samples_until_the_minimum_time_and_a_slow_one_until_the_count() -> None:
    assert samples(10, iterations=20, min_seconds=1.0) == 100  # 20 calls take 0.2 s: on until 1 s
    assert samples(1400, iterations=20, min_seconds=1.0, seconds=60) == 20  # 28 s: the count decides
    assert samples(4000, iterations=20, min_seconds=1.0, seconds=60) == 15  # the budget ends it at 60 s
    assert samples(10, iterations=20) == 20  # no minimum time: the count alone


def test_stages_add_up_to_end_to_end() -> None:
    e2e = [10.0, 12.0, 11.0]
    per_call = [{"pre": 2.0, "infer": 6.0, "post": 1.0}, {"pre": 2.5, "infer": 7.0, "post": 1.5}, {"infer": 9.0}]
    stages = split_stages(e2e, per_call)
    assert list(stages) == ["pre", "infer", "post", "other"]
    assert stages["other"] == pytest.approx([1.0, 1.0, 2.0])
    assert stages["pre"][2] == 0.0  # a stage a call did not report counts as 0 for it
    totals = np.sum([stages[name] for name in stages], axis=0)
    assert totals == pytest.approx(e2e)


def test_tensorrt_infer_is_split_around_its_device_stages() -> None:
    # The TensorRT backend reports host-timed "infer" enclosing the CUDA-event stages.
    stages = split_stages([10.0], [{"infer": 8.0, "h2d": 1.0, "compute": 5.0, "d2h": 0.5}])
    assert "infer" not in stages
    assert stages["backend-host"] == pytest.approx([1.5])
    assert stages["other"] == pytest.approx([2.0])
    assert list(stages)[:3] == ["h2d", "compute", "backend-host"]


def _case(backend: str, p50: float, *, device: str = "cpu", batch: int = 1, status: str = "ok") -> dict:
    return {
        "id": f"{backend} {device} {batch}",
        "label": "m",
        "backend": backend,
        "device": device,
        "batch": batch,
        "height": 10,
        "width": 20,
        "status": status,
        "timing": {"e2e": {"p50": p50}},
    }


def test_speedups_use_the_baseline_of_the_same_shape_and_device() -> None:
    cases = [
        _case("pytorch-eager", 100.0),
        _case("pytorch-eager", 20.0, device="cuda"),
        _case("pytorch-eager", 300.0, batch=4),
        _case("ort-cpu", 25.0),
        _case("ort-cpu", 100.0, batch=4),
        _case("tensorrt", 4.0, device="cuda"),
        _case("ort-cuda", 5.0, device="cuda", batch=2),  # no baseline at batch 2
        _case("tensorrt", 1.0, status="skipped"),
    ]
    add_speedups(cases)
    assert cases[0]["speedup"]["p50"] == 1.0
    assert cases[3]["speedup"]["p50"] == pytest.approx(4.0)
    assert cases[4]["speedup"]["p50"] == pytest.approx(3.0)
    assert cases[5]["speedup"] == {"over": cases[1]["id"], "p50": pytest.approx(5.0)}
    assert "absent" in cases[6]["speedup"]
    assert "speedup" not in cases[7]


def test_speedups_are_over_the_no_grad_baseline_not_the_autograd_row() -> None:
    seed = {**_case("pytorch-eager", 120.0), "id": "pytorch-eager cpu autograd 1", "autograd": True}
    cases = [seed, _case("pytorch-eager", 100.0), _case("ort-cpu", 25.0)]  # the autograd row listed first
    add_speedups(cases)
    assert cases[2]["speedup"] == {"over": cases[1]["id"], "p50": pytest.approx(4.0)}
    assert cases[0]["speedup"]["p50"] == pytest.approx(100.0 / 120.0)  # the docs' snippet, slower than no_grad


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "RAM 2669/62841MB (lfb 4x4MB) CPU [0%@729] GR3D_FREQ 45%@[1300] VDD_GPU_SOC 4000mW/4000mW "
            "VDD_CPU_CV 800mW/800mW VIN_SYS_5V0 3000mW/3000mW VDD_IN 12345mW/12000mW",
            {"power_w": 12.345, "gpu_load": 45, "gpu_mhz": 1300},
        ),
        (
            "RAM 1500/3956MB CPU [5%@1479] EMC_FREQ 0% GR3D_FREQ 99%@921 POM_5V_IN 5123/4000 POM_5V_GPU 900/800",
            {"power_w": 5.123, "gpu_load": 99, "gpu_mhz": 921},
        ),
        ("RAM 1500/3956MB CPU [5%@1479]", {}),
    ],
)
def test_tegrastats_lines_of_orin_and_nano(line: str, expected: dict) -> None:
    assert parse_tegrastats(line) == expected


def test_a_note_says_when_a_models_pipelines_ran_their_networks_at_different_sizes() -> None:
    def case(pipeline: str, size: list[int], height: int = 612) -> dict:
        return {"label": "fcn", "batch": 1, "height": height, "width": 640, "pipeline": pipeline, "network_input": size}

    cases = [case("pytorch-eager cpu", [520, 543]), case("ort-cpu fp32 fused", [520, 520])]
    cases += [case("ort-cpu int8 fused", [520, 520]), case("pytorch-eager cpu", [520, 520], height=640)]
    cases += [case("ort-cpu fp32 fused", [520, 520], height=640)]  # a square image: the same size, no note
    assert network_size_notes(cases) == [
        "- fcn at 1x612x640, the networks ran at different sizes (520x543 (+4.4 % pixels): pytorch-eager cpu; "
        "520x520: ort-cpu fp32 fused, ort-cpu int8 fused); a speed-up between them includes that difference."
    ]
