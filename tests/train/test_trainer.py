"""The trainer: exact resume, DDP with 2 CPU processes equals 1 process, config handling."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medklip import MedKLIP
from medklip.config_utils import load_config
from medklip.errors import ConfigError
from medklip.train.config import PretrainConfig, builtin_config
from medklip.train.distributed import CPUSyncBatchNorm, ShardedSampler
from medklip.train.schedule import lr_at
from medklip.train.trainer import pretrain

TINY = [
    "model.backbone=resnet18", "model.image_size=64", "model.d_model=64", "model.num_layers=2",
    "model.dim_feedforward=128", "data.world.train=48", "data.world.validation=8", "data.world.test=8",
    "data.world.image_size=64", "data.workers=0", "optim.batch_size=8", "optim.epochs=2", "optim.lr=0.0005",
    "optim.warmup_epochs=0.5", "run.log_every_steps=1", "run.save_every_steps=2",
]


def tiny(tmp_path: Path, name: str, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, None, TINY + [f"data.world_dir={tmp_path / 'world'}",
                                                      f"run.output={tmp_path / name}", *extra])


def logged_losses(run: Path) -> list[float]:
    with (run / "train_log.csv").open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]


def test_training_reduces_the_loss_and_writes_the_run_folder(tmp_path) -> None:
    result = pretrain(tiny(tmp_path, "run", "optim.epochs=3"), progress=False)
    assert result.losses[-1] < result.losses[0]
    out = result.output
    for name in ("config.yaml", "checkpoint.pt", "train_log.csv", "best/config.json", "last/model.safetensors"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").iterdir())
    saved = load_config(PretrainConfig, out / "config.yaml")
    assert saved.model.text_dim == 384  # the resolved config records the encoder's real width
    assert result.best_val_loss is not None


def test_resume_continues_exactly(tmp_path) -> None:
    straight = pretrain(tiny(tmp_path, "a", "run.max_steps=8"), progress=False)
    first = pretrain(tiny(tmp_path, "b", "run.max_steps=4"), progress=False)
    second = pretrain(tiny(tmp_path, "b", "run.max_steps=8"), resume=tmp_path / "b", progress=False)
    assert first.steps == 4 and second.steps == 8  # epoch boundary (6 steps) crossed after resuming
    assert straight.losses[:4] == pytest.approx(first.losses, abs=1e-6)
    assert straight.losses[4:] == pytest.approx(second.losses, abs=1e-5)


def test_the_demo_profile_trains_the_same_twice_and_saves_with_the_model(tmp_path) -> None:
    """``medklip demo``'s profile (its local trunk, span query init, reported entities, the world's
    description variants drawn per step; tiny sizes): same config and seed -> the same losses to
    the bit (the README's "same command, same numbers"), and the saved model rebuilds that trunk."""
    sizes = [item for item in TINY if not item.startswith("model.backbone")]

    def run(name: str):
        cfg = load_config(PretrainConfig, builtin_config("demo"), sizes + [
            f"data.world_dir={tmp_path / 'world'}", f"run.output={tmp_path / name}", "run.max_steps=4"])
        assert (cfg.model.backbone, cfg.model.query_init, cfg.text.description_variants) == ("local", "span", True)
        return pretrain(cfg, progress=False)

    runs = [run(name) for name in ("a", "b")]
    assert runs[0].losses == runs[1].losses and len(runs[0].losses) == 4
    model = MedKLIP.from_pretrained(runs[0].output / "last")
    assert model.config.backbone == "local" and type(model.image_encoder.backbone).__name__ == "LocalTrunk"
    assert model.config.query_init == "span" and "covid-19" in model.descriptions


def test_resume_after_a_crash_never_duplicates_log_rows(tmp_path) -> None:
    """A run killed after it logged steps 5-6 but saved only step 4 resumes from step 4: the log
    keeps each step once."""
    import shutil

    pretrain(tiny(tmp_path, "c", "run.max_steps=4"), progress=False)
    shutil.copy(tmp_path / "c" / "checkpoint.pt", tmp_path / "step4.pt")
    pretrain(tiny(tmp_path, "c", "run.max_steps=6"), resume=tmp_path / "c", progress=False)  # logs 5, 6
    shutil.copy(tmp_path / "step4.pt", tmp_path / "c" / "checkpoint.pt")  # the crash: last save at 4
    pretrain(tiny(tmp_path, "c", "run.max_steps=6"), resume=tmp_path / "c", progress=False)
    with (tmp_path / "c" / "train_log.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["loss"]]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_missing_images_are_listed_and_left_out(tmp_path) -> None:
    cfg = tiny(tmp_path, "m", "run.max_steps=2")
    pretrain(cfg, progress=False)  # writes the world
    world = tmp_path / "world"
    first = sorted((world / "images" / "train").glob("*.png"))[0]
    first.unlink()
    result = pretrain(tiny(tmp_path, "m2", "run.max_steps=2"), progress=False)
    listed = (tmp_path / "m2" / "manifest_errors.jsonl").read_text()
    assert result.rows_left_out == 1 and first.name in listed and "image not found" in listed


def run_one_and_two_processes(tmp_path: Path, steps: int, *settings: str) -> tuple[Path, Path]:
    """The same run (dropout 0 unless ``settings`` say otherwise) in 1 process and with torchrun in
    2 gloo processes on loopback."""
    common = [arg for item in (*TINY, "model.dropout=0.0", f"run.max_steps={steps}", *settings)
              for arg in ("--set", item)] + ["-q"]
    world = ["--set", f"data.world_dir={tmp_path / 'world'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    name = "-".join([str(steps), *(item.replace("=", "_") for item in settings)])
    one, two = tmp_path / f"one-{name}", tmp_path / f"two-{name}"
    single = [sys.executable, "-m", "medklip", "pretrain", *common, *world, "--set", f"run.output={one}"]
    subprocess.run(single, check=True, env=env, capture_output=True)
    multi = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
             "--master_port=29531", "-m", "medklip", "pretrain", *common, *world, "--set", f"run.output={two}"]
    res = subprocess.run(multi, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return one, two


def assert_same_first_step(one: Path, two: Path) -> None:
    """After one step: the weights within 5e-6 and the gradients the optimiser applied (AdamW's
    first moment, 0.1 x the gradient) within 1e-4 of their norm, tensor by tensor."""
    from safetensors.torch import load_file

    a, b = (load_file(str(run / "last" / "model.safetensors")) for run in (one, two))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point()) < 5e-6
    ma, mb = (torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["optimizer"]["state"]
              for run in (one, two))
    assert ma.keys() == mb.keys() and len(ma) > 80
    for k in ma:
        grad_a, grad_b = ma[k]["exp_avg"], mb[k]["exp_avg"]
        assert float((grad_a - grad_b).norm()) <= 1e-4 * float(grad_a.norm()) + 1e-12, k


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path) -> None:
    """torchrun with 2 gloo processes = 1 process with the same global batch: after the first step,
    with dropout drawn per sample (``run.dropout_per_sample``), the gradients the optimiser applied
    and the weights agree to float rounding; over 4 steps without dropout (each a different global
    batch) the logged losses agree. (After more steps the weights drift apart by more than
    rounding although the gradients agree: AdamW's update m / sqrt(v) amplifies rounding where a
    gradient changes sign between steps; measured: 0.12% of the weights differ by > 1e-5 after
    step 2.) Checked to fail with the gradients averaged instead of summed over the processes (the
    loss not scaled by the world size: the first step's gradients are half), and with dropout on
    but drawn from each process's stream. (A third pair, one step without dropout, was dropped in
    the eleventh session: it caught nothing these two miss, for 2 of the test's 6 launches.)"""
    assert_same_first_step(*run_one_and_two_processes(tmp_path, 1, "model.dropout=0.1", "run.dropout_per_sample=true"))

    one, two = run_one_and_two_processes(tmp_path, 4)
    losses_one, losses_two = logged_losses(one), logged_losses(two)
    assert len(losses_one) == len(losses_two) == 4
    assert losses_two == pytest.approx(losses_one, rel=1e-5)


def test_sampler_shards_the_same_global_order() -> None:
    one = list(ShardedSampler(20, 4, seed=1))
    r0 = list(ShardedSampler(20, 4, rank=0, world_size=2, seed=1))
    r1 = list(ShardedSampler(20, 4, rank=1, world_size=2, seed=1))
    assert sorted(one) == list(range(20))
    for b in range(5):
        assert one[4 * b:4 * b + 4] == r0[2 * b:2 * b + 2] + r1[2 * b:2 * b + 2]
    s = ShardedSampler(20, 4, seed=1)
    s.set_epoch(0, start_batch=3)
    assert list(s) == one[12:] and len(s) == 8
    with pytest.raises(ValueError):
        ShardedSampler(20, 5, world_size=2)


def test_cpu_sync_batchnorm_without_a_group_is_batchnorm() -> None:
    bn, ref = CPUSyncBatchNorm(3), torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(bn(x), ref(x))


def test_schedule_warmup_then_cosine() -> None:
    assert lr_at(0, 100, 10, 1e-4, 1e-5, 1e-6) == pytest.approx(1e-5)
    assert lr_at(10, 100, 10, 1e-4, 1e-5, 1e-6) == pytest.approx(1e-4)
    assert lr_at(55, 100, 10, 1e-4, 1e-5, 1e-6) == pytest.approx((1e-4 + 1e-6) / 2)
    assert lr_at(100, 100, 10, 1e-4, 1e-5, 1e-6) == pytest.approx(1e-6)


def test_config_files_and_overrides(tmp_path) -> None:
    cfg = load_config(PretrainConfig, builtin_config("paper"), ["optim.lr=3e-4", "model.backbone=resnet18"])
    assert cfg.optim.lr == 3e-4 and cfg.model.backbone == "resnet18" and cfg.optim.epochs == 60
    assert cfg.text.encoder == "emilyalsentzer/Bio_ClinicalBERT"
    assert isinstance(cfg.optim.lr, float) and cfg.optim.warmup_epochs == 5.0
    with pytest.raises(ConfigError, match="optim.lr must be a number"):
        load_config(PretrainConfig, None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(PretrainConfig, None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(PretrainConfig, None, ["optim.lr"])
    with pytest.raises(ConfigError, match="backbone"):
        load_config(PretrainConfig, None, ["model.backbone=vgg"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(PretrainConfig, bad)


def test_description_variants_train_resume_and_travel_with_the_model(tmp_path) -> None:
    """The world's aspect descriptions: one drawn per entity and step (exactly resumable), the first
    saved as the query, covid-19's (all of them) saved with the model and used by zero-shot prediction."""
    from medklip.knowledge import read_description_variants, resolve_descriptions
    from medklip.models import MedKLIP
    from medklip.zeroshot.predict import Predictor

    extra = ("text.knowledge=synthetic-world", "text.description_variants=true", "model.feature_stride=8")
    straight = pretrain(tiny(tmp_path, "a", "run.max_steps=6", *extra), progress=False)
    first = pretrain(tiny(tmp_path, "b", "run.max_steps=3", *extra), progress=False)
    second = pretrain(tiny(tmp_path, "b", "run.max_steps=6", *extra), resume=tmp_path / "b", progress=False)
    assert straight.losses[3:] == pytest.approx(second.losses, abs=1e-5) and len(first.losses) == 3
    plain = pretrain(tiny(tmp_path, "c", "run.max_steps=6", "model.feature_stride=8"), progress=False)
    assert plain.losses != pytest.approx(straight.losses, abs=1e-4)  # the drawn descriptions change training
    variants = read_description_variants(resolve_descriptions("synthetic-world"))
    model = MedKLIP.from_pretrained(straight.last_model)
    assert model.config.feature_stride == 8 and model.config.patch_grid == (8, 8)
    assert model.entity_texts[model.query_index("effusion")] == variants["effusion"][0]
    assert model.descriptions == {"covid-19": variants["covid-19"]}  # all of them: queried as an ensemble
    predictor = Predictor(straight.last_model)
    assert predictor.knowledge.texts("covid-19") == variants["covid-19"]


def test_best_holds_the_lowest_validation_loss_or_the_final_model(tmp_path, monkeypatch) -> None:
    """``run.select_model``: ``validation-loss`` keeps the epoch whose validation loss is lowest
    (here the second of three), ``final`` the last step's model (the release's checkpoint_final)."""
    from safetensors.torch import load_file

    from medklip.train.trainer import Pretrainer

    def weights(folder: Path) -> dict[str, torch.Tensor]:
        return load_file(folder / "model.safetensors")

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    scripted = {"val": [0.5, 0.3, 0.4]}
    monkeypatch.setattr(Pretrainer, "validate", lambda self: scripted["val"][self.epoch])
    small = ("data.world.train=16", "optim.epochs=3")  # 2 steps per epoch
    runs = {sel: pretrain(tiny(tmp_path, sel, *small, f"run.select_model={sel}"), progress=False)
            for sel in ("validation-loss", "final")}
    two_epochs = pretrain(tiny(tmp_path, "two", *small, "run.max_steps=4"), progress=False)
    by_loss, final = runs["validation-loss"], runs["final"]
    assert by_loss.best_val_loss == final.best_val_loss == 0.3
    assert same(weights(by_loss.last_model), weights(final.last_model))  # the selection changes no training
    assert same(weights(by_loss.best_model), weights(two_epochs.last_model))  # the end of epoch 2
    assert not same(weights(by_loss.best_model), weights(by_loss.last_model))
    assert same(weights(final.best_model), weights(final.last_model))
    # a final-model run in a folder that an earlier run left a best/ in replaces it
    again = pretrain(tiny(tmp_path, "validation-loss", *small, "optim.lr=0.001", "run.select_model=final"),
                     progress=False)
    assert same(weights(again.best_model), weights(again.last_model))
    with pytest.raises(ConfigError, match="run.select_model"):
        tiny(tmp_path, "bad", "run.select_model=best")


def test_position_loss_weight_zero_trains_existence_only(tmp_path) -> None:
    run = pretrain(tiny(tmp_path, "p", "run.max_steps=2", "optim.position_loss_weight=0"), progress=False)
    with (run.output / "train_log.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["loss"]]
    assert all(float(r["loss"]) == pytest.approx(float(r["existence"]), rel=1e-5) for r in rows)
    assert any(float(r["position"]) > 0 for r in rows)  # still measured, not trained on


@pytest.mark.parametrize(("device", "setting", "bf16_ok", "expected"), [
    ("cpu", "auto", True, False), ("cpu", "bf16", True, False), ("cpu", "none", True, False),
    ("cuda", "auto", True, True), ("cuda", "bf16", True, True), ("cuda", "none", True, False),
    ("cuda", "auto", False, False), ("cuda", "bf16", False, False),
])
def test_the_amp_policy_table(device: str, setting: str, bf16_ok: bool, expected: bool, monkeypatch) -> None:
    """The one AMP policy: bf16 autocast only on a CUDA device that supports bf16 (the CPU stays
    fp32: bf16 is slower there on most machines), never with ``none``."""
    from medklip.train.engine import amp_enabled

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert amp_enabled(torch.device(device), setting) is expected
    with pytest.raises(ConfigError, match="amp must be one of"):
        amp_enabled(torch.device(device), "fp16")


def test_a_bf16_autocast_step_on_cpu_is_finite_and_close_to_fp32() -> None:
    """What a bf16 path would compute, checked on the CPU: the demo model's loss under bf16
    autocast is finite and within 5% of fp32's, and its gradients point the same way."""
    from medklip import MedKLIPConfig
    from medklip.models import MedKLIPCriterion

    torch.manual_seed(0)
    config = MedKLIPConfig(backbone="local", image_size=64, d_model=64, num_layers=1, dim_feedforward=64,
                           text_dim=32)
    model = MedKLIP(config, torch.randn(6, 32), torch.randn(5, 32))
    images, labels = torch.randn(4, 3, 64, 64), torch.randint(0, 2, (4, 6))
    index = torch.randint(0, 5, (4, 6, 8))
    losses, grads = [], []
    for bf16 in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = MedKLIPCriterion()(model(images), labels, index, model.position_embeddings).total
        loss.backward()
        losses.append(loss.float().item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert all(np.isfinite(v) for v in losses) and abs(losses[1] - losses[0]) < 0.05 * abs(losses[0])
    # 0.89 measured here; unrelated gradients would give about 0
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.7


def test_reported_entities_are_the_query_set(tmp_path) -> None:
    """``text.entities: reported``: the model's queries are the pre-training entities some training
    report mentions (present, absent or uncertain), in the knowledge base's order."""
    from medklip.data.manifest import read_manifest
    from medklip.knowledge import KnowledgeBase
    from medklip.reports import ReportFilter

    run = pretrain(tiny(tmp_path, "r", "run.max_steps=2", "text.entities=reported"), progress=False)
    model = MedKLIP.from_pretrained(run.last_model)
    rows, _ = read_manifest(tmp_path / "world" / "manifest.jsonl")
    rf = ReportFilter()
    said = {t.entity for r in rows if r.split == "train" for t in rf.extract(r.report or "")}
    names = [e.name for e in KnowledgeBase.default().pretraining_entities]
    assert model.entity_names == [n for n in names if n in said]
    assert 10 < len(model.entity_names) < 75
    with pytest.raises(ConfigError, match="text.entities must be one of all, reported"):
        tiny(tmp_path, "x", "text.entities=seen")


def test_the_optimiser_is_adamw_with_decay_on_weights_only() -> None:
    """One step of the trainer's optimiser (fused kernel) equals PyTorch's reference for-loop AdamW
    with weight decay on matrices / kernels and none on biases and normalisation weights (they agree
    exactly here; tolerance 1e-6). Controls: decay on every parameter, or on none, moves a parameter
    by 0.10 / 0.04 (weights scaled up so that lr * wd * w is large)."""
    from medklip.train.builders import build_optimizer

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 2))
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(50.0)
        return m

    cfg = load_config(PretrainConfig, builtin_config("demo-quick"), ["optim.lr=0.01", "optim.weight_decay=0.1"])
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))

    def one_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
        for _ in range(2):
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
        return [p.detach().clone() for p in model.parameters()]

    ours_model = net()
    ours_opt = build_optimizer(ours_model, cfg)
    assert ours_opt.defaults["fused"] is True
    ours = one_step(ours_model, ours_opt)

    def reference(decay_of) -> list[torch.Tensor]:
        model = net()
        groups = [{"params": [p], "weight_decay": decay_of(p)} for p in model.parameters()]
        return one_step(model, torch.optim.AdamW(groups, lr=0.01, foreach=False))

    expected = reference(lambda p: 0.1 if p.ndim > 1 else 0.0)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for wrong in (lambda p: 0.1, lambda p: 0.0):
        got = reference(wrong)
        assert max(float((a - b).abs().max()) for a, b in zip(ours, got)) > 1e-6
