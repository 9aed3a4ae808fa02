"""Prepare the type stubs mypy checks the TensorRT and CUDA code against (tools/stubs/, git-ignored).

TensorRT cannot be installed on CPU machines, but its API can still be checked:
- `tensorrt-stubs` (a real wheel with the 10.13 API) is downloaded without its
  dependencies (with them, pip tries to fetch TensorRT itself and fails), its
  `tensorrt/` and `tensorrt_bindings/` folders are copied here, and the five lines
  no type checker parses are patched: four methods with a parameter named `in`, and
  `add_scale_nd`, whose `channel_axis` has no default after parameters that do.
- cuda-python ships compiled modules without stubs; `cuda/bindings/runtime.pyi` is
  generated from the installed module's own signatures and docstrings (each call
  returns a tuple `(cudaError_t, outputs...)`), so mypy checks names, argument
  counts, enum members and how many values each call returns.
- `segrt` and `segexport` are installed through an import hook mypy cannot follow,
  so links to `runtime/` and `export/` sit beside the stubs and mypy runs with `-m`.

Run: `python tools/trt_stubs.py` (CI does), then
`MYPYPATH=tools/stubs mypy -m segexport.engine.build -m segrt.backends.tensorrt`.
"""

from __future__ import annotations

import argparse
import inspect
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "tools" / "stubs"
TENSORRT_STUBS = "tensorrt-stubs==10.13.0.35.1"  # the patch below is written for this release
PACKAGE_LINKS = {"segrt": "runtime", "segexport": "export"}

# (pattern, replacement, how many times it must match): the five unparseable lines.
PATCHES = (
    (re.compile(r"(def \w+\(self(?:: \w+)?, )in: "), r"\1in_: ", 4),
    (re.compile(r"(def add_scale_nd\(.*channel_axis: int)\)"), r"\1 = ...)", 1),
)


def download_tensorrt_stubs(scratch: Path) -> Path:
    """The tensorrt-stubs wheel, downloaded with pip and no dependencies."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    subprocess.run([*command, "--dest", str(scratch), TENSORRT_STUBS], check=True)
    wheels = sorted(scratch.glob("tensorrt_stubs-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one tensorrt_stubs wheel in {scratch}, found {[w.name for w in wheels]}")
    return wheels[0]


def patch_stub_text(text: str) -> str:
    """Rename the `in` parameters and give `channel_axis` a default; fail if the stubs changed shape."""
    for pattern, replacement, expected in PATCHES:
        text, count = pattern.subn(replacement, text)
        if count != expected:
            raise SystemExit(
                f"tensorrt-stubs patch {pattern.pattern!r} matched {count} times, expected {expected}; "
                f"the stubs changed: update PATCHES in tools/trt_stubs.py"
            )
    return text


def install_tensorrt_stubs(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.split("/")[0] in ("tensorrt", "tensorrt_bindings") and name.endswith(".pyi"):
                archive.extract(name, target)
    bindings = target / "tensorrt_bindings" / "tensorrt.pyi"
    bindings.write_text(patch_stub_text(bindings.read_text()))
    for package in ("tensorrt", "tensorrt_bindings"):
        (target / package / "py.typed").write_text("")


# --- cuda-python: a stub generated from the installed module ------------------------------------------

_RETURNS = re.compile(r"\nReturns\n-------\n(.*?)(?:\n\n[A-Z][\w ]+\n-{3,}\n|\Z)", re.S)
_SIMPLE_TYPES = {"int": "int", "float": "float", "bytes": "bytes", "str": "str", "bool": "bool"}


def _type_name(text: str, classes: set[str]) -> str:
    """A docstring type ("int", ":py:obj:`~.cudaGraph_t`", "list[int]") as a stub annotation."""
    name = text.strip().replace(":py:obj:`~.", "").replace("`", "").strip()
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    return name if name in classes else "Any"


def return_types(doc: str, classes: set[str]) -> list[str]:
    """The tuple a cuda-python call returns, read from its numpydoc Returns section."""
    match = _RETURNS.search(doc or "")
    if not match:
        return ["cudaError_t"]
    types = []
    for line in match.group(1).splitlines():
        if not line or line[0].isspace():
            continue
        types.append("cudaError_t" if line.strip() == "cudaError_t" else _type_name(line.partition(":")[2], classes))
    return types or ["cudaError_t"]


def _parameters(function: Any, classes: set[str]) -> str:
    parts = []
    for parameter in inspect.signature(function).parameters.values():
        annotation = parameter.annotation
        typed = annotation if isinstance(annotation, str) and annotation in classes else "Any"
        default = " = ..." if parameter.default is not inspect.Parameter.empty else ""
        parts.append(f"{parameter.name}: {typed}{default}")
    return ", ".join(parts)


def runtime_stub(module: ModuleType) -> str:
    """Stub text for `cuda.bindings.runtime` (or the older `cuda.cudart`) from its live objects."""
    names = sorted(n for n in dir(module) if not n.startswith("_"))
    # classes defined by cuda-python itself (the module also holds typing's Any and Optional)
    classes = {
        n for n in names if isinstance(getattr(module, n), type) and getattr(module, n).__module__.startswith("cuda")
    }
    lines = [
        f"# Generated by tools/trt_stubs.py from cuda-python's {module.__name__}; do not edit.",
        "from enum import IntEnum",
        "from typing import Any",
        "",
    ]
    for name in names:
        value = getattr(module, name)
        if name in classes and issubclass(value, int) and hasattr(value, "__members__"):
            lines.append(f"class {name}(IntEnum):")
            members = [f"    {member} = {int(item)}" for member, item in value.__members__.items()]
            lines.extend(members or ["    pass"])
        elif name in classes:
            lines.append(f"class {name}:")
            lines.append("    def __init__(self, *args: Any, **kwargs: Any) -> None: ...")
            lines.append("    def __int__(self) -> int: ...")
            attributes = set()
            for base in value.__mro__[:-1]:
                attributes.update(a for a in vars(base) if not a.startswith("_"))
            for attribute in sorted(attributes - {"getPtr"}):
                lines.append(f"    {attribute}: Any")
            lines.append("    def getPtr(self) -> int: ...")
        elif callable(value) and name.startswith("cuda"):
            try:
                params = _parameters(value, classes)
            except (TypeError, ValueError):
                params = "*args: Any, **kwargs: Any"
            returned = ", ".join(return_types(value.__doc__ or "", classes))
            lines.append(f"def {name}({params}) -> tuple[{returned}]: ...")
        elif isinstance(value, (int, float, str, bytes)) and not isinstance(value, bool):
            lines.append(f"{name}: {type(value).__name__}")
    return "\n".join(lines) + "\n"


def install_cuda_stub(target: Path) -> str:
    try:
        from cuda.bindings import runtime
    except ImportError:
        raise SystemExit("cuda-python is not installed; `pip install cuda-python` (it is in the [dev] extra)") from None
    package = target / "cuda" / "bindings"
    package.mkdir(parents=True)
    (package / "__init__.pyi").write_text("")
    (package / "runtime.pyi").write_text(runtime_stub(runtime))
    (package / "py.typed").write_text("")
    import cuda.bindings

    return str(getattr(cuda.bindings, "__version__", "unknown"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a tensorrt-stubs wheel already downloaded (skips pip)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trt-stubs-") as scratch:
        wheel = args.wheel or download_tensorrt_stubs(Path(scratch))
        staging = Path(scratch) / "stubs"
        staging.mkdir()
        install_tensorrt_stubs(wheel, staging)
        cuda_version = install_cuda_stub(staging)
        for package, folder in PACKAGE_LINKS.items():
            (staging / package).symlink_to(ROOT / folder, target_is_directory=True)
        (staging / "README").write_text(
            f"Generated by tools/trt_stubs.py from {wheel.name} and cuda-bindings {cuda_version}; git-ignored.\n"
        )
        shutil.rmtree(STUBS, ignore_errors=True)
        shutil.move(str(staging), STUBS)
    print(f"stubs ready in {STUBS.relative_to(ROOT)} ({wheel.name}, cuda-bindings {cuda_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
