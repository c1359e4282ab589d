"""Open-I / Indiana University chest X-rays (Demner-Fushman et al. 2016) as the NLM ships them: the
reports (``NLMCXR_reports.tgz`` or its ``ecgen-radiology/`` folder of XML files) with their manual
MeSH codes (``<major>``) as labels, and the PNG images (``NLMCXR_png``, ``<parentImage id>.png``,
anywhere under ROOT).

A class is a MeSH heading (the part before the first ``/``; ``aliases`` fold synonyms into it).
Views come from ``nlmcxr_dicom_metadata.csv(.gz)`` (torchxrayvision ships it) when it is in ROOT:
frontal (PA / AP) by default, and images whose view the file leaves blank are left out and
counted; without the file every image is kept. Reports coded ``No Indexing`` are left out.
Split seeded by report (the patient unit of the collection).
"""
from __future__ import annotations

from pathlib import Path

from medklip.data.benchmarks.base import Benchmark, BenchmarkError, Sample, index_files, make_error
from medklip.data.benchmarks.tables import build_benchmark, find_optional, read_table
from medklip.errors import MedKLIPError
from medklip.reports.iu import read_iu_reports

FRONTAL = {"PA", "AP"}
NOT_INDEXED = "No Indexing"


def report_source(root: Path) -> Path:
    """The reports: the tarball, or its extracted folder of XML files."""
    tarball = find_optional(root, ["NLMCXR_reports.tgz", "NLMCXR_reports.tar.gz"])
    if tarball is not None:
        return tarball
    folder = root / "ecgen-radiology"
    if not folder.is_dir():
        raise BenchmarkError(f"{root}: no NLMCXR_reports.tgz nor ecgen-radiology/ folder of report XML files")
    return folder


def read_views(root: Path) -> dict[str, str] | None:
    path = find_optional(root, ["nlmcxr_dicom_metadata.csv"])
    if path is None:
        return None
    df = read_table(path, ["imageid", "View Position"])
    return {k.strip(): v.strip().upper() for k, v in zip(df["imageid"], df["View Position"])}


def read_openi(root: Path, spec: dict) -> Benchmark:
    classes = dict(spec["classes"])
    aliases = dict(spec.get("aliases", {}))
    frontal_only = str(spec.get("views", "frontal")) == "frontal"
    source = report_source(root)
    try:
        reports = list(read_iu_reports(source))
    except MedKLIPError as exc:
        raise BenchmarkError(str(exc)) from exc
    views = read_views(root) if frontal_only else None
    images = index_files(root, {".png"}, key=lambda p: p.stem)
    samples: list[Sample] = []
    errors: list[dict] = []
    excluded = {"report coded No Indexing": 0, "not frontal": 0, "view not recorded in the metadata": 0}
    for report in reports:
        if NOT_INDEXED in report.mesh:
            excluded["report coded No Indexing"] += 1
            continue
        headings = {aliases.get(h, h) for h in (code.split("/")[0].strip() for code in report.mesh)}
        labels = {c: int(c in headings) for c in classes}
        if not report.images:
            errors.append(make_error(source, 0, f"CXR{report.id}", "report without a parentImage"))
        for image_id in report.images:
            if views is not None:
                view = views.get(image_id, "")
                if view not in FRONTAL:
                    excluded["not frontal" if view else "view not recorded in the metadata"] += 1
                    continue
            if image_id not in images:
                errors.append(make_error(source, 0, image_id, f"report CXR{report.id}: {image_id}.png not found "
                                                              "under the root"))
                continue
            samples.append(Sample(image_id, images[image_id], dict(labels), f"CXR{report.id}"))
    return build_benchmark(spec.get("name", "openi"), spec, samples, errors,
                           excluded={k: v for k, v in excluded.items() if v})
