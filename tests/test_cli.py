from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medklip import __version__
from medklip.cli import main


def test_version_and_help_as_a_console_script() -> None:
    """Both ways in: ``python -m medklip`` and the ``medklip`` console script pip installed beside
    the interpreter (what the README's commands run)."""
    script = Path(sys.executable).parent / "medklip"
    assert script.is_file(), "the medklip console script is not installed beside the interpreter"
    for exe in ([sys.executable, "-m", "medklip"], [str(script)]):
        out = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"medklip {__version__}"
        out = subprocess.run([*exe, "--help"], capture_output=True, text=True, check=True)
        assert "knowledge" in out.stdout and "convert-official" in out.stdout


def test_serve_binds_to_loopback_unless_told_and_warns_when_told(tiny_model_dir, monkeypatch, capsys) -> None:
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    assert main(["serve", "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    assert calls[-1]["host"] == "127.0.0.1" and calls[-1]["port"] == 7860
    assert "warning" not in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_model_dir), "--device", "cpu", "--host", "0.0.0.0", "--port", "8000"]) == 0
    assert calls[-1]["host"] == "0.0.0.0" and calls[-1]["port"] == 8000
    assert "warning: listening on 0.0.0.0: other machines can reach the page" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_model_dir), "--device", "cpu", "--host", "::1"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_knowledge_listing(capsys) -> None:
    assert main(["knowledge", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 76 and rows[20]["name"] == "pneumonia" and rows[75]["name"] == "covid-19"
    assert main(["knowledge", "--positions", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 51


def test_describe_flag_and_file(capsys, tmp_path) -> None:
    assert main(["knowledge", "sarcoidosis", "--describe", "sarcoidosis=Hilar nodes."]) == 0
    assert capsys.readouterr().out.strip() == "sarcoidosis: Hilar nodes."
    path = tmp_path / "mine.csv"
    path.write_text("name,description\nsarcoidosis,Enlarged hilar lymph nodes.\n")
    assert main(["knowledge", "sarcoidosis", "--knowledge", str(path)]) == 0
    assert "Enlarged hilar" in capsys.readouterr().out


def test_unknown_entity_is_a_clear_error(capsys) -> None:
    assert main(["knowledge", "pneumonis"]) == 2
    err = capsys.readouterr().err
    assert "unknown entity 'pneumonis'" in err and "pneumonia" in err and "Traceback" not in err


def test_convert_official_offline_error(capsys, official_fixture, tmp_path) -> None:
    code = main(["convert-official", str(official_fixture.checkpoint), "-o", str(tmp_path / "m")])
    assert code == 2
    assert "--text-encoder DIR" in capsys.readouterr().err
