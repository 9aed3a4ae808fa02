"""The export cache: a folder per model, graph kind and exporter, so stale exports are never reused."""

from importlib import metadata
from pathlib import Path

import pytest

from segbench import artifacts
from segbench.artifacts import ExportCache, exporter_fingerprint
from segbench.suite import ModelSpec


@pytest.fixture(autouse=True)
def fresh_fingerprint():
    exporter_fingerprint.cache_clear()
    yield
    exporter_fingerprint.cache_clear()


def test_folder_depends_on_model_args_graph_kind_and_exporter(tmp_path: Path, monkeypatch) -> None:
    cache = ExportCache(tmp_path)
    unet = ModelSpec("unet", ("--weights", "none"))
    first = cache.folder(unet, fused=True)
    assert first == cache.folder(ModelSpec("unet", ("--weights", "none")), fused=True)
    assert first.parent == tmp_path and first.name.startswith("unet-")
    assert cache.folder(unet, fused=False).name == first.name + "-unfused"
    assert cache.folder(ModelSpec("unet", ("--weights", "none", "--opset", "18")), fused=True) != first

    monkeypatch.setattr(artifacts, "exporter_fingerprint", lambda: "another exporter")
    assert cache.folder(unet, fused=True) != first


def test_fingerprint_follows_tool_versions(monkeypatch) -> None:
    before = exporter_fingerprint()
    assert before == exporter_fingerprint() and len(before) == 64
    exporter_fingerprint.cache_clear()
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "99.0" if name == "onnxslim" else real_version(name))
    assert exporter_fingerprint() != before
