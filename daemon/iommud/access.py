"""Who is calling, and what they may do.

A caller is known by one of two things: on the UNIX socket, the kernel's
credentials of the connecting process (read by the peer gate in rust_core at
accept, see rust_core/src/peer_gate.rs); on TCP with mutual TLS, the subject
CN of its client certificate. Plaintext TCP, allowed on loopback only, has
neither and is anonymous.

The policy:
- `allow_uids` / `allow_gids` restrict the UNIX socket to listed users and
  groups (primary or supplementary); others get EACCES on every call. Empty
  lists leave access to the socket's file mode, as before. Because a
  plaintext TCP listener would bypass them, the daemon refuses to start with
  both (see `check_listeners`).
- Admin RPCs change the host for every client (driver binds, hot-plug) and
  need an admin: a UNIX caller whose uid is in `admin_uids` (default: root
  and the daemon's own uid), or a TLS identity in `admin_identities`.
  Others get EPERM, as a non-root write to sysfs' driver bind file does.
- A session belongs to the identity that opened it: a TLS CN, or `uid:<n>`
  for a UNIX caller. Its token is honoured from that identity only.

The dispatcher runs the checks before the handler; journal replay skips
them, as it re-applies what was admitted once.
"""
from __future__ import annotations

import errno as E
import os
from dataclasses import dataclass, field

from iommud.errors import IommuError


@dataclass(frozen=True)
class Caller:
    """The caller of one RPC. `uid` is None off the UNIX socket."""

    tls_identity: str = ""
    pid: int | None = None
    uid: int | None = None
    gid: int | None = None
    groups: frozenset[int] = field(default_factory=frozenset)
    #: Journal replay: the identity the replayed row was admitted under.
    replayed: str = ""
    #: A process of the raw uAPI transport: `pid` names the mm whose memory
    #: a call maps and to which pinned pages are charged (files.mm_of).
    process: bool = False

    @property
    def identity(self) -> str:
        """What a session is bound to ("" for anonymous loopback TCP)."""
        if self.tls_identity:
            return self.tls_identity
        if self.replayed:
            return self.replayed
        return f"uid:{self.uid}" if self.uid is not None else ""

    def details(self) -> dict[str, object]:
        """The ErrorInfo metadata that names this caller."""
        out = {"identity": self.tls_identity, "uid": self.uid, "gid": self.gid, "pid": self.pid}
        return {k: v for k, v in out.items() if v not in (None, "")}

    def describe(self) -> str:
        if self.tls_identity:
            return f"TLS identity {self.tls_identity!r}"
        if self.uid is not None:
            return f"uid {self.uid} gid {self.gid} (pid {self.pid})"
        return "an anonymous TCP caller"


def parse_ids(text: str, setting: str) -> frozenset[int]:
    """A comma- or space-separated list of uids or gids."""
    out = set()
    for item in text.replace(",", " ").split():
        try:
            value = int(item, 0)
        except ValueError:
            raise ValueError(f"{setting}: {item!r} is not a number") from None
        if not 0 <= value < 2**32:
            raise ValueError(f"{setting}: {item} is out of range")
        out.add(value)
    return frozenset(out)


def parse_names(text: str) -> frozenset[str]:
    return frozenset(n.strip() for n in text.split(",") if n.strip())


class AccessPolicy:
    def __init__(self, allow_uids: str = "", allow_gids: str = "", admin_uids: str = "",
                 admin_identities: str = "") -> None:
        self.allow_uids = parse_ids(allow_uids, "allow_uids")
        self.allow_gids = parse_ids(allow_gids, "allow_gids")
        self.admin_uids = (parse_ids(admin_uids, "admin_uids") if admin_uids.strip()
                           else frozenset({0, os.geteuid()}))
        self.admin_identities = parse_names(admin_identities)

    @property
    def restricts_socket(self) -> bool:
        return bool(self.allow_uids or self.allow_gids)

    def check_listeners(self, plaintext_tcp: bool) -> None:
        if self.restricts_socket and plaintext_tcp:
            raise ValueError("allow_uids/allow_gids restrict the UNIX socket, and a plaintext "
                             "TCP listener would bypass them: configure TLS or drop tcp")

    def check_call(self, caller: Caller, method: str, admin: bool) -> None:
        """EACCES for a UNIX caller outside the allow lists; EPERM for a
        non-admin calling an admin operation (its op table row says so)."""
        if caller.uid is not None and self.restricts_socket and not (
                caller.uid in self.allow_uids or caller.gid in self.allow_gids
                or caller.groups & self.allow_gids):
            raise IommuError(E.EACCES, f"The caller, {caller.describe()}, is not among the "
                             "uids and gids allowed on this socket.", **caller.details())
        if admin and not self.is_admin(caller):
            raise IommuError(E.EPERM, f"{method} changes the host for every client and needs an "
                             f"admin; the caller is {caller.describe()}.", **caller.details())

    def is_admin(self, caller: Caller) -> bool:
        if caller.tls_identity:
            return caller.tls_identity in self.admin_identities
        return caller.uid is not None and caller.uid in self.admin_uids
