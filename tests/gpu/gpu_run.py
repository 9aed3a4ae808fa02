"""The one command for a lent GPU machine (tests/gpu/run.sh runs this): install what the machine lacks from the
carried wheels, run the GPU benchmark, tests/gpu and a segbench suite each within its time budget, and write one
results folder (JSON, Markdown, the log).

Standard library only, and nothing done before the GPU check: on a machine without an NVIDIA GPU it prints one
line and exits 0. Its parts that need no GPU (arguments, the wheel list, the results) are tested in
tests/gpu_tooling. Not yet run on a GPU.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
WHEEL_LIST = ROOT / "tests" / "gpu" / "wheels.txt"
WHEEL_DIR = ROOT / "build" / "gpu-wheels"
MIB = 1024 * 1024
TRAVEL_LIMIT = 64 * MIB  # what travels to a lent machine: the working tree and the carried folders together
TOTAL_SECONDS = 470  # the issue's 8 minutes, less a few seconds to write the results
INSTALL_SECONDS = 45
# The wheels are pure Python or abi3, so one download serves CPython 3.11 and 3.12 alike.
DOWNLOAD_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64")
NO_GPU = "tests/gpu/run.sh: no NVIDIA GPU here ({reason}); nothing run"
STAND_IN_NOTE = (
    "No TensorRT engine ran: segrt's runner ran with a stand-in engine (tests/gpu/stand_in_engine.py), "
    "not TensorRT. Its figures are the runner's CUDA half (pinned copies, stream, events, CUDA graph) around one "
    "device-to-device copy, not a network."
)


@dataclass(frozen=True)
class Part:
    """One timed step of the run: its name, its share of the time, what it shows."""

    name: str
    budget_s: int
    what: str


PARTS = (
    Part(
        "bench",
        150,
        "tests/gpu/bench_gpu.py: the PyTorch baseline on CUDA (FP32, FP16) beside the fused deploy module in a CUDA "
        "graph (FP32, FP16), labels compared, memory and NVML energy per frame; segrt's runner with a stand-in engine",
    ),
    Part("tests", 150, "pytest tests/gpu: each file skips, saying why, where its library or GPU is missing"),
    Part("segbench", 120, "segbench benchmarks/suites/gpu-lent.toml: PyTorch on CUDA beside ONNX Runtime on the CPU"),
)


# pytest exits 5 when it collected no test: on a GPU machine that means every file skipped itself (the reasons
# are in the results), which is what it reports, not a failure of the run.
OK_CODES = {"tests": (0, 5)}


def part_command(part: str, python: str, results: Path, scratch: Path) -> list[str]:
    """The command line of `part`, run from the repository root."""
    if part == "bench":
        return [python, "tests/gpu/bench_gpu.py", "--out", str(results / "bench.json")]
    if part == "tests":
        return [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/gpu",
                f"--junitxml={results / 'pytest.xml'}"]  # fmt: skip
    if part == "segbench":
        return [python, "-m", "segbench.cli", "benchmarks/suites/gpu-lent.toml",
                "--out", str(scratch / "segbench"), "--cache", str(scratch / "segbench-cache")]  # fmt: skip
    raise ValueError(f"no part named {part!r}")


# --- arguments ----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="tests/gpu/run.sh",
        description="On a machine with an NVIDIA GPU: install the carried wheels it lacks, run the GPU benchmark, "
        "tests/gpu and a segbench suite within a time budget, and write the results to one folder. Without a GPU: "
        "one line, exit 0.",
    )
    parser.add_argument("--out", type=Path, help="results folder (default: $OUT if set, else build/gpu-results/TIME)")
    parser.add_argument("--wheels", type=Path, default=WHEEL_DIR, help="the carried wheels (default build/gpu-wheels)")
    parser.add_argument("--wheel-list", type=Path, default=WHEEL_LIST, help=argparse.SUPPRESS)
    parser.add_argument("--python", default=sys.executable, help="the Python with torch that runs the parts")
    parser.add_argument(
        "--parts",
        default=",".join(p.name for p in PARTS),
        help=f"comma-separated, of {', '.join(p.name for p in PARTS)} (default all, in that order)",
    )
    parser.add_argument("--budget", type=float, default=TOTAL_SECONDS, help="seconds for the whole run (default 470)")
    parser.add_argument("--keep-scratch", action="store_true", help="keep the temporary folder (exports, site)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--plan", action="store_true", help="print what would run, with each part's time, and exit")
    modes.add_argument("--check-wheels", action="store_true", help="check the wheel folder against the list; exit")
    modes.add_argument("--download-command", action="store_true", help="print the command that fetches the wheels")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = sorted(set(names) - {p.name for p in PARTS})
    if unknown or not names:
        parser.error(f"--parts {args.parts!r}: name one or more of {', '.join(p.name for p in PARTS)}")
    if not INSTALL_SECONDS < args.budget <= 600:
        parser.error(f"--budget {args.budget:g}: between {INSTALL_SECONDS} and 600 seconds")
    args.parts = [p for p in PARTS if p.name in names]
    return args


def part_timeouts(parts: Sequence[Part], seconds: float) -> dict[str, float]:
    """Each part's time limit: its budget, scaled down where all of them would not fit in `seconds`."""
    scale = min(1.0, seconds / sum(p.budget_s for p in parts))
    return {p.name: round(p.budget_s * scale, 1) for p in parts}


def results_folder(out: Path | None, env: Mapping[str, str], now: datetime.datetime) -> Path:
    """--out, else $OUT (the lent machine's folder that comes back), else build/gpu-results/<UTC time>."""
    if out is not None:
        return out
    if env.get("OUT"):
        return Path(env["OUT"])
    return ROOT / "build" / "gpu-results" / now.strftime("%Y%m%d-%H%M%S")


# --- the wheels ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wheel:
    """One carried wheel: the distribution, its pinned version, the module that shows it is installed."""

    name: str
    version: str
    module: str
    why: str

    @property
    def key(self) -> tuple[str, str]:
        return normalized(self.name), self.version


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def read_wheel_list(path: Path) -> list[Wheel]:
    """tests/gpu/wheels.txt: `name==version  module  why` per line; ValueError naming a malformed line."""
    wheels = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s+([A-Za-z_][A-Za-z0-9_.]*)\s+(.+)", text)
        if not match:
            raise ValueError(f"{path}:{number}: expected `name==version  module  why`, got {text!r}")
        wheels.append(Wheel(*match.groups()))
    names = [w.key[0] for w in wheels]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a distribution is listed twice ({', '.join(sorted(names))})")
    return wheels


def wheel_file_key(filename: str) -> tuple[str, str]:
    """`pytest-9.2.0-py3-none-any.whl` -> ("pytest", "9.2.0")."""
    parts = filename[: -len(".whl")].split("-")
    return normalized(parts[0]), parts[1]


@dataclass
class WheelCheck:
    """The wheel folder against the list: the file of each listed wheel (or None), files not listed, bytes."""

    files: dict[str, Path | None]
    extra: list[str]
    total_bytes: int
    budget_bytes: int

    @property
    def missing(self) -> list[str]:
        return [name for name, path in self.files.items() if path is None]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and self.total_bytes <= self.budget_bytes


def check_wheels(wheels: Sequence[Wheel], folder: Path, budget_bytes: int) -> WheelCheck:
    present = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    by_key = {wheel_file_key(p.name): p for p in present}
    files = {f"{w.name}=={w.version}": by_key.get(w.key) for w in wheels}
    listed = {w.key for w in wheels}
    extra = [p.name for key, p in by_key.items() if key not in listed]
    return WheelCheck(files, extra, sum(p.stat().st_size for p in present), budget_bytes)


def tree_bytes(root: Path = ROOT) -> int | None:
    """Bytes of what travels without being carried: tracked and untracked-not-ignored files (None without git)."""
    try:
        listing = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = {name for name in listing.decode().split("\0") if name}
    return sum((root / name).stat().st_size for name in names if (root / name).is_file())


def describe_check(check: WheelCheck, folder: Path) -> str:
    lines = [f"{'wheel':<26} {'KiB':>8}  file"]
    for name, path in check.files.items():
        size = f"{path.stat().st_size / 1024:8.0f}" if path else f"{'-':>8}"
        lines.append(f"{name:<26} {size}  {path.name if path else 'MISSING'}")
    lines.extend(f"{'(not listed)':<26} {'':>8}  {name}" for name in check.extra)
    lines.append(
        f"{len(check.files) - len(check.missing)} of {len(check.files)} wheels in {folder}, "
        f"{check.total_bytes / MIB:.2f} MiB of the {check.budget_bytes / MIB:.1f} MiB the working tree leaves"
    )
    if not check.ok:
        lines.append(f"not ready: fetch them with `{download_command(list(check.files), folder)}`")
    return "\n".join(lines)


def download_command(requirements: Sequence[Wheel] | Sequence[str], folder: Path, python_version: str = "3.12") -> str:
    """The `pip download` that fetches the wheels here for the lent machine's Python (no network there)."""
    pins = [f"{w.name}=={w.version}" if isinstance(w, Wheel) else w for w in requirements]
    platforms = " ".join(f"--platform {p}" for p in DOWNLOAD_PLATFORMS)
    target = os.path.relpath(folder, ROOT) if folder.is_absolute() and folder.is_relative_to(ROOT) else str(folder)
    return (
        f"python3 -m pip download --no-deps --only-binary=:all: --python-version {python_version} "
        f"--implementation cp {platforms} -d {target} {' '.join(pins)}"
    )


def missing_modules(python: str, modules: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The modules `python` cannot find (asked of that interpreter, which may not be this one)."""
    script = (
        "import importlib.util, json, sys\n"
        "def found(m):\n"
        "    try:\n"
        "        return importlib.util.find_spec(m) is not None\n"
        "    except (ImportError, ValueError):\n"
        "        return False\n"
        "print(json.dumps([m for m in sys.argv[1:] if not found(m)]))\n"
    )
    done = subprocess.run([python, "-c", script, *modules], capture_output=True, text=True, env=dict(env), timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{python} could not be asked for its modules: {done.stderr.strip()[-300:]}")
    return list(json.loads(done.stdout))


def install_wheels(python: str, files: Sequence[Path], target: Path, timeout: float) -> None:
    """pip install the files into `target` without an index or dependencies (the machine has no network)."""
    command = [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--disable-pip-version-check", "--target", str(target), *map(str, files)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"pip install from the carried wheels failed: {done.stderr.strip()[-500:]}")


# --- the project on the path ------------------------------------------------------------------------------


def map_project(site: Path, root: Path = ROOT) -> dict[str, str]:
    """Put the project's import names on `site` as links to their folders ([tool.setuptools.package-dir]), with a
    dist-info naming its version, so `import segexport` works offline without pip, setuptools or a build."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    folders: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    mapped = {}
    for name, folder in folders.items():
        parent, _, leaf = name.rpartition(".")
        if parent:  # a subpackage must sit in its parent's folder, where the parent's link finds it
            if Path(folder) != Path(folders.get(parent, parent.replace(".", "/"))) / leaf:
                raise ValueError(f"pyproject.toml maps {name} to {folder}, outside {parent}'s folder: use pip install")
            continue
        link = site / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(root / folder, target_is_directory=True)
        mapped[name] = folder
    project = pyproject["project"]
    info = site / f"{normalized(project['name'])}-{project['version']}.dist-info"
    info.mkdir(exist_ok=True)
    metadata = f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    (info / "METADATA").write_text(metadata)
    return mapped


# --- the GPU ----------------------------------------------------------------------------------------------


def probe_gpu(nvidia_smi: str = "nvidia-smi") -> tuple[list[str], str]:
    """The GPUs `nvidia-smi -L` lists, or none and why (no driver tool, an error, an empty list)."""
    tool = shutil.which(nvidia_smi)
    if tool is None:
        return [], f"{nvidia_smi} is not on PATH"
    try:
        done = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return [], f"{nvidia_smi} -L failed: {exc}"
    gpus = [line.strip() for line in done.stdout.splitlines() if line.startswith("GPU ")]
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().splitlines()
        return [], f"{nvidia_smi} -L exited {done.returncode}: {said[0] if said else 'nothing said'}"
    return gpus, "" if gpus else f"{nvidia_smi} -L lists no GPU"


def gpu_facts() -> list[dict[str, str]]:
    """Name, driver, memory and compute capability of each GPU, as nvidia-smi reports them (best effort)."""
    fields = ("name", "driver_version", "memory.total", "compute_cap")
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split(", ") for line in done.stdout.strip().splitlines()] if done.returncode == 0 else []
    return [dict(zip(fields, row, strict=False)) for row in rows]


# --- running a part -------------------------------------------------------------------------------------------


def run_part(
    command: Sequence[str],
    timeout: float,
    log: TextIO,
    env: Mapping[str, str],
    cwd: Path,
    ok_codes: Sequence[int] = (0,),
) -> dict:
    """Run `command` in its own process group, its output into `log` and on screen; past `timeout`, end the group."""
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own group: a timeout ends it and all it started, nothing else
        )
    except OSError as exc:
        return {"status": "failed", "exit_code": None, "seconds": 0.0, "reason": f"could not start: {exc}"}
    copier = threading.Thread(target=_copy_lines, args=(process.stdout, log), daemon=True)
    copier.start()
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _end_group(process)
    copier.join(timeout=10)
    seconds = round(time.monotonic() - start, 1)
    if timed_out:
        return {"status": "timed out", "exit_code": process.returncode, "seconds": seconds,
                "reason": f"ended after its {timeout:g} s"}  # fmt: skip
    status = "ok" if process.returncode in ok_codes else "failed"
    return {"status": status, "exit_code": process.returncode, "seconds": seconds}


def _copy_lines(stream: TextIO, log: TextIO) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        sys.stdout.write(line)
        sys.stdout.flush()


def _end_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the part's process group, then SIGKILL if it is still there after five seconds."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# --- results --------------------------------------------------------------------------------------------------


def junit_summary(path: Path) -> dict[str, Any]:
    """pytest's JUnit XML in counts and one row per test (module-level skips included, with their reasons)."""
    if not path.is_file():
        return {"absent": f"{path.name} was not written"}
    tests = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = "::".join(v for v in (case.get("classname"), case.get("name")) if v)
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = _reason(found.get("message") or "", found.text or "")
                break
        tests.append({"test": name, "outcome": outcome, "message": message})
    counts = {key: sum(t["outcome"] == key for t in tests) for key in ("passed", "failed", "skipped")}
    return {**counts, "tests": tests}


def _reason(message: str, text: str) -> str:
    """A skip's or failure's reason; a module skipped as it was collected has it in a (path, line, reason) tuple."""
    if message == "collection skipped":
        try:
            _, _, reason = ast.literal_eval(text.strip())
            return str(reason).removeprefix("Skipped: ")
        except (ValueError, SyntaxError, TypeError):
            return text.strip()
    return message.strip() or text.strip()


def write_results(folder: Path, record: Mapping[str, Any]) -> list[Path]:
    """gpu-run.json (everything) and gpu-run.md (for a person) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    data, markdown = folder / "gpu-run.json", folder / "gpu-run.md"
    data.write_text(json.dumps(record, indent=1, default=str) + "\n")
    markdown.write_text(render_markdown(record))
    return [data, markdown]


def _ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"  # an H100 replays a small graph in a fraction of a ms


def _pct(value: Any) -> str:
    return f"{100 * value:.3f} %" if isinstance(value, (int, float)) else "-"


def _device(case: Mapping[str, Any], key: str, form: str) -> str:
    device = case.get("device") or {}
    value = device.get(key)
    return format(value, form) if isinstance(value, (int, float)) else "-"


def render_markdown(record: Mapping[str, Any]) -> str:
    """The run for a person: what ran, what it measured, what was skipped and why."""
    lines = [f"# GPU run, {record.get('when', '?')}", ""]
    for gpu in record.get("gpus") or []:
        lines.append(
            f"GPU: {gpu.get('name', '?')} (compute capability {gpu.get('compute_cap', '?')}), driver "
            f"{gpu.get('driver_version', '?')}, {gpu.get('memory.total', '?')}."
        )
    python = record.get("python") or {}
    lines += [f"Python {python.get('version', '?')} ({python.get('executable', '?')}).", ""]
    wheels = record.get("wheels") or {}
    if wheels:
        installed = ", ".join(wheels.get("installed") or []) or "none (the machine had them all)"
        lines.append(f"Installed from the carried wheels: {installed}.")
        if wheels.get("error"):
            lines.append(f"Wheel install problem: {wheels['error']}")
        lines.append("")
    lines += ["## Parts", "", "| part | status | seconds (limit) | exit code | what |", "|---|---|---|---|---|"]
    for part in record.get("parts") or []:
        status = part["status"] + (f": {part['reason']}" if part.get("reason") else "")
        lines.append(
            f"| {part['name']} | {status} | {part.get('seconds', '-')} ({part.get('limit_s', '-')}) | "
            f"{part.get('exit_code', '-')} | {part.get('what', '')} |"
        )
    lines += ["", *_tests_section(record.get("tests")), *_bench_section(record.get("bench"))]
    lines += _segbench_section(record.get("segbench"))
    return "\n".join(lines).rstrip() + "\n"


def _tests_section(tests: Mapping[str, Any] | None) -> list[str]:
    lines = ["## tests/gpu", ""]
    if not tests or "absent" in tests:
        return [*lines, f"No test results: {(tests or {}).get('absent', 'the tests did not run')}.", ""]
    lines.append(f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped.")
    rows = [t for t in tests["tests"] if t["outcome"] != "passed"]
    if rows:
        lines += ["", "| test | outcome | why |", "|---|---|---|"]
        lines += [
            f"| {t['test']} | {t['outcome']} | {t['message'].splitlines()[0] if t['message'] else ''} |" for t in rows
        ]
    return [*lines, ""]


def _bench_section(bench: Mapping[str, Any] | None) -> list[str]:
    lines = ["## The whole frame on the GPU (tests/gpu/bench_gpu.py)", ""]
    if not bench:
        return [*lines, "No benchmark results (see the parts table and the log).", ""]
    device = bench.get("device") or {}
    lines.append(
        f"torch {device.get('torch', '?')} (CUDA {device.get('cuda', '?')}, cuDNN {device.get('cudnn', '?')}); "
        f"TF32 convolutions {'on' if device.get('cudnn_allow_tf32') else 'off'} (PyTorch's default), "
        f"cuDNN benchmark {'on' if device.get('cudnn_benchmark') else 'off'}. Per frame: host numpy in to host "
        f"labels out, p50; on the GPU: the fused graph replayed with the frame already there and the labels left "
        f"there. Stages: p50 per call (one call is one batch). Agreement: pixels equal to the FP32 reference labels."
    )
    cases = [c for m in bench.get("models") or [] for s in m.get("shapes") or [] for c in s.get("cases") or []]
    absent = sorted({str((c.get("device") or {}).get("absent")) for c in cases} - {"None"})
    lines += [f"NVML figures absent: {reason}." for reason in absent]
    for model in bench.get("models") or []:
        for shape in model.get("shapes") or []:
            lines += [
                "",
                f"### {model['model']} (network input {'x'.join(map(str, model.get('input_size', [])))}), "
                f"{shape['shape']}",
                "",
                "| pipeline | precision | per frame ms | on the GPU ms | pre / h2d / compute / post / d2h ms | "
                "agreement | torch peak MiB | NVML device memory MiB | W | J / frame |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for case in shape.get("cases") or []:
                stages = case.get("stages_p50_ms") or {}
                split = " / ".join(_ms(stages.get(k)) for k in ("pre", "h2d", "compute", "post", "d2h"))
                lines.append(
                    f"| {case['pipeline']} | {case['precision']} | {_ms(case['per_frame_ms']['p50'])} | "
                    f"{_ms((case.get('on_device_ms') or {}).get('p50'))} | {split} | {_pct(case.get('agreement'))} | "
                    f"{_ms(case.get('torch_peak_mb'))} | {_device(case, 'memory_peak_mb', '.0f')} | "
                    f"{_device(case, 'power_mean_w', '.0f')} | {_device(case, 'energy_per_frame_j', '.4f')} |"
                )
    stand_in = bench.get("runner_stand_in")
    lines += ["", "## segrt's TensorRT runner with a stand-in engine", "", f"**{STAND_IN_NOTE}**", ""]
    if stand_in:
        lines += [
            f"The stand-in: {stand_in['what']}.",
            "",
            "| shape | CUDA graph | per frame ms | h2d | compute | d2h | backend-host | labels as expected |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for case in stand_in["cases"]:
            stages = case.get("stages_p50_ms") or {}
            lines.append(
                f"| {case['shape']} | {'yes' if case['cuda_graph'] else 'no'} | {_ms(case['per_frame_ms']['p50'])} | "
                + " | ".join(_ms(stages.get(k)) for k in ("h2d", "compute", "d2h", "backend-host"))
                + f" | {'yes' if case['labels_as_expected'] else 'NO'} |"
            )
    else:
        lines.append("The stand-in run did not finish (see the errors below and the log).")
    errors = bench.get("errors") or []
    if errors:
        lines += ["", "### Benchmark parts that failed", ""]
        lines += [f"- {e['part']}: {e['error']}" for e in errors]
    return [*lines, ""]


def _segbench_section(segbench: Mapping[str, Any] | None) -> list[str]:
    lines = ["## segbench benchmarks/suites/gpu-lent.toml", ""]
    if not segbench or not segbench.get("files"):
        return [*lines, "No segbench results (see the parts table and the log).", ""]
    return [*lines, f"Its report and results: {', '.join(segbench['files'])} (segbench's own format).", ""]


# --- the run --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, probe: Callable[[], tuple[list[str], str]] = probe_gpu) -> int:
    args = parse_args(argv)
    if args.download_command:
        print(download_command(read_wheel_list(args.wheel_list), args.wheels))
        return 0
    if args.check_wheels:
        size = tree_bytes()
        check = check_wheels(read_wheel_list(args.wheel_list), args.wheels, TRAVEL_LIMIT - (size or 0))
        print(describe_check(check, args.wheels))
        return 0 if check.ok else 1
    if args.plan:
        print(plan(args))
        return 0
    gpus, reason = probe()
    if not gpus:
        print(NO_GPU.format(reason=reason))
        return 0
    return run(args, gpus)


def plan(args: argparse.Namespace) -> str:
    timeouts = part_timeouts(args.parts, args.budget - INSTALL_SECONDS)
    folder = results_folder(args.out, os.environ, datetime.datetime.now(datetime.timezone.utc))
    lines = [
        f"results: {folder}",
        f"install: the carried wheels from {args.wheels} a machine lacks, {INSTALL_SECONDS} s",
    ]
    for part in args.parts:
        command = " ".join(part_command(part.name, Path(args.python).name, folder, Path("SCRATCH")))
        lines.append(f"{part.name}: at most {timeouts[part.name]:g} s: {command}")
    lines.append(f"in all at most {INSTALL_SECONDS + sum(timeouts.values()):g} s of {args.budget:g}")
    return "\n".join(lines)


def run(args: argparse.Namespace, gpus: list[str]) -> int:
    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    folder = results_folder(args.out, os.environ, now)
    if folder.exists() and any(folder.iterdir()):
        print(f"tests/gpu/run.sh: {folder} is not empty; name an empty or new folder with --out", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="segexport-gpu-run-"))
    record: dict[str, Any] = {
        "when": now.isoformat(timespec="seconds"),
        "gpus": gpu_facts() or [{"name": g} for g in gpus],
        "python": {"executable": args.python},
        "parts": [],
        "stand_in_note": STAND_IN_NOTE,
    }
    with open(folder / "gpu-run.log", "w") as log:

        def say(text: str) -> None:
            log.write(text + "\n")
            log.flush()
            print(text, flush=True)

        say(f"tests/gpu/run.sh: {', '.join(gpus)}; results in {folder}")
        env = prepare(args, scratch, record, say)
        timeouts = part_timeouts(args.parts, args.budget - (time.monotonic() - started))
        for part in args.parts:
            left = args.budget - (time.monotonic() - started)
            limit = min(timeouts[part.name], left)
            command = part_command(part.name, args.python, folder, scratch)
            entry: dict[str, Any] = {"name": part.name, "what": part.what, "limit_s": round(limit, 1),
                                     "command": " ".join(command)}  # fmt: skip
            if limit < 15:
                entry.update(status="skipped", reason="no time left", seconds=0)
            else:
                say(f"== {part.name} (at most {limit:.0f} s): {entry['command']}")
                entry.update(run_part(command, limit, log, env, ROOT, OK_CODES.get(part.name, (0,))))
            record["parts"].append(entry)
        say(f"tests/gpu/run.sh: done in {time.monotonic() - started:.0f} s")
    collect(folder, scratch, record)
    write_results(folder, record)
    if not args.keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"tests/gpu/run.sh: wrote {', '.join(sorted(p.name for p in folder.iterdir()))} in {folder}")
    return 0 if all(p["status"] == "ok" for p in record["parts"]) else 1


def prepare(args: argparse.Namespace, scratch: Path, record: dict[str, Any], say: Callable[[str], None]) -> dict:
    """Install the carried wheels whose modules the machine lacks and map the project; the parts' environment."""
    site = scratch / "site"
    site.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "SEGRT_TEST_MODELS": str(scratch / "models")}
    wheels: dict[str, Any] = {"folder": str(args.wheels), "installed": []}
    record["wheels"] = wheels
    try:
        version = subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout.strip()  # fmt: skip
        record["python"]["version"] = version
        listed = read_wheel_list(args.wheel_list)
        lacking = set(missing_modules(args.python, [w.module for w in listed], env))
        check = check_wheels(listed, args.wheels, TRAVEL_LIMIT)
        needed = [w for w in listed if w.module in lacking]
        files = [check.files[f"{w.name}=={w.version}"] for w in needed]
        not_carried = [w.name for w, f in zip(needed, files, strict=True) if f is None]
        if not_carried:
            wheels["error"] = f"lacking and not carried: {', '.join(not_carried)} (see tests/gpu/README.md)"
        carried = [f for f in files if f is not None]
        if carried:
            install_wheels(args.python, carried, site, timeout=INSTALL_SECONDS)
        wheels["installed"] = [w.name for w, f in zip(needed, files, strict=True) if f is not None]
        wheels["already_there"] = [w.name for w in listed if w.module not in lacking]
        record["project"] = map_project(site)
    except (OSError, ValueError, RuntimeError, subprocess.SubprocessError) as exc:
        wheels["error"] = f"{type(exc).__name__}: {exc}"
    say(f"install: {', '.join(wheels['installed']) or 'nothing'}{'; ' + wheels['error'] if 'error' in wheels else ''}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return env


def collect(folder: Path, scratch: Path, record: dict[str, Any]) -> None:
    """Read what the parts wrote into the record; copy segbench's report and results beside it."""
    record["tests"] = junit_summary(folder / "pytest.xml")
    bench = folder / "bench.json"
    record["bench"] = json.loads(bench.read_text()) if bench.is_file() else None
    copied = []
    for name in ("results.json", "report.md"):
        source = scratch / "segbench" / name
        if source.is_file():
            shutil.copyfile(source, folder / f"segbench-{name}")
            copied.append(f"segbench-{name}")
    record["segbench"] = {"files": copied}


if __name__ == "__main__":
    sys.exit(main())
