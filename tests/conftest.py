"""Tests see a registry of their own: the package's shipped weights are hidden unless a test
asks for them (``shipped`` fixture), so what a release ships never changes what a test means."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _hide_shipped_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEUROCODEC_PACKAGE_WEIGHTS", "0")


@pytest.fixture
def shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's shipped weights, visible (as users see them)."""
    monkeypatch.delenv("NEUROCODEC_PACKAGE_WEIGHTS")
