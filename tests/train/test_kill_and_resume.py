"""A real crash: ``medklip pretrain`` in a child process is sent SIGKILL mid-training (and once while
its checkpoint is being written); ``medklip pretrain --resume`` then finishes the run, and the
final weights, the optimiser state and every logged loss equal an uninterrupted run's, to the bit."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from medklip.config_utils import load_config
from medklip.train.config import PretrainConfig
from medklip.train.trainer import pretrain
from tests.train.test_trainer import TINY

STEPS = 24  # 4 epochs of 6 steps; a checkpoint every 2 steps


def settings(tmp_path: Path, run: Path) -> list[str]:
    """The run's settings, for the command and for the reference run in this process alike."""
    return [*TINY, "optim.epochs=4", f"data.world_dir={tmp_path / 'world'}", f"run.output={run}"]


def command(tmp_path: Path, run: Path, *extra: str) -> list[str]:
    sets = settings(tmp_path, run)
    return [sys.executable, "-m", "medklip", "pretrain", "-q", *[a for s in sets for a in ("--set", s)], *extra]


def logged(run: Path) -> list[tuple[int, float]]:
    with (run / "train_log.csv").open() as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f) if r["loss"]]


def last_step(run: Path) -> int:
    try:
        return max((s for s, _ in logged(run)), default=0)
    except (OSError, ValueError, KeyError):
        return 0


def kill_when(proc: subprocess.Popen, ready, timeout: float = 240.0) -> None:
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() - start < timeout
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)


def assert_same_optimiser(oa: dict, ob: dict) -> None:
    """Two optimiser state dicts equal to the bit (groups, and every tensor of every parameter)."""
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for k in oa["state"]:
        assert oa["state"][k].keys() == ob["state"][k].keys(), k
        for name, value in oa["state"][k].items():
            assert torch.equal(value, ob["state"][k][name]), (k, name)


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "last" / "model.safetensors")), load_file(str(b / "last" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ca, cb = checkpoint(a), checkpoint(b)
    assert ca["scheduler"] == cb["scheduler"] and ca["step"] == cb["step"] == STEPS
    assert_same_optimiser(ca["optimizer"], cb["optimizer"])
    assert logged(a) == logged(b) and [s for s, _ in logged(b)] == list(range(1, STEPS + 1))


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, Path]:
    """The uninterrupted run, in this process (:func:`settings`, as the commands; a command costs a
    process start, and the killed runs check the CLI)."""
    tmp = tmp_path_factory.mktemp("kill")
    run = tmp / "straight"
    pretrain(load_config(PretrainConfig, None, settings(tmp, run)), progress=False)
    return tmp, run


@pytest.mark.slow
def test_sigkill_while_training_then_resume_from_the_cli(straight) -> None:
    tmp, reference = straight
    run = tmp / "killed"
    proc = subprocess.Popen(command(tmp, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: last_step(run) >= 7)  # past the step-6 checkpoint, between two saves
    assert not (run / "last").exists() and last_step(run) < STEPS
    subprocess.run(command(tmp, run, "--resume", str(run)), check=True, capture_output=True, timeout=600)
    assert_same_run(reference, run)


@pytest.mark.slow
def test_sigkill_while_the_checkpoint_is_written_then_resume(straight) -> None:
    tmp, reference = straight
    run = tmp / "killed-in-save"

    def writing() -> bool:  # the atomic write's temporary file exists: the checkpoint is half written
        return last_step(run) >= 3 and any(n.startswith(".checkpoint.pt.") for n in os.listdir(run))

    proc = subprocess.Popen(command(tmp, run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, writing)
    assert [n for n in os.listdir(run) if n.startswith(".checkpoint.pt.")]  # the torn write is still there
    subprocess.run(command(tmp, run, "--resume", str(run)), check=True, capture_output=True, timeout=600)
    assert_same_run(reference, run)
    assert not [n for n in os.listdir(run) if n.startswith(".checkpoint.pt.")]  # the torn write is cleaned up


def test_the_comparison_sees_a_lost_optimiser_state(straight, tmp_path) -> None:
    """The negative control of the two tests above: a run resumed with its optimiser state reset
    is told apart from the uninterrupted one."""
    tmp, reference = straight
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    state = torch.load(copy / "checkpoint.pt", map_location="cpu", weights_only=False)
    first = next(iter(state["optimizer"]["state"].values()))
    first["exp_avg"].zero_()
    torch.save(state, copy / "checkpoint.pt")
    with pytest.raises(AssertionError):
        assert_same_run(reference, copy)
