"""`medklip predict` / Predictor on the real chest radiograph RG1_UNCR.dcm (pydicom-data)."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from medklip.cli import main
from medklip.errors import UnknownEntityError
from medklip.zeroshot.predict import Predictor
from tests.data.test_image_io import rg1_path


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


def test_predictor_seen_added_and_described(model_dir) -> None:
    p = Predictor(model_dir, device="cpu")
    [r] = p.predict([rg1_path()], ["effusion", "covid-19"], {"sarcoidosis": "Bilateral hilar lymphadenopathy."})
    assert r.error is None and set(r.probabilities) == {"effusion", "covid-19", "sarcoidosis"}
    assert all(0 <= v <= 1 for v in r.probabilities.values())
    assert r.heatmaps["effusion"].shape == (4, 4)
    # a seen finding uses the model's own query: same probability as the raw model with an extra query
    names, queries, rows = p.queries(["effusion"], {"x": "y"})
    assert names[rows[0]] == "effusion" and rows[0] == p.model.entity_names.index("effusion")
    with pytest.raises(UnknownEntityError, match="pneumonia"):
        p.queries(["pneumonis"])


def test_ensembles_of_descriptions(model_dir, capsys) -> None:
    import torch

    from medklip.knowledge import KnowledgeBase

    a, b = "Hazy ground-glass opacities in both lungs.", "Peripheral opacities in the lower zones."
    # by embedding (the default): one query, the mean of the descriptions' embeddings
    p = Predictor(model_dir, device="cpu")
    names, queries, rows = p.queries(["covid-19"], {"covid-19": [a, b], "one": a})
    single = p.encoder.encode([a, b])
    assert torch.allclose(queries[rows[0]], (single[0] + single[1]) / 2, atol=1e-6)
    assert torch.equal(queries[rows[1]], single[0])  # one description: its own embedding, unchanged
    assert not torch.allclose(queries[rows[0]], single[0], atol=1e-3)
    # by probability: one query per description, probabilities and heatmaps averaged
    q = Predictor(model_dir, device="cpu", ensemble="probability")
    qs = q.query_set(["effusion"], {"covid-19": [a, b]})
    assert [qs.names[r] for r in qs.groups[1]] == ["covid-19 #1", "covid-19 #2"] and len(qs.groups[0]) == 1
    [r] = q.predict([rg1_path()], ["effusion"], {"covid-19": [a, b]})
    [m] = q.predict([rg1_path()], ["effusion"], {"c1": a, "c2": b})  # the same queries, by other names
    assert r.probabilities["covid-19"] == pytest.approx((m.probabilities["c1"] + m.probabilities["c2"]) / 2, abs=1e-7)
    np.testing.assert_allclose(r.heatmaps["covid-19"], (m.heatmaps["c1"] + m.heatmaps["c2"]) / 2, atol=1e-7)
    assert r.probabilities["effusion"] == m.probabilities["effusion"]
    # a knowledge-base entity with variants: all of them (medklip's models), or its main one when asked
    kb = KnowledgeBase.default().extend({"covid-19": [a, b]})
    [k] = Predictor(model_dir, device="cpu", knowledge=kb, ensemble="probability").predict(
        [rg1_path()], ["effusion", "covid-19"])
    assert k.probabilities["covid-19"] == pytest.approx(r.probabilities["covid-19"], abs=1e-7)
    [main_only] = Predictor(model_dir, device="cpu", knowledge=kb, variants=False).predict(
        [rg1_path()], ["effusion", "covid-19"])
    [first] = q.predict([rg1_path()], ["effusion"], {"covid-19": a})
    assert main_only.probabilities["covid-19"] == pytest.approx(first.probabilities["covid-19"], abs=1e-7)
    assert main(["predict", str(rg1_path()), "--model", str(model_dir), "--findings", "effusion",
                 "--describe", f"covid-19={a}", "--describe", f"covid-19={b}", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    [e] = p.predict([rg1_path()], ["effusion"], {"covid-19": [a, b]}, heatmaps=False)  # the CLI's default: embedding
    assert out["probabilities"]["covid-19"] == pytest.approx(e.probabilities["covid-19"], abs=1e-6)
    assert out["calibrated"] == {"effusion": False, "covid-19": False} and out["calibration"] is None


def test_cli_predict_formats_heatmaps_and_failures(model_dir, tmp_path, capsys) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(0).random((80, 80)) * 255).astype(np.uint8)).save(folder / "a.png")
    (folder / "notes.jpg").write_text("not an image")
    args = ["predict", rg1_path(), str(folder), "--model", str(model_dir), "--findings", "effusion,pneumonia",
            "--describe", "covid-19=Ground-glass opacities in both lower lungs.", "--heatmaps", str(tmp_path / "h")]
    assert main(args + ["--format", "json"]) == 1  # one file failed
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # JSON lines, streamed
    assert [bool(r["error"]) for r in out] == [False, False, True]
    assert set(out[0]["probabilities"]) == {"effusion", "pneumonia", "covid-19"}
    pngs = sorted(p.name for p in (tmp_path / "h").glob("*.png"))
    assert "RG1_UNCR_covid-19.png" in pngs and len(pngs) == 6
    assert main(["predict", rg1_path(), "--model", str(model_dir), "--findings", "effusion", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["image", "effusion", "error"] and len(rows) == 2
    assert main(["predict", str(tmp_path / "nothing.png"), "--model", str(model_dir)]) == 1
    assert "no such file" in capsys.readouterr().err
