"""Names of the preprocessing profiles (importable without torch; see :mod:`medklip.data.preprocess`)."""
from __future__ import annotations

PROFILES = ("medklip", "release-cxr14", "release-rsna", "release-padchest")
RELEASE_PROFILES = ("release-cxr14", "release-rsna", "release-padchest")
