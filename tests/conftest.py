"""Shared fixtures: real iommud daemons on private UNIX sockets.

Every daemon is a subprocess started exactly as a user would (`python -m
iommud`, see support.py), handed out once its health service reports
SERVING. Three fixtures own daemons, all through one factory:

- `daemon_factory` (per test): `daemon_factory("--journal", db, name="a")`
  starts a daemon with its own flags; every daemon it started is stopped at
  the test's teardown, whether the test passed or not.
- `module_daemon_factory` (per module): the same, for one configured daemon
  that a module's tests share (each test opening its own sessions).
- `daemon` (per session): the default daemon, for tests that only need
  isolation by session.

When a test fails, the report carries the log tail of every daemon it used.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support import DaemonFactory, DaemonProcess

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Iterator

    from iommud_client import Client


def _fresh_dir(parent: pathlib.Path, name: str) -> pathlib.Path:
    path, n = parent / name, 1
    while path.exists():
        n += 1
        path = parent / f"{name}-{n}"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def daemon_factory(tmp_path: pathlib.Path) -> Iterator[DaemonFactory]:
    """Start daemons for this test only, in directories under its tmp_path."""
    factory = DaemonFactory(lambda name: _fresh_dir(tmp_path, name))
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def module_daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonFactory]:
    """Start daemons shared by the tests of one module."""
    factory = DaemonFactory(tmp_path_factory.mktemp)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon shared by the tests that only need isolation by session."""
    factory = DaemonFactory(tmp_path_factory.mktemp)
    try:
        yield factory(name="iommud")
    finally:
        factory.stop_all()


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


@pytest.fixture
def session(client: Client):
    with client.open_session("pytest") as s:
        yield s


@pytest.fixture
def ctx(session):
    return session.open_context()


def _daemons_of(item: pytest.Item) -> list[DaemonProcess]:
    """The daemons a test used: fixtures that are daemons (directly or via
    other fixtures) and every daemon its factories started."""
    found: dict[int, DaemonProcess] = {}
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, DaemonProcess):
            found.setdefault(id(value), value)
        elif isinstance(value, DaemonFactory):
            for d in value:
                found.setdefault(id(d), d)
    return list(found.values())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for d in _daemons_of(item):
            report.sections.append((f"iommud log tail: {d.name} ({d.log_path})", d.log_tail()))
