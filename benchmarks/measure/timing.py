"""The timing loop: warm-up, then timed calls until a count and a minimum time (within a budget), with stages.

A call is anything that turns the case's input batch into labels and returns the
stage times (ms) it recorded, as `Segmenter.timings` does. The loop times the whole
call itself with perf_counter_ns; what the stages do not cover is kept as "other"
(input checks, Python, allocation), so the stages of every sample add up to its
end-to-end time exactly.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from segrt.timing import LatencyStats

MIN_SAMPLES = 3  # a time budget never leaves fewer samples than this

# The stages a case can report, in the order a frame goes through them, and what each one is.
STAGES = {
    "pre": "host pre-processing (resize, normalize, layout)",
    "h2d": "copy host to device",
    "compute": "the graph or model on the device",
    "infer": "ONNX Runtime's session run (on CPU the graph; on a GPU also its copies)",
    "backend-host": "TensorRT: the backend's host time around its device stages (pinned copies, enqueue, sync)",
    "d2h": "copy device to host",
    "post": "host post-processing (upsample logits, argmax)",
    "other": "the rest of the call: input checks, batching, Python",
}


@dataclass
class Timed:
    """Raw samples of one case: end-to-end ms per call and each stage's ms per call."""

    e2e_ms: list[float]
    stages_ms: dict[str, list[float]]
    frames_per_call: int
    seconds: float = 0.0  # wall time of the timed loop
    warmup: int = 0

    def stats(self) -> LatencyStats:
        return LatencyStats.from_samples(self.e2e_ms, frames_per_sample=self.frames_per_call)

    def as_dict(self) -> dict[str, Any]:
        stages = {
            name: {"mean": float(np.mean(values)), "p50": float(np.median(values)), "samples_ms": values}
            for name, values in self.stages_ms.items()
        }
        return {
            "e2e": self.stats().as_dict(),
            "per_frame_p50_ms": self.stats().p50 / self.frames_per_call,
            "frames_per_call": self.frames_per_call,
            "warmup": self.warmup,
            "timed_seconds": self.seconds,
            "e2e_samples_ms": self.e2e_ms,
            "stages": stages,
        }


@dataclass
class Window:
    """perf_counter_ns marks around the timed loop, for the resource samplers to cut their records."""

    start_ns: int = 0
    end_ns: int = 0
    frames: int = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """The garbage collector paused after one collection (as `timeit` does), so a collection of earlier garbage
    does not land in one sample."""
    gc.collect()
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass(frozen=True)
class Enough:
    """When a timing loop has enough samples: `iterations` and `min_seconds` both met, or the `seconds` budget
    spent once MIN_SAMPLES are in."""

    iterations: int
    min_seconds: float | None = None
    seconds: float | None = None

    def __call__(self, count: int, elapsed_ns: int) -> bool:
        if count >= self.iterations and elapsed_ns >= int((self.min_seconds or 0) * 1e9):
            return True
        return bool(self.seconds) and count >= MIN_SAMPLES and elapsed_ns >= int(self.seconds * 1e9)


def time_calls(
    call: Callable[[], Mapping[str, float]],
    *,
    frames_per_call: int,
    warmup: int,
    iterations: int,
    min_seconds: float | None = None,
    seconds: float | None = None,
    window: Window | None = None,
    on_sample: Callable[[int], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Timed:
    """Run `call` `warmup` times untimed, then timed until both `iterations` calls and `min_seconds` are done.

    Both, because a fixed count gives a fast model a fraction of a second of samples
    (its p99 is then its largest sample) and a slow model a count that is enough.
    `seconds` is the budget that ends the loop earlier (never below MIN_SAMPLES).
    The garbage collector is paused while timing (as `timeit` does) so a collection
    of earlier garbage does not land in one sample.
    """
    for _ in range(warmup):
        call()
    e2e: list[float] = []
    per_call: list[Mapping[str, float]] = []
    enough = Enough(iterations, min_seconds, seconds)
    with gc_paused():
        start = clock()
        while not enough(len(e2e), clock() - start):
            before = clock()
            stages = call()
            e2e.append((clock() - before) / 1e6)
            per_call.append(dict(stages))
            if on_sample:
                on_sample(len(e2e))
        end = clock()
    if window is not None:
        window.start_ns, window.end_ns, window.frames = start, end, len(e2e) * frames_per_call
    return Timed(
        e2e_ms=e2e,
        stages_ms=split_stages(e2e, per_call),
        frames_per_call=frames_per_call,
        seconds=(end - start) / 1e9,
        warmup=warmup,
    )


DEVICE_STAGES = ("h2d", "compute", "d2h")


def split_stages(e2e_ms: list[float], per_call: list[Mapping[str, float]]) -> dict[str, list[float]]:
    """Per-stage sample lists in STAGES order, plus "other" = end-to-end minus the stages, per sample.

    The TensorRT backend reports its host-timed "infer" around the CUDA-event stages
    h2d, compute and d2h; that "infer" is split so nothing is counted twice.
    """
    per_call = [_split_nested_infer(s) for s in per_call]
    names = [n for n in STAGES if n != "other" and any(n in s for s in per_call)]
    names += sorted({n for s in per_call for n in s} - set(STAGES))  # a backend's own extra stages
    stages = {name: [float(s.get(name, 0.0)) for s in per_call] for name in names}
    stages["other"] = [total - sum(float(v) for v in s.values()) for total, s in zip(e2e_ms, per_call, strict=True)]
    return stages


def _split_nested_infer(stages: Mapping[str, float]) -> Mapping[str, float]:
    if "infer" not in stages or not any(name in stages for name in DEVICE_STAGES):
        return stages
    split = {name: value for name, value in stages.items() if name != "infer"}
    split["backend-host"] = stages["infer"] - sum(stages.get(name, 0.0) for name in DEVICE_STAGES)
    return split


BLOCK_SECONDS = 0.25  # how long each side of an alternation runs before the other takes over
# Fewer rounds than this resample into an interval too coarse to mean anything (one round: a single point),
# so a share over fewer is never called told apart from zero.
MIN_ROUNDS = 5


@dataclass
class Alternated:
    """Samples (ms) of two calls timed in alternating blocks: round r is one block of each, back to back."""

    first_ms: list[list[float]]
    second_ms: list[list[float]]

    @property
    def rounds(self) -> int:
        return len(self.first_ms)

    def flat(self, which: int) -> list[float]:
        return [value for block in (self.first_ms, self.second_ms)[which] for value in block]


def time_alternating(
    first: Callable[[], object],
    second: Callable[[], object],
    *,
    iterations: int,
    min_seconds: float | None = None,
    seconds: float | None = None,
    block_seconds: float = BLOCK_SECONDS,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> Alternated:
    """`first` for a block of `block_seconds`, then `second` for one, and again, until both counts and time are met.

    Two loops run one after the other see whatever else the machine did at two different
    times; blocks a quarter of a second long, alternating, see the same load, so a ratio of
    the two (the share of a call spent outside the network) is measured under one load.
    Whole blocks, not single calls in turn, because each side's first call after the other
    ran finds the caches cold: that first call is not kept when a block holds more than one.
    """
    rounds: list[tuple[list[float], list[float]]] = []
    enough, block_ns = Enough(iterations, min_seconds, seconds), int(block_seconds * 1e9)
    with gc_paused():
        start = clock()
        while not enough(min((sum(len(r[side]) for r in rounds) for side in (0, 1)), default=0), clock() - start):
            rounds.append((_block(first, block_ns, clock), _block(second, block_ns, clock)))
    return Alternated([r[0] for r in rounds], [r[1] for r in rounds])


def _block(call: Callable[[], object], block_ns: int, clock: Callable[[], int]) -> list[float]:
    samples: list[float] = []
    began = clock()
    while not samples or clock() - began < block_ns:
        before = clock()
        call()
        samples.append((clock() - before) / 1e6)
    return samples[1:] if len(samples) > 1 else samples


def outside_share(e2e_ms: list[list[float]], network_ms: list[list[float]], *, resamples: int = 2000) -> dict[str, Any]:
    """1 - network p50 / e2e p50, with its 95 % bootstrap interval: rounds (a block of each) resampled together.

    The interval says whether the share is told apart from zero: where it is not, the steps
    around the network cost less than the spread of the whole call's time. Under MIN_ROUNDS
    rounds it is not: a bootstrap over one to four rounds gives no real interval.
    """
    if len(e2e_ms) != len(network_ms) or not e2e_ms or not all(e2e_ms) or not all(network_ms):
        raise ValueError(f"{len(e2e_ms)} e2e and {len(network_ms)} network rounds: give both sides of every round")
    e2e_rounds = [np.asarray(block, float) for block in e2e_ms]
    network_rounds = [np.asarray(block, float) for block in network_ms]
    share = 1.0 - float(np.median(np.concatenate(network_rounds)) / np.median(np.concatenate(e2e_rounds)))
    picks = np.random.default_rng(0).integers(0, len(e2e_rounds), size=(resamples, len(e2e_rounds)))
    shares = [
        1.0
        - float(np.median(np.concatenate([network_rounds[i] for i in pick])))
        / float(np.median(np.concatenate([e2e_rounds[i] for i in pick])))
        for pick in picks
    ]
    low, high = (float(v) for v in np.percentile(shares, [2.5, 97.5]))
    rounds = len(e2e_rounds)
    return {"share": share, "low": low, "high": high, "rounds": rounds, "resolved": low > 0.0 and rounds >= MIN_ROUNDS}


def time_frames(
    call: Callable[[int], Mapping[str, float]],
    frames: int,
    *,
    warmup: int,
    window: Window | None = None,
    on_sample: Callable[[int], None] | None = None,
) -> Timed:
    """`call(i)` for frame i = 0 .. frames-1 in order, one timed sample each, after `warmup` untimed calls on frame 0.

    A clip is measured frame by frame in its own order (flicker compares consecutive frames),
    so the count is the clip's, not a time budget's.
    """
    for _ in range(warmup):
        call(0)
    order = iter(range(frames))
    timed = time_calls(
        lambda: call(next(order)),
        frames_per_call=1,
        warmup=0,
        iterations=frames,
        window=window,
        on_sample=on_sample,
    )
    return replace(timed, warmup=warmup)  # the warm-up calls ran here, not in time_calls: recorded all the same
