from __future__ import annotations

import json
import subprocess
import sys

from medklip import __version__
from medklip.cli import main


def test_version_and_help_as_a_console_script() -> None:
    exe = [sys.executable, "-m", "medklip"]
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"medklip {__version__}"
    out = subprocess.run([*exe, "--help"], capture_output=True, text=True, check=True)
    assert "knowledge" in out.stdout and "convert-official" in out.stdout


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
