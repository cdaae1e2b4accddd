"""Fixtures and hooks: a sandbox per test on loopback, and the passcode leak check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tap_clevertap.sandbox import SandboxData, SandboxServer, SandboxSettings
from tests.helpers import CAPTURED, PASSCODES


@pytest.fixture(scope="session", autouse=True)
def _no_passcode_in_any_output() -> Iterator[None]:
    yield
    for passcode in PASSCODES:
        leaks = [text[:200] for text in CAPTURED if passcode in text]
        assert not leaks, f"passcode {passcode!r} appeared in tap output: {leaks[:3]}"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxData(events_per_day=30), SandboxSettings()) as server:
        yield server
