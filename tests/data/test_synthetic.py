from __future__ import annotations

import json

import numpy as np

from medklip.data.synthetic import (
    SEEN_FINDINGS,
    WorldConfig,
    generate_world,
    make_study,
)
from medklip.reports import ReportFilter

CFG = WorldConfig(train=40, validation=8, test=40, image_size=96, covid_rate=0.3)


def test_deterministic_for_a_seed() -> None:
    a, b = make_study(CFG, "train", 7), make_study(CFG, "train", 7)
    assert np.array_equal(a.image, b.image) and a.report == b.report
    c = make_study(WorldConfig(**{**CFG.__dict__, "seed": 1}), "train", 7)
    assert not np.array_equal(a.image, c.image)


def test_covid_only_in_test_and_never_named() -> None:
    train = [make_study(CFG, "train", i) for i in range(150)]
    test = [make_study(CFG, "test", i) for i in range(60)]
    assert not any(s.labels["covid-19"] for s in train)
    assert sum(s.labels["covid-19"] for s in test) > 5
    assert not any("covid" in s.report.lower() for s in train + test)


def test_reports_are_radiology_language_and_the_filter_recovers_the_truth() -> None:
    rf = ReportFilter()
    agree = total = 0
    for i in range(120):
        s = make_study(CFG, "train", i)
        assert "FINDINGS:" in s.report and "IMPRESSION:" in s.report
        trip = rf.extract(s.report)
        present = {t.entity for t in trip if t.exist == 1}
        uncertain = {t.entity for t in trip if t.exist == -1}
        for name in SEEN_FINDINGS:
            if s.labels[name] and name in uncertain:
                continue  # a hedged mention: uncertain by design
            total += 1
            agree += (name in present) == bool(s.labels[name])
    assert agree / total > 0.99


def test_masks_match_labels() -> None:
    for i in range(30):
        s = make_study(CFG, "test", i)
        assert set(s.masks) == {k for k, v in s.labels.items() if v}
        for m in s.masks.values():
            assert m.shape == s.image.shape and m.any()


def test_world_on_disk(tmp_path) -> None:
    root = generate_world(tmp_path / "w", CFG, workers=2)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    assert [sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")] == [40, 8, 40]
    labels = [json.loads(line) for line in (root / "test_labels.jsonl").read_text().splitlines()]
    assert len(labels) == 40
    masks = np.load(root / labels[0]["masks"])
    assert set(masks.files) == {k for k, v in labels[0]["labels"].items() if v}
    assert (root / rows[0]["image"]).is_file()
    mtime = (root / "manifest.jsonl").stat().st_mtime_ns
    generate_world(root, CFG)  # same settings: reused, not rewritten
    assert (root / "manifest.jsonl").stat().st_mtime_ns == mtime


def test_world_progress_in_a_log_is_whole_lines(tmp_path, capsys) -> None:
    """Written to a log (not a terminal), the world's progress is one line per interval and a last
    line, never carriage-return bar updates (issue #25: 2,800 of them on one line)."""
    generate_world(tmp_path / "w", WorldConfig(train=6, validation=2, test=4, image_size=64), progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("synthetic world")]
    assert lines[0] == "synthetic world: 0/12 studies (0%), 0.0 studies/s"
    assert lines[-1].startswith("synthetic world: 12/12 studies (100%), done in")
