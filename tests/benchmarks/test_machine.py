"""The run's record of its machine: other processes' CPU use, which inflates timings, is measured and reported."""

import os
import subprocess
import sys
import time

from segbench.machine import OtherLoad
from segbench.report import machine_line

BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"


def test_another_process_burning_a_core_is_counted_and_this_ones_own_work_is_not() -> None:
    load = OtherLoad()
    neighbour = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=1.5)])
    time.sleep(1.5)
    other = load.share()  # before wait(): the neighbour's CPU time is not this process's yet
    neighbour.wait()
    one_core = 1 / (os.cpu_count() or 1)
    assert other > 0.5 * one_core

    load = OtherLoad()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # this process's own work
        pass
    assert load.share() < 0.5 * one_core


def test_machine_line_reports_other_load_and_warns_when_busy() -> None:
    env = {"cpu": "AMD EPYC", "cores_usable": 2, "gpu": {}, "git": {"commit": "abcdef123456", "dirty": False}}
    assert machine_line(env) == "AMD EPYC, 2 cores usable; no GPU; commit abcdef1234"
    quiet = machine_line({**env, "other_processes_cpu": 0.02})
    assert quiet.endswith("other processes used 2 % of the CPU during the run")
    busy = machine_line({**env, "other_processes_cpu": 0.35})
    assert "other processes used 35 % of the CPU" in busy and "busy machine" in busy
