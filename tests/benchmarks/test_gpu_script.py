"""benchmarks/gpu.py's parts that do not need CUDA: every measurement runs at tiny sizes on the CPU."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    # imported by its file name from the benchmarks folder: the DDP workers (spawned processes)
    # import it again the same way, through the sys.path they inherit
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield importlib.import_module("gpu")
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_peak_table(gpu) -> None:
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0  # the longer, more specific name wins
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu.peak_tflops("Some Future GPU") is None and gpu.peak_tflops("Some Future GPU", 500.0) == 500.0


def test_trunk_flops_are_counted(gpu) -> None:
    import torch

    sizes = gpu.Sizes(1, 64, "resnet18", 1, 1, 1)
    small = gpu.trunk_flops_per_image(gpu.paper_model(sizes, torch.device("cpu")), 64)
    big = gpu.Sizes(1, 128, "resnet18", 1, 1, 1)
    large = gpu.trunk_flops_per_image(gpu.paper_model(big, torch.device("cpu")), 128)
    assert small > 1e7 and large == pytest.approx(4 * small, rel=0.01)  # convolutions scale with the pixels


def test_the_whole_script_on_cpu(gpu, tmp_path) -> None:
    import torch

    out = tmp_path / "gpu.json"
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA device"):
            gpu.main(["--device", "cuda", "--out", str(out)])
    assert gpu.main(["--device", "cpu", "--smoke", "--no-compile", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["trunk_gflops_per_image_forward"] > 0
    assert set(r["train_steps"]) == {"release fp32", "medklip fp32", "medklip bf16"}
    assert r["train_speedup_vs_release"]["release fp32"] == 1.0
    assert all(v["images_per_s"] > 0 for v in r["train_steps"].values())
    assert r["zero_shot_images_per_s_fp32"]["images_per_s"] > 0 and r["zero_shot_images_per_s_bf16"]["images_per_s"] > 0
    assert r["ddp_two_processes_one_device"]["backend"] == "gloo" and r["ddp_two_processes_one_device"]["processes"] == 2
    assert r["trunk_share_of_bf16_peak"] is None  # no GPU, no peak
