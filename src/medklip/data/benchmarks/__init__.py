"""Evaluation datasets, read from their published layouts (see ``benchmarks.yaml``): the paper's six,
and CheXpert, PadChest (KAD / MAVL protocols), VinDr-CXR, MS-CXR, Open-I and the ChestX-ray14 expert
labels."""
from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml

from medklip.data.benchmarks.adapters import (
    read_chestxray14,
    read_covid_rural,
    read_covidx,
    read_edema,
    read_rsna,
    read_siim,
    read_synthetic,
)
from medklip.data.benchmarks.base import (
    Benchmark,
    BenchmarkError,
    Region,
    Sample,
    make_split,
    read_split,
    write_split,
)
from medklip.data.benchmarks.chexpert import read_chexpert
from medklip.data.benchmarks.nih_expert import read_nih_expert
from medklip.data.benchmarks.openi import read_openi
from medklip.data.benchmarks.padchest import read_padchest
from medklip.data.benchmarks.phrases import read_ms_cxr
from medklip.data.benchmarks.vindr import read_vindr
from medklip.splits import SPLITS

READERS: dict[str, Callable[..., Benchmark]] = {
    "chestxray14": read_chestxray14,
    "rsna-pneumonia": read_rsna,
    "siim-acr": read_siim,
    "covidx": read_covidx,
    "covid-rural": read_covid_rural,
    "edema-severity": read_edema,
    "chexpert": read_chexpert,
    "padchest": read_padchest,
    "padchest-mavl-seen": read_padchest,
    "padchest-mavl-unseen": read_padchest,
    "vindr-cxr": read_vindr,
    "ms-cxr": read_ms_cxr,
    "openi": read_openi,
    "chestxray14-expert": read_nih_expert,
    "synthetic": read_synthetic,
}


def benchmark_specs(mapping: str | Path | None = None) -> dict[str, dict]:
    """The packaged dataset descriptions, updated per dataset by ``mapping`` (a YAML file)."""
    specs = yaml.safe_load(resources.files("medklip.data.benchmarks").joinpath("data/benchmarks.yaml").read_text())
    if mapping is not None:
        path = Path(mapping)
        try:
            extra = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BenchmarkError(f"{path}: cannot read the mapping file ({exc})") from exc
        if not isinstance(extra, dict):
            raise BenchmarkError(f"{path}: expected a mapping of dataset name -> settings")
        for name, settings in extra.items():
            if name not in specs:
                raise BenchmarkError(f"{path}: unknown dataset {name!r}; known: {', '.join(specs)}")
            specs[name] = {**specs[name], **settings}
    return specs


def load_benchmark(name: str, root: str | Path, mapping: str | Path | None = None,
                   labels: str | Path | None = None) -> Benchmark:
    """Read dataset ``name`` from ``root`` (``labels``: the label file, for edema-severity)."""
    specs = benchmark_specs(mapping)
    if name not in READERS:
        raise BenchmarkError(f"unknown dataset {name!r}; known: {', '.join(READERS)}")
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkError(f"{root}: dataset folder not found")
    if name == "edema-severity":
        return read_edema(root, specs[name], Path(labels) if labels else None)
    return READERS[name](root, {**specs[name], "name": name})


__all__ = ["READERS", "SPLITS", "Benchmark", "BenchmarkError", "Region", "Sample", "benchmark_specs",
           "load_benchmark", "make_split", "read_split", "write_split"]
