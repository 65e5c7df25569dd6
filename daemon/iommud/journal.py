"""The durable journal: every acknowledged state change, in an embedded
SQLite database, so that a daemon killed with SIGKILL comes back with every
session, context, binding, attachment, mapping and group claim its clients
were told about.

What is stored is the operation log, not a snapshot: one row per RPC that
succeeded and changes state, holding the session token, the method and the
request bytes. The one call that can fail after changing state, IOAS_UNMAP
(not atomic: a range whose end cuts an area fails after removing the whole
areas before it), is journaled as the unmap of what it did remove.
Recovery replays the rows in order through the same handlers that served
them. Replay is exact because every choice the daemon makes is
deterministic given the same prior state (lowest-free object ids and fd
numbers, first-fit IOVA allocation); the one random choice, a session's
token, is stored with its OpenSession row and forced on replay.

Invariants:
- A row is committed before the reply leaves the daemon. An operation the
  daemon crashed in the middle of was never acknowledged; it has no row and
  is absent after recovery, all of it, because nothing of the in-memory
  state outlives the process.
- When a session closes (CloseSession or lease expiry) its rows are deleted:
  a closed session's effects are all undone, so forgetting it is the same as
  replaying it and its close. Host-level rows (driver binds, hot-plug) outlive
  their session, as their effects do.
- A graceful stop keeps the rows: a restarted daemon gives live VMs their
  sessions back, and clients reconnect with their tokens within the lease.
- The journal is tied to the topology and the modes it was written under;
  a daemon started with a different one refuses it rather than diverge.

WAL mode with synchronous=NORMAL survives a process crash (the committed
pages are in the OS cache); `journal_sync = "full"` also survives power
loss at the cost of an fsync per operation.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

SCHEMA_VERSION = "1"


@dataclass(frozen=True)
class Record:
    seq: int
    token: str
    identity: str
    method: str
    request: bytes


class JournalMismatch(RuntimeError):
    """The journal was written under another topology or configuration."""


class Journal:
    def __init__(self, path: str, sync: str = "normal",
                 host_methods: frozenset[str] = frozenset()) -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"journal_sync must be normal or full, not {sync!r}")
        self.path = path
        #: Methods whose effects belong to the host, not to the session that
        #: made them: their rows outlive the session (the op table's admin rows).
        self.host_methods = host_methods
        #: Tokens of sessions that are never journaled, because they cannot
        #: outlive the daemon (the raw uAPI transport's, uapi_transport.py):
        #: record() drops their rows, a partial unmap's included.
        self.ephemeral: set[str] = set()
        # Autocommit mode: each record() is its own transaction, committed on return.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if path != ":memory:":
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise RuntimeError(f"SQLite refused WAL mode for {path} (got {mode})")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS ops (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                token TEXT NOT NULL,
                identity TEXT NOT NULL DEFAULT '',
                method TEXT NOT NULL,
                request BLOB NOT NULL);
            CREATE INDEX IF NOT EXISTS ops_token ON ops(token);
        """)

    @staticmethod
    def fingerprint(**facts: object) -> str:
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()

    def bind(self, fingerprint: str) -> None:
        """Tie an empty journal to `fingerprint`, or check that a used one matches."""
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not rows or not self._db.execute("SELECT 1 FROM ops LIMIT 1").fetchone():
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM meta")
            self._db.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [("schema", SCHEMA_VERSION), ("fingerprint", fingerprint)])
            self._db.execute("COMMIT")
            return
        if rows.get("schema") != SCHEMA_VERSION or rows.get("fingerprint") != fingerprint:
            raise JournalMismatch(
                f"the journal {self.path} was written under another topology or configuration "
                f"(schema {rows.get('schema')}); start with the same settings, or move the "
                f"journal aside to start empty")

    def record(self, token: str, method: str, request: bytes, identity: str = "") -> None:
        if token in self.ephemeral:
            return
        self._db.execute("INSERT INTO ops (token, identity, method, request) VALUES (?, ?, ?, ?)",
                         (token, identity, method, request))

    def forget_session(self, token: str) -> None:
        marks = ",".join("?" * len(self.host_methods))
        self._db.execute(f"DELETE FROM ops WHERE token = ? AND method NOT IN ({marks})",
                         (token, *sorted(self.host_methods)))

    def records(self) -> Iterator[Record]:
        cur = self._db.execute("SELECT seq, token, identity, method, request FROM ops ORDER BY seq")
        for row in cur:
            yield Record(*row)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM ops").fetchone()[0])

    def close(self) -> None:
        self._db.close()
