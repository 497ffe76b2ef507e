"""Shared fixtures: the root skip, and lab scenarios brought up once per test session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

LAB_TOOLS = ("ip", "nsenter", "unshare", "mount", "iptables")


def _root_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the lab builds network and mount namespaces"
    missing = [tool for tool in LAB_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} to build lab namespaces"
    return None


#: mark a test that builds namespaces; skipped, with the reason, when it cannot
requires_root = pytest.mark.skipif(_root_reason() is not None, reason=_root_reason() or "")


@pytest.fixture
def root() -> None:
    """Skip the test (with the reason) unless lab namespaces can be built here."""
    reason = _root_reason()
    if reason:
        pytest.skip(reason)


class LabSession:
    """Scenarios up for the whole session: each is built on first use, removed at the end."""

    def __init__(self) -> None:
        self._up: dict[str, Path] = {}

    def up(self, name: str) -> Path:
        """The inventory of scenario `name`, building it the first time it is asked for."""
        from cnidoctor import lab

        if name not in self._up:
            lab.down(name)  # a stale run left by a killed session: the lab's own state says so
            self._up[name] = lab.up(name)
        return self._up[name]

    def release(self, name: str) -> None:
        """Take a scenario down now, for tests that need it absent (up/down lifecycle)."""
        from cnidoctor import lab

        if self._up.pop(name, None) is not None:
            lab.down(name)

    def close(self) -> None:
        from cnidoctor import lab

        errors = []
        for name in reversed(list(self._up)):
            try:
                lab.down(name)
            except Exception as exc:  # keep tearing down the others
                errors.append(f"{name}: {exc}")
        self._up.clear()
        assert not errors, f"lab down failed: {errors}"


@pytest.fixture(scope="session")
def lab_session() -> Iterator[LabSession]:
    """Bring lab scenarios up once (session.up(NAME)); all are taken down at the end, also
    when tests fail."""
    reason = _root_reason()
    if reason:
        pytest.skip(reason)
    session = LabSession()
    try:
        yield session
    finally:
        session.close()
