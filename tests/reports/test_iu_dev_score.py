"""The filter's accuracy on real reports: IU/OpenI dev half scored by the project's scorer."""
from __future__ import annotations

import importlib.util
import json

from medklip.reports import ReportFilter
from tests.conftest import shared_dir


def test_iu_dev_micro_f1_and_side_accuracy() -> None:
    eval_dir = shared_dir() / "eval"
    spec = importlib.util.spec_from_file_location("score", eval_dir / "score_report_filter.py")
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    rows = [json.loads(line) for line in (eval_dir / "iu_dev.jsonl").read_text().splitlines()]
    rf = ReportFilter()
    preds = {}
    for r in rows:
        d: dict = {}
        for t in rf.extract(r["text"]):
            if t.exist == 1 and t.entity in score.FIND:
                d.setdefault(t.entity, set()).update(score.side_of([t.position]))
        preds[r["id"]] = {k: (v or None) for k, v in d.items()}
    f1, precision, recall, side, _ = score.score(score.eval_rows(rows), preds)
    assert f1 >= 0.95, f"micro-F1 {f1:.3f}"
    assert side >= 0.93, f"side accuracy {side:.3f}"
