"""tools/uv_sources.py: `make install`'s uv takes its wheels from where pip is configured to."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "uv_sources.py"
spec = importlib.util.spec_from_file_location("uv_sources", TOOL)
assert spec is not None and spec.loader is not None
uv_sources = importlib.util.module_from_spec(spec)
spec.loader.exec_module(uv_sources)

LISTED = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.find-links='/opt/wheels'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/srv/other wheels'
global.index-url='https://mirror.example/simple'
install.index-url='https://install.example/simple'
download.index-url='https://download.example/simple'
"""


def test_pips_settings_become_uvs_options_with_pips_precedence() -> None:
    settings = uv_sources.parse_config_list(LISTED)
    assert settings["find-links"] == "/opt/wheels"  # PIP_FIND_LINKS over the config file
    assert settings["index-url"] == "https://install.example/simple"  # [install] over [global]; [download] ignored
    assert uv_sources.uv_options(settings) == [
        "--index-url", "https://install.example/simple",
        "--extra-index-url", "file:///opt/pypi/simple", "--extra-index-url", "file:///opt/pypi-more/simple",
        "--find-links", "/opt/wheels",
        "--constraint", "/etc/xdg/pip/constraints.txt",
        "--index-strategy", "unsafe-first-match",
    ]


def test_no_settings_no_options_and_no_index_is_passed_on() -> None:
    assert uv_sources.uv_options(uv_sources.parse_config_list("")) == []
    assert uv_sources.uv_options(uv_sources.parse_config_list("global.no-index='true'\nnot a setting")) == [
        "--no-index"]
    assert uv_sources.uv_options({"extra-index-url": " "}) == []


def test_the_script_prints_this_pips_settings() -> None:
    """Run as `make install` runs it, with pip's settings from its environment variables only
    (PIP_CONFIG_FILE=/dev/null: no config file of this machine)."""
    env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null",
           "PIP_EXTRA_INDEX_URL": "file:///srv/a file:///srv/b", "PIP_FIND_LINKS": "/srv/wheels"}
    out = subprocess.run([sys.executable, str(TOOL)], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["--extra-index-url", "file:///srv/a", "--extra-index-url", "file:///srv/b",
                           "--find-links", "/srv/wheels", "--index-strategy", "unsafe-first-match"]
