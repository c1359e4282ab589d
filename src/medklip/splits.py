"""The one split vocabulary: ``train``, ``validation``, ``test`` (manifests, benchmarks, split
files, fine-tuning). Other spellings datasets use (MIMIC-CXR's ``validate``, ``valid``, ``val``,
``dev``) are read as aliases."""
from __future__ import annotations

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
ALIASES = {"val": VALIDATION, "valid": VALIDATION, "validate": VALIDATION, "dev": VALIDATION}


def normalize_split(name: str) -> str | None:
    """The canonical name of a split (case-insensitive), or None when it is not one."""
    key = str(name).strip().lower()
    return key if key in SPLITS else ALIASES.get(key)
