"""Safety by construction: what the code may load, import and run, checked over the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from segrt.errors import SegError
from segrt.meta import read_verified_bytes, sidecar_path, write_sidecar

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for folder in ("export", "runtime", "benchmarks") for p in (ROOT / folder).rglob("*.py"))


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call of `name` (a bare name or an attribute) in the project's own modules."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    found.append((path.relative_to(ROOT), node))
    return found


def test_sources_were_found():
    assert len(SOURCES) > 20 and any(p.name == "segmenter.py" for p in SOURCES)


@pytest.mark.parametrize("name", ["eval", "exec", "compile", "__import__"])
def test_no_builtin_runs_code_from_data(name):
    """The builtins, not methods of the same name (nn.Module.eval, re.compile)."""
    assert [f"{path}:{call.lineno}" for path, call in _calls(name) if isinstance(call.func, ast.Name)] == []


@pytest.mark.parametrize("name", ["load", "loads"])
def test_nothing_is_unpickled(name):
    unpicklers = {"pickle", "marshal", "dill", "cloudpickle", "joblib", "shelve"}
    offenders = [
        f"{path}:{call.lineno}"
        for path, call in _calls(name)
        if isinstance(call.func, ast.Attribute) and getattr(call.func.value, "id", "") in unpicklers
    ]
    assert offenders == []


def test_every_torch_load_uses_weights_only():
    calls = _calls("load")
    torch_loads = [
        (p, c) for p, c in calls if isinstance(c.func, ast.Attribute) and getattr(c.func.value, "id", "") == "torch"
    ]
    assert torch_loads, "the checkpoint loader was not found"
    for path, call in torch_loads:
        flags = {k.arg: k.value for k in call.keywords}
        assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, (
            f"{path}:{call.lineno}"
        )


def test_modules_are_imported_by_name_only_where_the_user_names_them():
    places = sorted({str(path) for path, _ in _calls("import_module")})
    # models/user.py: the `package.module:factory` given on the command line; errors.py and tensorrt_library.py:
    # fixed dependency names (the TensorRT library is `tensorrt` or `tensorrt_rtx`, nothing else)
    assert places == ["export/models/user.py", "runtime/backends/tensorrt_library.py", "runtime/errors.py"], places


def test_engines_are_deserialized_only_from_sha_checked_bytes():
    """The bytes handed to TensorRT are `read_verified_bytes(...)`, directly or through one name that the
    same function binds to it and never rebinds."""
    calls = _calls("deserialize_cuda_engine")
    assert [str(p) for p, _ in calls] == ["runtime/backends/tensorrt.py"]
    ((path, call),) = calls
    argument = call.args[0]
    if isinstance(argument, ast.Name):
        tree = ast.parse((ROOT / path).read_text())
        function = next(
            f
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and f.lineno <= call.lineno <= (f.end_lineno or f.lineno)
        )
        bindings = [
            n.value
            for n in ast.walk(function)
            if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == argument.id for t in n.targets)
        ]
        assert len(bindings) == 1, f"{argument.id} is bound {len(bindings)} times"
        argument = bindings[0]
    assert isinstance(argument, ast.Call) and getattr(argument.func, "id", "") == "read_verified_bytes"


def test_verified_bytes_refuse_a_file_swapped_after_its_card(tmp_path):
    from segrt.meta import ModelCard

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"the engine that was built")
    card = ModelCard(model="m", classes=("a",), palette=((0, 0, 0),), mean=(0, 0, 0), std=(1, 1, 1), input_size=(8, 8))
    write_sidecar(engine, card)
    assert read_verified_bytes(engine) == b"the engine that was built"
    engine.write_bytes(b"another engine, same length!!")
    with pytest.raises(SegError, match=r"does not match model\.engine"):
        read_verified_bytes(engine)
    sidecar_path(engine).unlink()
    with pytest.raises(SegError, match="cannot read it with its card"):
        read_verified_bytes(engine)


def test_segexport_flags_stay_in_the_command_line_modules():
    """segexport's flags are parsed in its command line only (cli.py, and the argument groups it builds from
    options.py and graph_output_flags.py); everything else takes a typed request (issue: argv once travelled
    through ten modules). segbench's own command line may read --export-arg with segexport's parser."""
    readers = {str(p.relative_to(ROOT)) for p in SOURCES if "segexport.cli import" in p.read_text()}
    assert readers <= {"benchmarks/cli.py"}, readers
    export_argparse = sorted(
        str(p.relative_to(ROOT)) for p in SOURCES if p.parts[-2] == "export" and "argparse" in p.read_text()
    )
    assert export_argparse == ["export/cli.py", "export/graph_output_flags.py", "export/options.py"], export_argparse
