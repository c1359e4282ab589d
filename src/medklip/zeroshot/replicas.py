"""Several model processes for CPU throughput: each decodes its own batches and runs the model on
its share of the cores.

On a CPU the release's loop (and one process with decoding workers) runs the model's batch-8
convolutions on two intra-op threads, which scale poorly, and decodes between batches or in a
worker that competes with those threads. Two processes of one thread each, each decoding and
predicting whole batches, keep both cores busy with single-threaded work: on a 2-core CPU, full-size
PNGs end to end at 1.79x the release's loop with ONNX Runtime (1.49x with PyTorch), against
1.33x (1.27x) for one process (``benchmarks/speed.py``; docs/speed_run_cpu.txt). Probabilities are
those of one thread (within 3e-7 of two threads').

The processes are forked from a ``forkserver`` that imported torch and medklip once and ran no
model (a fork of a process whose OpenMP threads already ran can hang; ``spawn`` where the platform
has no forkserver), all at once when the :class:`ReplicaPool` is made; they hold the model's
weights in shared memory and build their own backend (ONNX Runtime exports its graph in each, at
its first batch). Batch k goes to process k mod N and comes back from it, so results are in input
order and every process gets work from the first batches on.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
from collections import deque
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medklip.data.preprocess import Preprocess
from medklip.errors import MedKLIPError
from medklip.models import MedKLIP
from medklip.zeroshot.backends import OnnxBackend, TorchBackend, make_backend
from medklip.zeroshot.loading import Batch, load_batch

logger = logging.getLogger(__name__)

BatchResult = tuple[Batch, "np.ndarray | None", "np.ndarray | None"]
"""A decoded batch (tensors dropped) with its ``probs [B, Q]`` and ``heatmaps [B, Q, h, w]``
(None when no image of the batch could be read, or heatmaps were not asked for)."""

POLL_SECONDS = 1.0
"""How often a wait for a result checks that the process is still alive."""


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads_per_process(processes: int, cores: int | None = None) -> int:
    """Each of ``processes`` gets an equal share of the cores, at least one thread."""
    return max(1, (cores or available_cores()) // max(1, processes))


def require_cpu(device: torch.device) -> None:
    """Several model processes share the CPU's cores; on a GPU one process drives the device."""
    if device.type != "cpu":
        raise MedKLIPError(f"several model processes are for the CPU; on {device.type} use one (processes=1) "
                           "with decoding workers")


def model_outputs(backend: TorchBackend | OnnxBackend, batch: Batch, queries: torch.Tensor,
                  heatmaps: bool) -> BatchResult:
    """``batch`` with the backend's ``(probs, heatmaps)`` for its readable images (None, None when
    there are none)."""
    probs, maps = backend(batch.stack(), queries, heatmaps) if batch.good else (None, None)
    return batch, probs, maps


def predict_batch(backend: TorchBackend | OnnxBackend, paths: Sequence[str], start: int, preprocess: Preprocess,
                  queries: torch.Tensor, heatmaps: bool, keep_display: bool) -> BatchResult:
    """One batch: decode, run the model; the batch comes back without its tensors."""
    result = model_outputs(backend, load_batch(paths, start, preprocess, keep_display), queries, heatmaps)
    for item in result[0].items:
        item.tensor = None
    return result


def _serve(model: MedKLIP, backend_name: str, precision: str, threads: int, tasks: Any, results: Any) -> None:
    """A model process: build the backend, then answer ``(run, batch...)`` tasks until told to stop
    (``None``). An exception is sent back in the batch's place (the parent raises it)."""
    torch.set_num_threads(threads)
    try:
        backend: TorchBackend | OnnxBackend | None = make_backend(backend_name, model, precision, threads=threads)
        failed: Exception | None = None
    except Exception as err:  # noqa: BLE001 - e.g. a backend that is not installed: each batch reports it
        backend, failed = None, err
    while (task := tasks.get()) is not None:
        run, *batch = task
        try:
            if backend is None:
                raise MedKLIPError(f"the model process could not build the {backend_name} backend: {failed}")
            results.put((run, "ok", predict_batch(backend, *batch)))
        except Exception as err:  # noqa: BLE001 - handed to the parent, which raises it
            results.put((run, "error", err))


def process_context() -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """How model processes start: ``forkserver`` where the platform has it (one server process
    imports torch and medklip once, then forks each model process from that state, in which torch
    has run nothing, so no OpenMP thread exists; numpy's OpenBLAS restarts its one thread after a
    fork), else ``spawn`` (each process imports everything itself: about 3 s of CPU per process on
    a 2-core machine)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # no effect once the server runs: same list
        return context
    return multiprocessing.get_context("spawn")


class ReplicaPool:
    """``processes`` copies of the model on the CPU, fed whole batches in turn.

    Args:
        model: the model (CPU); its weights are shared with the processes, not copied.
        backend: ``torch``, ``onnxruntime`` or ``openvino``, built in each process.
        precision: ``fp32`` or ``bf16`` (torch / openvino).
        processes: how many (at least 2; one process is the :class:`Predictor`'s own loop).
        threads: intra-op threads of each (default: the cores shared equally, at least 1).
    """

    def __init__(self, model: MedKLIP, backend: str, precision: str, processes: int, threads: int | None = None) -> None:
        if processes < 2:
            raise MedKLIPError(f"a replica pool needs at least 2 processes, got {processes}")
        require_cpu(next(model.parameters()).device)
        self.processes = processes
        self.threads = threads or threads_per_process(processes)
        model.share_memory()
        context = process_context()
        self._tasks = [context.Queue() for _ in range(processes)]
        self._results = [context.Queue() for _ in range(processes)]
        self._procs: list[BaseProcess] = [
            context.Process(target=_serve, args=(model, backend, precision, self.threads, t, r), daemon=True,
                            name=f"medklip-model-{k}")
            for k, (t, r) in enumerate(zip(self._tasks, self._results))]
        for proc in self._procs:
            proc.start()
        self._runs = 0
        """How many runs have started; only the latest may read results."""
        logger.info("%d model processes (%s, %d thread%s each)", processes, backend, self.threads,
                    "" if self.threads == 1 else "s")

    def run(self, images: Sequence[str | Path], preprocess: Preprocess, queries: torch.Tensor, batch_size: int,
            heatmaps: bool, keep_display: bool = False) -> Iterator[BatchResult]:
        """Batches of ``images`` in input order, at most two per process in flight (memory stays
        flat over long inputs). One run at a time: a new run supersedes an unfinished one (its
        results in flight are dropped; reading it further raises :class:`MedKLIPError`)."""
        if not self._procs:
            raise MedKLIPError("the model processes were stopped (close()); make a new pool")
        self._runs += 1
        run = self._runs
        paths = [str(p) for p in images]
        size = max(1, batch_size)
        pending: deque[int] = deque()  # the process of each batch in flight, in input order
        try:
            for k, start in enumerate(range(0, len(paths), size)):
                owner = k % self.processes
                self._tasks[owner].put((run, paths[start:start + size], start, preprocess, queries, heatmaps,
                                        keep_display))
                pending.append(owner)
                if len(pending) >= 2 * self.processes:
                    yield self._result(pending.popleft(), run)
            while pending:
                yield self._result(pending.popleft(), run)
        finally:  # a run closed early (an error, a consumer that stopped): collect what is still in flight
            while pending and run == self._runs:  # (a superseded run's are dropped by the next run)
                try:
                    self._result(pending.popleft(), run)
                except Exception:  # noqa: BLE001, S112 - the run is over; its later batches do not matter
                    continue

    def _result(self, owner: int, run: int) -> BatchResult:
        """The next result of ``run`` from process ``owner`` (results of earlier runs are dropped)."""
        if run != self._runs:
            raise MedKLIPError("this prediction was superseded by a later one on the same Predictor; its model "
                               "processes predict one input list at a time")
        while True:
            try:
                origin, status, value = self._results[owner].get(timeout=POLL_SECONDS)
            except queue.Empty:
                proc = self._procs[owner]
                if not proc.is_alive():
                    raise MedKLIPError(
                        f"model process {owner} ended unexpectedly (exit code {proc.exitcode}; out of memory? each "
                        "process holds its batches' decoded images): try fewer processes or a smaller batch size"
                    ) from None
                continue
            if origin != run:  # left unread by a run that was abandoned without being closed
                continue
            if status == "error":
                raise value
            return value

    def close(self) -> None:
        """Stop the processes (they finish the batch in hand)."""
        for tasks in self._tasks:
            tasks.put(None)
        for proc in self._procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
        self._procs = []
