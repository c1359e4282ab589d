"""Existence label values shared by the report filter, the datasets and the loss."""
from __future__ import annotations

PRESENT = 1
ABSENT = 0
UNCERTAIN = -1
UNMENTIONED = 2
"""The release's loss also skips 2; medklip uses it for entities a report does not mention."""


NUM_POSITION_SAMPLES = 8
"""Positions scored per entity by the position loss: 1 positive (column 0) + 7 negatives."""
