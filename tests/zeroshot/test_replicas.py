"""Several model processes (``processes`` > 1) give what one process gives, image by image in
input order: probabilities, heatmaps, decoded sizes and displays, and each unreadable file's error
in its own place."""
from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from medklip.cli import main
from medklip.errors import MedKLIPError
from medklip.zeroshot.predict import Predictor
from medklip.zeroshot.replicas import ReplicaPool, threads_per_process
from tests.conftest import make_tiny_model
from tests.zeroshot.test_fast_paths import images  # noqa: F401 - the fixture

TOLERANCE = 1e-5
"""One thread against two: the same model rounds within ~3e-7 (measured); a misplaced image moves
the fixture model's probabilities by more than 100x this (checked below)."""


def _inputs(images: list, tmp_path: Path) -> list:  # noqa: F811
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    return [*images[:4], broken, *images[4:]]  # batches of 3: the error mid-batch, batches unequal


def _differences(one: list, two: list, names: list[str]) -> tuple[float, float]:
    probs = max(abs(a.probabilities[n] - b.probabilities[n]) for a, b in zip(one, two) if a.error is None for n in names)
    maps = max(float(np.abs(a.heatmaps[n] - b.heatmaps[n]).max()) for a, b in zip(one, two) if a.error is None
               for n in names)
    return probs, maps


def test_model_processes_give_the_single_process_predictions(images, minilm, tmp_path) -> None:  # noqa: F811
    model = make_tiny_model(minilm).eval()
    inputs = _inputs(images, tmp_path)
    names = [*list(model.entity_names)[:6], "covid-19"]  # an added query travels to the processes too
    one = Predictor(model, device="cpu", preprocess="release-cxr14").predict(inputs, names, batch_size=3,
                                                                             keep_display=True)
    predictor = Predictor(model, device="cpu", preprocess="release-cxr14", processes=2)
    try:
        two = predictor.predict(inputs, names, batch_size=3, keep_display=True)
        again = predictor.predict(inputs[:2], names, batch_size=1)  # the processes stay up between calls
        left = predictor.iter_predict(inputs[5:], names, batch_size=1)
        next(left)
        left.close()  # a consumer that stops early: its batches in flight must not reach the next run
        after = predictor.predict(inputs[:2], names, batch_size=1)
        abandoned = predictor.iter_predict(inputs[5:], names, batch_size=1)
        next(abandoned)  # left unread, not closed: the next run must not read its batches
        later = predictor.predict(inputs[:2], names, batch_size=1)
        with pytest.raises(MedKLIPError, match="superseded by a later one"):
            next(abandoned)
    finally:
        predictor.close()
    assert [r.image for r in two] == [str(p) for p in inputs]
    assert [(r.error is None, r.error_type) for r in two] == [(r.error is None, r.error_type) for r in one]
    assert two[4].error == one[4].error and "broken.png" in str(two[4].error) and two[4].probabilities == {}
    assert [r.size for r in two] == [r.size for r in one]
    assert all(np.array_equal(a.display, b.display) for a, b in zip(one, two) if a.error is None)
    probs, maps = _differences(one, two, names)
    assert probs <= TOLERANCE and maps <= TOLERANCE
    assert _differences(one[:2], again, names)[0] <= TOLERANCE
    assert [r.image for r in after] == [str(p) for p in inputs[:2]]
    assert _differences(one[:2], after, names)[0] <= TOLERANCE
    assert [r.image for r in later] == [str(p) for p in inputs[:2]]
    assert _differences(one[:2], later, names)[0] <= TOLERANCE
    # negative control: results one image out of place would be far outside the tolerance
    shifted = [r for r in two if r.error is None][1:]
    assert _differences([r for r in one if r.error is None][:-1], shifted, names)[0] > 100 * TOLERANCE


def test_cli_processes_flag(tiny_model_dir, images, capsys, caplog) -> None:  # noqa: F811
    def run(*flag: str) -> list[dict]:
        assert main(["predict", *map(str, images[:5]), "--model", str(tiny_model_dir), "--findings",
                     "effusion,pneumonia", "--format", "json", "--batch-size", "2", *flag]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    one = run("--workers", "0")
    with caplog.at_level(logging.INFO, logger="medklip.zeroshot.replicas"):
        two = run("--processes", "2")
    assert "2 model processes (torch, " in caplog.text  # the flag reached the Predictor
    assert [r["image"] for r in two] == [r["image"] for r in one]
    assert max(abs(a["probabilities"][n] - b["probabilities"][n]) for a, b in zip(one, two)
               for n in ("effusion", "pneumonia")) <= TOLERANCE


def test_threads_are_shared_equally_and_bad_counts_are_refused(minilm) -> None:
    assert threads_per_process(2, cores=2) == 1
    assert threads_per_process(2, cores=8) == 4
    assert threads_per_process(3, cores=8) == 2
    assert threads_per_process(4, cores=2) == 1  # never zero
    model = make_tiny_model(minilm).eval()
    with pytest.raises(MedKLIPError, match="processes must be at least 1, got 0"):
        Predictor(model, device="cpu", processes=0)
    with pytest.raises(MedKLIPError, match="at least 2 processes, got 1"):
        ReplicaPool(model, "torch", "fp32", 1)


def test_a_failing_batch_is_raised_and_a_dead_process_is_named(images, minilm) -> None:  # noqa: F811
    model = make_tiny_model(minilm).eval()
    preprocess = Predictor(model, device="cpu").preprocess
    good = Predictor(model, device="cpu").query_set(list(model.entity_names)[:3]).embeddings
    pool = ReplicaPool(model, "torch", "fp32", 2)
    try:
        with pytest.raises(ValueError, match="queries must be"):  # raised inside a process, raised here
            list(pool.run(images[:4], preprocess, torch.zeros(3, 5), 2, heatmaps=False))
        batches = list(pool.run(images[:4], preprocess, good, 2, heatmaps=True))  # the pool goes on
        assert [i.index for b, _, _ in batches for i in b.items] == [0, 1, 2, 3]
        assert [(p.shape, m.shape) for _, p, m in batches] == [((2, 75), (2, 75, 4, 4))] * 2  # all 75 rows run
        os.kill(pool._procs[1].pid, signal.SIGKILL)
        with pytest.raises(MedKLIPError, match=r"model process 1 ended unexpectedly \(exit code -9"):
            list(pool.run(images[:4], preprocess, good, 2, heatmaps=False))
    finally:
        pool.close()
    broken = ReplicaPool(model, "no-such-backend", "fp32", 2)  # fails inside the processes, not before
    try:
        with pytest.raises(MedKLIPError, match="could not build the no-such-backend backend: unknown backend"):
            list(broken.run(images[:2], preprocess, good, 2, heatmaps=False))
    finally:
        broken.close()
