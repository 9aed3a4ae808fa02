"""segrt never imports torch: a full inference and a segrun call leave it out of sys.modules."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_inference_and_segrun_never_import_torch_or_onnx(exported, photo_path, tmp_path):
    unfused, fused = str(exported("unet-unfused")), str(exported("unet"))
    script = textwrap.dedent(f"""
        import sys
        import segrt
        from segrt.cli import main
        seg = segrt.load({unfused!r})
        labels = seg(segrt.read_image({str(photo_path)!r}))
        assert labels.shape == (612, 640), labels.shape
        assert main([{fused!r}, {str(photo_path)!r}, "-o", {str(tmp_path / "out")!r}, "-q"]) == 0
        print("HEAVY", sorted(m for m in ("torch", "torchvision", "onnx", "tensorrt") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
    assert (tmp_path / "out" / "astronaut.png").is_file()
