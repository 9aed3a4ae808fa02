"""A pipeline at camera rate, on a simulated clock: which frames are dropped, late, and how long each waited."""

import pytest

from segbench.measure.camera import CameraRun, run_at_camera_rate


class SimulatedTime:
    """A clock that moves only when the pipeline works (`work`) or the loop sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def pipeline(self, *durations: float):
        """A call taking each of `durations` seconds in turn, then the last one forever."""
        times = list(durations)

        def call() -> None:
            self.now += times.pop(0) if len(times) > 1 else times[0]

        return call


def run(fps: float, seconds: float, *durations: float) -> dict:
    time = SimulatedTime()
    result = run_at_camera_rate(time.pipeline(*durations), fps, seconds, clock=time.clock, sleep=time.sleep)
    return result.as_dict()


def test_a_pipeline_faster_than_the_camera_takes_every_frame_on_time() -> None:
    result = run(10, 1.0, 0.03)
    assert (result["frames_offered"], result["frames_processed"], result["frames_dropped"]) == (10, 10, 0)
    assert result["frames_late"] == 0 and result["deadline_miss_share"] == 0
    assert result["latencies_ms"] == pytest.approx([30.0] * 10)
    assert result["processed_fps"] == pytest.approx(10.0)


def test_a_slow_pipeline_drops_the_frames_it_missed_and_takes_the_newest() -> None:
    # 250 ms per frame at 10 FPS: frames 0, 2 (arrived at 0.2 s), 5, 7, then 9, the last one.
    result = run(10, 1.0, 0.25)
    assert (result["frames_offered"], result["frames_processed"], result["frames_dropped"]) == (10, 5, 5)
    assert result["frames_late"] == 5 and result["deadline_miss_share"] == 1.0
    assert result["latencies_ms"] == pytest.approx([250.0, 300.0, 250.0, 300.0, 350.0])
    assert result["capture_to_labels_ms"]["max"] == pytest.approx(350.0)


def test_one_slow_frame_costs_the_frames_that_arrive_meanwhile() -> None:
    # 20 FPS (50 ms): the first frame takes 120 ms, the rest 10 ms. Frames 1 is dropped; frame 0 is late;
    # frame 2 (arrived at 100 ms) waits 20 ms for the pipeline, then every later frame is on time.
    result = run(20, 0.5, 0.12, 0.01)
    assert (result["frames_offered"], result["frames_processed"], result["frames_dropped"]) == (10, 9, 1)
    assert result["frames_late"] == 1
    assert result["deadline_miss_share"] == pytest.approx(0.2)
    assert result["latencies_ms"][:3] == pytest.approx([120.0, 30.0, 10.0])


def test_frame_count_follows_the_rate_and_duration() -> None:
    assert CameraRun(fps=30, seconds=10).offered == 300
    assert CameraRun(fps=30, seconds=0.1).offered == 3  # arrivals at 0, 33.3 and 66.7 ms
    assert CameraRun(fps=7, seconds=1).offered == 7


@pytest.mark.parametrize(("fps", "seconds"), [(0, 1), (-5, 1), (30, 0)])
def test_rate_and_duration_must_be_positive(fps: float, seconds: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        run_at_camera_rate(lambda: None, fps, seconds)
