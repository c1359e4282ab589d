"""`medklip compare`: paired-bootstrap AUC differences of two runs on the same images, checked by
hand and against a plain loop over the same resamples; runs on other images or labels refused."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medklip.cli import main
from medklip.errors import MedKLIPError
from medklip.evaluation.compare import RunMismatchError, compare_runs, read_run
from medklip.evaluation.metrics import bootstrap_aucs, bootstrap_counts


def write_run(folder: Path, ids, labels: dict[str, list[int]], probs: dict[str, list[float]],
              dataset: str = "toy") -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"dataset": dataset}))
    with (folder / "predictions.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "image", "split", *[f"label:{c}" for c in labels], *[f"prob:{p}" for p in probs]])
        for k, i in enumerate(ids):
            w.writerow([i, f"{i}.png", "test", *[labels[c][k] for c in labels], *[f"{probs[p][k]:.9g}" for p in probs]])
    return folder


def test_bootstrap_aucs_equal_the_auc_of_each_resample_drawn_out() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    s = np.round(rng.random(40), 1)  # ties
    counts = bootstrap_counts(40, 50, seed=3)
    fast = bootstrap_aucs(y, s, counts)
    for b in range(50):
        idx = np.repeat(np.arange(40), counts[b])
        want = roc_auc_score(y[idx], s[idx]) if 0 < y[idx].sum() < len(idx) else np.nan
        assert fast[b] == pytest.approx(want, abs=1e-12) or (np.isnan(want) and np.isnan(fast[b]))


def test_a_perfect_model_against_a_reversed_one_by_hand(tmp_path) -> None:
    """A ranks every positive above every negative (AUC 1 on every resample with both labels), B
    the reverse (AUC 0): the difference is 1 on every resample, so the interval is [1, 1] and no
    resample reaches 0 (p = 0, printed as below 1/resamples)."""
    ids = [f"i{k}" for k in range(6)]
    y = [0, 0, 0, 1, 1, 1]
    a = write_run(tmp_path / "a", ids, {"Effusion": y}, {"Effusion": [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]})
    b = write_run(tmp_path / "b", ids, {"Effusion": y}, {"Effusion": [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]})
    r = compare_runs(read_run(a), read_run(b), n_boot=500, seed=0)
    e = r["classes"]["Effusion"]
    assert (e["auc_a"], e["auc_b"], e["delta"], e["delta_ci"], e["p_value"]) == (1.0, 0.0, 1.0, [1.0, 1.0], 0.0)
    assert r["macro"]["delta_ci"] == [1.0, 1.0]
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "out"), "--bootstrap", "500",
                 "--names", "perfect", "reversed"]) == 0
    table = (tmp_path / "out" / "compare.md").read_text()
    assert "| Effusion | 1.0000 | 0.0000 | +1.0000 [+1.0000, +1.0000] | < 0.0020 | 3 / 6 |" in table
    assert (tmp_path / "out" / "forest.png").stat().st_size > 1000


def test_the_interval_and_p_value_are_those_of_the_paired_resamples(tmp_path) -> None:
    """Two noisy models on the same 200 images: the interval is the 2.5 / 97.5% quantiles of the
    paired differences and the p-value twice the smaller tail, computed here with a plain loop over
    the same resamples; the uncertain label (-1) is left out, a class's name prompt kept apart from
    the macro average."""
    rng = np.random.default_rng(1)
    n = 200
    ids = [f"img{k:03d}" for k in range(n)]
    y = rng.integers(0, 2, n)
    y[:5] = -1
    pa = np.clip(0.5 + 0.3 * (y > 0) + rng.normal(0, 0.25, n), 0, 1)
    pb = np.clip(0.5 + 0.2 * (y > 0) + rng.normal(0, 0.25, n), 0, 1)
    labels = {"Mass": list(y), "covid-19": list((rng.random(n) < 0.3).astype(int))}
    probs = {"Mass": list(pa), "covid-19": list(rng.random(n)), "covid-19 (name)": list(rng.random(n))}
    probs_b = {"Mass": list(pb), "covid-19": probs["covid-19"], "covid-19 (name)": probs["covid-19 (name)"]}
    a, b = write_run(tmp_path / "a", ids, labels, probs), write_run(tmp_path / "b", ids[::-1],
                     {c: v[::-1] for c, v in labels.items()}, {p: v[::-1] for p, v in probs_b.items()})
    r = compare_runs(read_run(a), read_run(b), n_boot=400, seed=7)
    counts = bootstrap_counts(n, 400, seed=7)
    pa32, pb32 = np.array([float(f"{v:.9g}") for v in pa]), np.array([float(f"{v:.9g}") for v in pb])
    deltas = []
    for row in counts:
        idx = np.repeat(np.arange(n), row)
        idx = idx[y[idx] >= 0]
        deltas.append(roc_auc_score(y[idx], pa32[idx]) - roc_auc_score(y[idx], pb32[idx]))
    deltas = np.array(deltas)
    m = r["classes"]["Mass"]
    assert m["n"] == n - 5 and m["delta"] == pytest.approx(
        roc_auc_score(y[5:], pa32[5:]) - roc_auc_score(y[5:], pb32[5:]), abs=1e-12)
    assert m["delta_ci"] == pytest.approx([np.quantile(deltas, 0.025), np.quantile(deltas, 0.975)], abs=1e-12)
    assert m["p_value"] == pytest.approx(min(1, 2 * min((deltas <= 0).mean(), (deltas >= 0).mean())))
    assert r["classes"]["covid-19"]["delta"] == 0 and r["classes"]["covid-19"]["p_value"] == 1.0
    assert r["macro"]["classes"] == 2  # Mass and covid-19 by description; the name prompt is not averaged


def test_runs_on_other_images_or_labels_are_refused(tmp_path) -> None:
    ids = ["a1", "a2", "a3", "a4"]
    base = write_run(tmp_path / "base", ids, {"Mass": [0, 1, 0, 1]}, {"Mass": [0.1, 0.9, 0.2, 0.8]})
    other = write_run(tmp_path / "other", ["a1", "a2", "a3", "zz"], {"Mass": [0, 1, 0, 1]}, {"Mass": [0.1] * 4})
    relabelled = write_run(tmp_path / "relabelled", ids, {"Mass": [0, 1, 1, 1]}, {"Mass": [0.1] * 4})
    elsewhere = write_run(tmp_path / "elsewhere", ids, {"Mass": [0, 1, 0, 1]}, {"Mass": [0.1] * 4}, dataset="other")
    with pytest.raises(RunMismatchError, match="1 images only in .*base \\(first: a4\\); 1 images only in .*"
                                               "other \\(first: zz\\)"):
        compare_runs(read_run(base), read_run(other))
    with pytest.raises(RunMismatchError, match="the label of Mass differs for 1 images \\(first: a3\\)"):
        compare_runs(read_run(base), read_run(relabelled))
    with pytest.raises(RunMismatchError, match="scored 'toy' and .* scored 'other'"):
        compare_runs(read_run(base), read_run(elsewhere))
    with pytest.raises(MedKLIPError, match="no metrics.json"):
        read_run(tmp_path)
    assert main(["compare", str(base), str(relabelled)]) == 2  # medklip's exit code for a user error


def test_a_run_folder_is_read_back_column_by_column_or_refused_naming_file_and_row(tmp_path) -> None:
    """Label and probability columns by their prefixes, an empty label as negative, the prompt ->
    class map recorded by evaluate; a missing file, no rows, a class without labels or a value that
    is not a number: refused with the file (and row: the header is row 1)."""
    run = write_run(tmp_path / "run", ["x", "y"], {"Mass": [1, ""], "Nodule": [0, -1]},
                    {"Mass": [0.25, 0.5], "nodule, small": [0.75, 1.0]})
    (run / "metrics.json").write_text(json.dumps({"dataset": "toy", "prompt_classes": {"nodule, small": "Nodule"}}))
    r = read_run(run)
    assert r.dataset == "toy" and r.ids == ["x", "y"] and r.folder == run
    assert {c: v.tolist() for c, v in r.labels.items()} == {"Mass": [1.0, 0.0], "Nodule": [0.0, -1.0]}
    assert {p: v.tolist() for p, v in r.probs.items()} == {"Mass": [0.25, 0.5], "nodule, small": [0.75, 1.0]}
    assert r.prompt_class == {"Mass": "Mass", "nodule, small": "Nodule"}
    csv_path = run / "predictions.csv"

    def refused(message: str) -> None:
        with pytest.raises(MedKLIPError) as caught:
            read_run(run)
        assert str(caught.value) == message

    (run / "metrics.json").write_text(json.dumps({"dataset": "toy"}))  # no map: "nodule, small" is its own class
    refused(f"{csv_path}: no label column for nodule, small")
    text = csv_path.read_text().replace("0.5", "n/a")
    csv_path.write_text(text)
    (run / "metrics.json").write_text(json.dumps({"prompt_classes": {"nodule, small": "Nodule"}}))
    refused(f"{csv_path} row 3: prob:Mass is 'n/a', not a number")
    good = text.replace("n/a", "0.5")
    csv_path.write_text(good.replace("y,y.png,test,,", "y,y.png,test,maybe,"))
    refused(f"{csv_path} row 3: label:Mass is 'maybe', not a number")
    csv_path.write_text(good)
    assert read_run(run).dataset == ""  # metrics.json names no dataset
    csv_path.write_text(text.splitlines()[0] + "\n")
    refused(f"{csv_path} has no rows")
    csv_path.unlink()
    refused(f"{run}: no predictions.csv; give the output folder of a `medklip evaluate` run")
    two = write_run(tmp_path / "two", ["x"], {}, {"Mass": [0.5], "Nodule (name)": [0.5]})
    with pytest.raises(MedKLIPError) as caught:
        read_run(two)
    assert str(caught.value) == f"{two / 'predictions.csv'}: no label column for Mass, Nodule"


def test_the_macro_row_the_table_and_the_refusals_in_full(tmp_path) -> None:
    """The macro difference and its interval at alpha 0.1 against a plain loop over the same
    resamples; defaults recorded; a class that one run lacks, a class with one label value (NaN
    throughout); the table's text; every refusal's message in full."""
    from medklip.evaluation.compare import comparison_table

    rng = np.random.default_rng(4)
    n = 60
    ids = [f"r{k:02d}" for k in range(n)]
    y1, y2, y3 = rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 2, n)
    pa1, pb1, pa2, pb2, pa3, pb3 = (np.round(rng.random(n), 3) for _ in range(6))
    pa1 = np.round(np.clip(pa1 + 0.4 * y1, 0, 1), 3)
    a = write_run(tmp_path / "a", ids, {"Mass": list(y1), "Nodule": list(y2), "Edema": list(y3), "Hernia": [0] * n,
                                        "Extra": [1] * n},
                  {"Mass": list(pa1), "Nodule": list(pa2), "Edema": list(pa3), "Hernia": list(pa2)})
    b = write_run(tmp_path / "b", ids, {"Mass": list(y1), "Nodule": list(y2), "Edema": list(y3), "Hernia": [0] * n},
                  {"Mass": list(pb1), "Nodule": list(pb2), "Edema": list(pb3), "Hernia": list(pb2)})
    r = compare_runs(read_run(a), read_run(b), n_boot=300, seed=2, alpha=0.1)
    assert (r["a"], r["b"], r["dataset"], r["images"], r["n_boot"], r["seed"], r["alpha"]) == (
        str(a), str(b), "toy", n, 300, 2, 0.1)
    counts = bootstrap_counts(n, 300, seed=2)
    per_class = []
    classes = ((y1, pa1, pb1), (y2, pa2, pb2), (y3, pa3, pb3))
    for y, pa, pb in classes:
        rows = [np.repeat(np.arange(n), c) for c in counts]
        per_class.append([roc_auc_score(y[i], pa[i]) - roc_auc_score(y[i], pb[i]) for i in rows])
    macro_deltas = np.mean(per_class, axis=0)
    aucs = [(roc_auc_score(y, pa), roc_auc_score(y, pb)) for y, pa, pb in classes]
    m = r["macro"]
    assert m["classes"] == 3  # Hernia has no positive: NaN, not averaged
    assert m["auc_a"] == pytest.approx(np.mean([x[0] for x in aucs]), abs=1e-12)
    assert m["delta"] == pytest.approx(np.mean([x[0] - x[1] for x in aucs]), abs=1e-12)
    assert m["delta_ci"] == pytest.approx([np.quantile(macro_deltas, 0.05), np.quantile(macro_deltas, 0.95)], abs=1e-12)
    hernia = r["classes"]["Hernia"]
    assert np.isnan(hernia["auc_a"]) and np.isnan(hernia["p_value"]) and np.isnan(hernia["delta_ci"]).all()
    assert hernia["positives"] == 0 and hernia["n"] == n
    defaults = compare_runs(read_run(a), read_run(b))
    assert (defaults["n_boot"], defaults["seed"], defaults["alpha"]) == (2000, 0, 0.05)

    table = comparison_table({"alpha": 0.1, "n_boot": 100, "classes": {
        "Mass": {"auc_a": 0.9, "auc_b": 0.8, "delta": 0.1, "delta_ci": [0.05, 0.15], "p_value": 0.0, "positives": 5,
                 "n": 20}},
        "macro": {"auc_a": 0.9, "auc_b": 0.8, "delta": 0.1, "delta_ci": [-0.01, 0.2], "p_value": 0.25, "classes": 1}})
    assert table == (
        "| class | AUC A | AUC B | A - B [90% CI] | p | positives / n |\n|---|---|---|---|---|---|\n"
        "| Mass | 0.9000 | 0.8000 | +0.1000 [+0.0500, +0.1500] | < 0.0100 | 5 / 20 |\n"
        "| **macro** | 0.9000 | 0.8000 | +0.1000 [-0.0100, +0.2000] | 0.2500 | 1 classes |")
    assert "macro" not in comparison_table({"alpha": 0.05, "n_boot": 10, "classes": {}}, "x", "y")

    def refused(x, y, message: str) -> None:
        with pytest.raises(RunMismatchError) as caught:
            compare_runs(read_run(x), read_run(y))
        assert str(caught.value) == message

    fewer = write_run(tmp_path / "fewer", ids[:-1], {"Mass": list(y1[:-1])}, {"Mass": list(pb1[:-1])})
    refused(a, fewer, f"the runs were not scored on the same images: 1 images only in {a} (first: r59)")
    refused(fewer, a, f"the runs were not scored on the same images: 1 images only in {a} (first: r59)")
    other = write_run(tmp_path / "other", ids, {"Mass": list(y1), "Other": [0] * n}, {"Other": list(pb1)})
    refused(a, other, f"{a} and {other} share no prompt")
    twice = write_run(tmp_path / "twice", ids + ids[:1], {"Mass": [*y1, y1[0]]}, {"Mass": [*pb1, pb1[0]]})
    refused(twice, b, f"{twice}: an image id appears twice in predictions.csv")
    flipped = write_run(tmp_path / "flipped", ids, {"Mass": list(1 - y1)}, {"Mass": list(pb1)})
    refused(a, flipped, f"the label of Mass differs for {n} images (first: r00); the runs did not read the same "
                        "label file")
    (flipped / "metrics.json").write_text(json.dumps({"dataset": "chexpert"}))
    refused(a, flipped, f"{a} scored 'toy' and {flipped} scored 'chexpert'")
