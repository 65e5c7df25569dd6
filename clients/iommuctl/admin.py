"""`iommuctl admin ...`: the daemon's admin view (AdminListSessions).

Who holds what: every live session, who opened it, and its contexts, IOMMU
groups, devices, memory and lease. Admin only (the daemon answers EPERM to
anyone else); these commands open no session of their own.

Registered on the `iommuctl` group by the one import at the end of cli.py.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from iommuctl.cli import EXIT_REFUSED, App, cli, print_table

if TYPE_CHECKING:
    from iommud_wire import pb


def _size(n: int) -> str:
    """Bytes as 4K, 2M, 1.5G."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.4g}{unit}"
    return str(n)


def session_dict(s: pb.AdminSession) -> dict[str, Any]:
    """One session of the view as plain data (the json output)."""
    return {"session_id": s.session_id, "client_name": s.client_name, "identity": s.identity,
            "uid": s.uid if s.HasField("uid") else None,
            "pid": s.pid if s.HasField("pid") else None,
            "contexts": [{"iommufd": c.iommufd, "objects": c.objects, "areas": c.areas,
                          "mapped_bytes": c.mapped_bytes} for c in s.contexts],
            "groups": list(s.groups), "devices": list(s.devices),
            "mapped_bytes": s.mapped_bytes, "memory_bytes": s.memory_bytes,
            "lease_seconds": s.lease_seconds,
            "lease_remaining_seconds": round(s.lease_remaining_seconds, 3),
            "watch_streams": s.watch_streams, "fds": s.fds}


@cli.group()
def admin() -> None:
    """The admin view of the daemon (needs an admin uid or TLS identity).

    \b
    iommuctl admin sessions             # every session: who, what it holds
    iommuctl admin session s-0123abcd   # one session, with its contexts
    """


@admin.command("sessions")
@click.pass_obj
def admin_sessions(app: App) -> None:
    """Every live session: opener, contexts, groups, devices, memory, lease."""
    sessions = app.client.admin_sessions()

    def table() -> None:
        print_table(["SESSION", "NAME", "IDENTITY", "PID", "CTX", "GROUPS", "DEVICES", "MAPPED",
                     "MEMORY", "LEASE"],
                    [(s.session_id, s.client_name or "-", s.identity or "-",
                      s.pid if s.HasField("pid") else "-", len(s.contexts),
                      ",".join(map(str, s.groups)) or "-", ",".join(s.devices) or "-",
                      _size(s.mapped_bytes), _size(s.memory_bytes),
                      "watched" if s.watch_streams else f"{s.lease_remaining_seconds:.0f}s/"
                                                         f"{s.lease_seconds}s")
                     for s in sessions])

    app.emit([session_dict(s) for s in sessions], table)


@admin.command("session")
@click.argument("session_id")
@click.pass_obj
def admin_session(app: App, session_id: str) -> None:
    """One session by its id (as `admin sessions` and the logs show it)."""
    found = [s for s in app.client.admin_sessions() if s.session_id == session_id]
    if not found:
        click.echo(f"iommuctl: no live session has the id {session_id!r}", err=True)
        sys.exit(EXIT_REFUSED)
    s = found[0]
    data = session_dict(s)

    def table() -> None:
        for key in ("session_id", "client_name", "identity", "uid", "pid", "groups", "devices",
                    "mapped_bytes", "memory_bytes", "lease_seconds", "lease_remaining_seconds",
                    "watch_streams", "fds"):
            value = data[key]
            if isinstance(value, list):
                value = ", ".join(map(str, value)) or "-"
            click.echo(f"{key}: {'-' if value is None else value}")
        print_table(["IOMMUFD", "OBJECTS", "AREAS", "MAPPED"],
                    [(c.iommufd, c.objects, c.areas, _size(c.mapped_bytes)) for c in s.contexts])

    app.emit(data, table)
