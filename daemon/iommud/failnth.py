"""Debug-only failure injection: the analogue of the kernel's fail-nth.

The kernel's `tools/testing/selftests/iommu/iommufd_fail_nth.c` writes N to
/proc/self/task/<tid>/fail-nth, so that the N-th fault-injection point its
next syscall reaches fails (an allocation returns ENOMEM), and then checks
that the syscall left nothing behind. iommud does the same per RPC: a call
carrying `iommud-fail-nth: N` metadata fails at its N-th step with ENOMEM,
and ErrorInfo names the step (`fail_nth`, `site`), which tells an injected
failure from a real one.

A step is every point where the kernel's path allocates or claims
something that can fail: an object id, an fd, a DMA ownership claim, a
reserved range, an area, an IOVA alignment change. Each is marked with
`step("site")` *before* its effect, so a failure there must unwind every
earlier effect of the same call, which is exactly what the walk tests.

Off unless the daemon runs with `debug_fail_nth = 1`; with it off a call
carrying the metadata is refused with EPERM, so a production daemon can
never be made to fail on purpose. The counter lives in a context variable,
so concurrent calls never see each other's.
"""
from __future__ import annotations

import contextvars
import errno as E
from contextlib import contextmanager
from typing import TYPE_CHECKING

from iommud.errors import IommuError

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Request metadata key carrying N.
METADATA_KEY = "iommud-fail-nth"


class Walk:
    """One armed walk: step `nth` fails; `count` steps were reached so far."""

    __slots__ = ("count", "nth")

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.count = 0

    @property
    def left(self) -> int:
        """What /proc/self/task/<tid>/fail-nth reads afterwards: 0 once the
        armed step was reached (the failure was injected), else the steps
        still to go."""
        return max(self.nth - self.count, 0)


_Walk = Walk
_current: contextvars.ContextVar[Walk | None] = contextvars.ContextVar("iommud_fail_nth",
                                                                       default=None)


def step(site: str) -> None:
    """One fault-injection point; raises the injected ENOMEM at the armed step."""
    walk = _current.get()
    if walk is None:
        return
    walk.count += 1
    if walk.count == walk.nth:
        raise IommuError(E.ENOMEM, f"Injected failure at step {walk.nth} ({site}).",
                         fail_nth=walk.nth, site=site)


def parse(value: str | None, enabled: bool) -> int | None:
    """N from the metadata value; EPERM when injection is off, EINVAL for junk."""
    if value is None:
        return None
    if not enabled:
        raise IommuError(E.EPERM, "Failure injection is off in this daemon; start it with "
                         "debug_fail_nth = 1 to use iommud-fail-nth.")
    try:
        nth = int(value, 0)
    except ValueError:
        nth = 0
    if nth < 1:
        raise IommuError(E.EINVAL, f"iommud-fail-nth must be a positive step number, not "
                         f"{value!r}.")
    return nth


@contextmanager
def armed(nth: int | None) -> Iterator[None]:
    """Run the body with step `nth` armed (nothing armed for None)."""
    if nth is None:
        yield
        return
    with walking(Walk(nth)):
        yield


@contextmanager
def walking(walk: Walk | None) -> Iterator[None]:
    """Run the body inside `walk` (nothing for None): a walk that spans
    several calls, as the kernel's per-task fail-nth counts the sites of a
    whole syscall (the raw transport's FAIL_NTH ioctls)."""
    if walk is None:
        yield
        return
    token = _current.set(walk)
    try:
        yield
    finally:
        _current.reset(token)
