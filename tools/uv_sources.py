"""Print the ``uv pip install`` options that point uv at the package sources pip is configured with.

``make install`` installs with uv (faster than pip, above all for torch and its CUDA libraries),
but uv does not read pip's configuration. A machine whose pip takes its wheels from a local mirror,
a wheel folder or a constraint file (``pip config list``, ``PIP_*`` variables) must have uv take
them from the same places, under the same constraints: this script turns pip's settings into uv's
options.

    uv pip install $(python tools/uv_sources.py) ...

Precedence as in pip: a ``PIP_*`` variable over the config files' ``[install]`` section over their
``[global]`` section. With extra indexes, uv takes a package from the first index (the extra indexes
as pip lists them, then the main one) that has a version meeting the requirements
(``--index-strategy unsafe-first-match``): a local mirror's wheels are used where they suffice,
the main index only for the rest. pip instead compares every index for the highest version, which
downloads whatever PyPI has newer: on a 2-core machine with empty caches, `make install` took 83 s
that way and 53 s local-first (pip alone: 111 s; `benchmarks/install_time.py`). Prints nothing
when pip has no such settings.
"""
from __future__ import annotations

import ast
import subprocess
import sys

# pip's key -> uv's option; each of LIST_OPTIONS takes several values separated by white space
LIST_OPTIONS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links", "constraint": "--constraint"}
SINGLE_OPTIONS = {"index-url": "--index-url"}
TRUE = {"1", "true", "yes", "on"}
SECTIONS = (":env:", "install", "global")
"""Highest precedence first."""


def parse_config_list(text: str) -> dict[str, str]:
    """``pip config list`` output (``section.key='value'`` lines) -> the value pip uses per key."""
    found: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        section, dot, key = name.rpartition(".")
        if not sep or not dot or section not in SECTIONS:
            continue
        try:
            value = ast.literal_eval(raw)
        except (SyntaxError, ValueError):
            value = raw
        found[(section, key)] = str(value)
    keys = {key for _, key in found}
    return {key: next(found[(s, key)] for s in SECTIONS if (s, key) in found) for key in keys}


def uv_options(settings: dict[str, str]) -> list[str]:
    """uv's options for pip's settings (see the module docstring)."""
    options: list[str] = []
    for key, option in SINGLE_OPTIONS.items():
        if settings.get(key):
            options += [option, settings[key]]
    for key, option in LIST_OPTIONS.items():
        for value in settings.get(key, "").split():
            options += [option, value]
    if settings.get("no-index", "").lower() in TRUE:
        options.append("--no-index")
    if settings.get("extra-index-url", "").split():
        options += ["--index-strategy", "unsafe-first-match"]
    return options


def main() -> int:
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    if listed.returncode:  # no usable pip config: uv's defaults (PyPI) are pip's too
        return 0
    print(" ".join(uv_options(parse_config_list(listed.stdout))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
