"""The suite's own scheduling promise (tests/conftest.py): the tests that train for minutes are
collected before every other, so that `make test`'s workers start on them at once."""
from __future__ import annotations

import pytest


def test_the_minutes_long_tests_are_collected_first(request: pytest.FixtureRequest) -> None:
    long = [item.get_closest_marker("minutes") is not None for item in request.session.items]
    assert long == sorted(long, reverse=True), [item.nodeid for item in request.session.items[:3]]
