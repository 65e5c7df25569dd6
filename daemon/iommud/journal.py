"""The durable journal: an append-only log of operations written ahead of
their effect, and snapshots that bound how much of it a restart replays.

Files, for a journal at PATH (the `journal` setting):
- PATH: the log. A header names the snapshot it continues from and the
  first sequence number it holds; then one record per row.
- PATH.snap: the latest snapshot: the whole state as of one sequence number.
- PATH.lock: held (flock) by the one daemon using the journal.
All are created 0600, never through a symlink, in a directory only the
daemon's uid may write (server.check_private_dir).

Rows (each with its own CRC-32 and sequence number; a damaged row, header
or snapshot is refused with a message naming it, never loaded silently):
- OP: a state-changing call, written and made durable *before* the handler
  runs (write-ahead). If the write fails (ENOSPC, EIO) the call is refused
  and nothing changed.
- FAIL(seq): the call `seq` failed without an effect; replay skips it.
  Calls whose failure can leave an effect (a non-atomic unmap) get no FAIL
  row: replay reruns them, and they fail the same way, having done the same.
- FORGET(token): the session closed for good; replay closes it there.

Space: the log is preallocated ahead of its end (posix_fallocate), so an
OP that found room cannot fail for space afterwards, and FAIL/FORGET rows
come out of a reserve kept beyond the OP rows. When the disk is full an OP
is refused with ENOSPC; the daemon keeps serving reads and writes again as
soon as space frees.

Durability: `normal` writes each row to the OS (it survives kill -9 of the
daemon); `full` also fdatasyncs each row (it survives power loss).
"""
from __future__ import annotations

import errno as E
import fcntl
import hashlib
import json
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iommud.errors import IommuError
from iommud.stats import JournalStats
from iommud_wire.errnos import name_of as errno_name_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

SCHEMA = 2
LOG_MAGIC = b"IOMMUDJ2"
SNAP_MAGIC = b"IOMMUDS2"
ROW_MAGIC = 0x4A52  # "RJ"
#: Header: magic, schema, snapshot id, snapshot seq, first seq, fingerprint (32 bytes), crc.
_HEADER = struct.Struct("<8sIQQQ32sI")
HEADER_SIZE = 128
#: Row: magic u16, kind u8, pad u8, payload length u32, crc u32, seq u64.
_ROW = struct.Struct("<HBBIIQ")
OP, FAIL, FORGET = 1, 2, 3
_KIND_NAMES = {OP: "op", FAIL: "fail", FORGET: "forget"}
#: Preallocation step, and the room kept beyond the OP rows for FAIL and
#: FORGET rows (written after an effect, so they must not fail for space).
CHUNK = 1 << 20
RESERVE = 64 << 10
MAX_ROW = 64 << 20


class JournalError(RuntimeError):
    """The journal cannot be used: damaged, missing a part, or in use."""


class JournalMismatch(JournalError):
    """The journal was written under another topology or configuration."""


@dataclass(frozen=True)
class Record:
    seq: int
    token: str
    identity: str
    method: str
    request: bytes
    fail_nth: int = 0


def _str(data: bytes, at: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", data, at)
    return data[at + 4:at + 4 + n].decode(), at + 4 + n


def _bytes(data: bytes, at: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("<I", data, at)
    return data[at + 4:at + 4 + n], at + 4 + n


def _pack(*fields: bytes | str) -> bytes:
    out = bytearray()
    for f in fields:
        raw = f.encode() if isinstance(f, str) else f
        out += struct.pack("<I", len(raw)) + raw
    return bytes(out)


def _row_crc(kind: int, length: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(struct.pack("<BIQ", kind, length, seq) + payload)


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _fsync_dir(path: str) -> None:
    dirfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def _open_for_release(path: str) -> int:
    """An fd on `path`'s file, so that replacing the name does not free the
    file yet (-1 when there is none)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return -1


def _close_aside(*fds: int) -> None:
    """Close fds (the last holders of replaced files) on a short-lived
    thread, which frees their blocks; -1 is skipped."""
    held = [fd for fd in fds if fd >= 0]
    if not held:
        return

    def close() -> None:
        for fd in held:
            os.close(fd)

    try:
        threading.Thread(target=close, name="iommud-journal-close", daemon=True).start()
    except RuntimeError:         # no thread to be had (interpreter shutdown): close here
        close()


class PendingSnapshot:
    """A snapshot being written: its state, the row it was taken at, and its
    two files (the snapshot and the fresh log after it), not yet in place.
    `write` touches only these files, so it may run off the event loop."""

    def __init__(self, journal: Journal, state: bytes | Sequence[bytes | memoryview]) -> None:
        self.journal = journal
        #: The body, in parts written one after the other (snapshot.dump's:
        #: immutable, so that `write` may read them off the loop).
        self.parts: list[bytes | memoryview] = [state] if isinstance(state, bytes) \
            else list(state)
        self.size = sum(len(part) for part in self.parts)
        self.seq = journal.last_seq
        self.end = journal._end                   # where the rows after `seq` start
        self.snap_id = int.from_bytes(os.urandom(8), "little") or 1
        self.snap_tmp = journal.path + ".snap.tmp"
        self.log_tmp = journal.path + ".tmp"
        self.log_fd = -1
        self.copied = 0                             # bytes of rows already in the fresh log

    def write(self) -> None:
        """Write and sync the snapshot file and the fresh log's header."""
        if self.journal.memory:
            return
        for tmp in (self.snap_tmp, self.log_tmp):
            if os.path.lexists(tmp):
                os.unlink(tmp)
        crc = 0
        for part in self.parts:
            crc = zlib.crc32(part, crc)
        body = struct.pack("<8sQQQI", SNAP_MAGIC, self.snap_id, self.seq, self.size,
                           crc).ljust(40, b"\0")
        fd = _open_private(self.snap_tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            for chunk in (body, *self.parts):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.log_fd = _open_private(self.log_tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        os.pwrite(self.log_fd, self.journal._header(self.snap_id, self.seq, self.seq + 1), 0)
        # The rows appended since the snapshot was taken, as far as they go
        # now (the loop appends whole rows before it moves the end; finish
        # copies the few that come after this).
        self.copied = self.journal._copy_rows(self.end, self.journal._end, self.log_fd,
                                              HEADER_SIZE)
        os.fsync(self.log_fd)

    def abandon(self) -> None:
        """Forget this snapshot; the journal stays as it was."""
        if self.journal._pending is self:
            self.journal._pending = None
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1
        for tmp in (self.snap_tmp, self.log_tmp):
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


class Journal:
    def __init__(self, path: str, sync: str = "normal",
                 host_methods: frozenset[str] = frozenset()) -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"journal_sync must be normal or full, not {sync!r}")
        self.path = path
        self.sync = sync
        #: Methods whose effects belong to the host, not to the session that
        #: made them: a FORGET leaves them in effect (the op table's admin rows).
        self.host_methods = host_methods
        #: Tokens of sessions that are never journaled, because they cannot
        #: outlive the daemon (the raw uAPI transport's, uapi_transport.py).
        self.ephemeral: set[str] = set()
        #: True while the journal is replayed: nothing is written then.
        self.replaying = False
        self.memory = path == ":memory:"
        self._fd = -1
        self._lock_fd = -1
        self._end = HEADER_SIZE          # where the next row goes
        self._allocated = 0              # bytes preallocated
        self._seq = 0                    # the last sequence number used
        self._rows = 0                   # rows in the log since its snapshot
        self._fingerprint = b"\0" * 32
        self._snap_id = 0
        self._snap_seq = 0
        self._first_seq = 1
        self._header_fp = self._fingerprint
        self._pending: PendingSnapshot | None = None
        #: Rows, write and sync latencies, refusals, snapshots (metrics.py).
        self.stats = JournalStats()
        if self.memory:
            self._mem: list[tuple[int, bytes]] = []
            return
        self._lock()

    # -- opening ------------------------------------------------------------------------------

    def _lock(self) -> None:
        fd = _open_private(self.path + ".lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise JournalError(f"the journal {self.path} is in use by another daemon "
                               f"(pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    @staticmethod
    def fingerprint(**facts: object) -> str:
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()

    def bind(self, fingerprint: str) -> None:
        """Open the journal written under `fingerprint` (or start one);
        refuse one written under another topology or configuration, or one
        that is damaged or missing a part."""
        self._fingerprint = bytes.fromhex(fingerprint)
        if self.memory:
            return
        exists = os.path.lexists(self.path)
        snap = self.path + ".snap"
        if exists:
            with open(self.path, "rb") as fh:
                head = fh.read(16)
            if head.startswith(b"SQLite format 3"):
                raise JournalError(f"{self.path} was written by an older iommud (SQLite); move "
                                   f"it aside to start with an empty journal")
            self._fd = _open_private(self.path, os.O_RDWR)
            self._read_header()
            snap_id, snap_seq = self.snapshot_info()
            if self._snap_id and not snap_id:
                raise JournalError(f"{self.path} continues from snapshot {self._snap_id:#x} "
                                   f"(row {self._snap_seq}), but {snap} is missing")
            if snap_id and snap_id != self._snap_id:
                # A crash between the two renames of write_snapshot: a newer
                # snapshot, and the old log, whose rows after it still count.
                if snap_seq < self._snap_seq or snap_seq + 1 < self._first_seq:
                    raise JournalError(f"{snap} (row {snap_seq}) and {self.path} (rows from "
                                       f"{self._first_seq}) do not reach each other")
                self._snap_id, self._snap_seq = snap_id, snap_seq
            if self._header_fp != self._fingerprint and self._has_state():
                raise JournalMismatch(
                    f"the journal {self.path} was written under another topology or "
                    f"configuration; start with the same settings, or move the journal aside "
                    f"to start empty")
            self._scan()
            if self._header_fp != self._fingerprint:
                self._rewrite_header(self._snap_id, self._snap_seq, self._first_seq)
        else:
            if os.path.lexists(snap):
                raise JournalError(f"{snap} exists but the log {self.path} is missing; the rows "
                                   f"after the snapshot are lost: restore the log or move the "
                                   f"snapshot aside")
            self._fd = _open_private(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            self._rewrite_header(0, 0, 1)
            self._end = HEADER_SIZE

    def _has_state(self) -> bool:
        return bool(self._snap_id) or (os.fstat(self._fd).st_size > HEADER_SIZE and \
            os.pread(self._fd, 2, HEADER_SIZE) == struct.pack("<H", ROW_MAGIC))

    def _read_header(self) -> None:
        raw = os.pread(self._fd, HEADER_SIZE, 0)
        if len(raw) < _HEADER.size:
            raise JournalError(f"{self.path}: the header is cut short ({len(raw)} bytes)")
        magic, schema, snap_id, snap_seq, first, fp, crc = _HEADER.unpack_from(raw)
        if magic != LOG_MAGIC:
            raise JournalError(f"{self.path} is not an iommud journal (bad magic)")
        if zlib.crc32(raw[:_HEADER.size - 4]) != crc:
            raise JournalError(f"{self.path}: the header's checksum does not match")
        if schema != SCHEMA:
            raise JournalError(f"{self.path}: journal schema {schema}, this iommud reads "
                               f"{SCHEMA}")
        self._snap_id, self._snap_seq, self._first_seq, self._header_fp = snap_id, snap_seq, \
            first, fp

    def _header(self, snap_id: int, snap_seq: int, first: int) -> bytes:
        body = _HEADER.pack(LOG_MAGIC, SCHEMA, snap_id, snap_seq, first, self._fingerprint, 0)
        body = body[:-4] + struct.pack("<I", zlib.crc32(body[:-4]))
        return body.ljust(HEADER_SIZE, b"\0")

    def _rewrite_header(self, snap_id: int, snap_seq: int, first: int) -> None:
        os.pwrite(self._fd, self._header(snap_id, snap_seq, first), 0)
        os.fsync(self._fd)
        self._snap_id, self._snap_seq, self._first_seq = snap_id, snap_seq, first
        self._header_fp = self._fingerprint

    def _scan(self) -> None:
        """Find the end of the rows and check every checksum on the way."""
        size = os.fstat(self._fd).st_size
        self._allocated = size
        at, seq, rows = HEADER_SIZE, self._first_seq - 1, 0
        for _kind, rec_seq, _payload, at_next in self._rows_from(HEADER_SIZE, size):
            at, seq, rows = at_next, max(seq, rec_seq), rows + 1
        self._end, self._seq, self._rows = at, max(seq, self._snap_seq), rows

    def _rows_from(self, at: int, size: int) -> Iterator[tuple[int, int, bytes, int]]:
        while at + _ROW.size <= size:
            head = os.pread(self._fd, _ROW.size, at)
            magic, kind, _pad, length, crc, seq = _ROW.unpack(head)
            if magic == 0 and kind == 0 and length == 0:
                return                     # the preallocated, never written tail
            if magic != ROW_MAGIC or kind not in (OP, FAIL, FORGET) or length > MAX_ROW:
                raise JournalError(f"{self.path}: row at offset {at:#x} is damaged (bad row "
                                   f"header)")
            payload = os.pread(self._fd, length, at + _ROW.size)
            if len(payload) != length:
                raise JournalError(f"{self.path}: row {seq} at offset {at:#x} is cut short")
            if _row_crc(kind, length, seq, payload) != crc:
                raise JournalError(f"{self.path}: row {seq} at offset {at:#x} fails its "
                                   f"checksum")
            at += _ROW.size + length
            yield kind, seq, payload, at

    # -- writing -------------------------------------------------------------------------------

    def _append(self, kind: int, payload: bytes, reserve: int) -> int:
        """Write one row; `reserve` bytes must stay free beyond it. Raises
        IommuError(ENOSPC or EIO) with nothing written when there is no room."""
        self._seq += 1
        seq = self._seq
        crc = _row_crc(kind, len(payload), seq, payload)
        row = _ROW.pack(ROW_MAGIC, kind, 0, len(payload), crc, seq) + payload
        stats = self.stats
        if self.memory:
            self._mem.append((kind, row))
            self._rows += 1
            stats.rows[_KIND_NAMES[kind]] = stats.rows.get(_KIND_NAMES[kind], 0) + 1
            return seq
        try:
            started = time.perf_counter()
            need = self._end + len(row) + reserve
            if need > self._allocated:
                grow = max(CHUNK, need - self._allocated)
                os.posix_fallocate(self._fd, self._allocated, grow)
                self._allocated += grow
            written = os.pwrite(self._fd, row, self._end)
            if written != len(row):
                # Cut short (a file-size limit): unmake the part written, so
                # the log still ends at the last whole row.
                os.pwrite(self._fd, b"\0" * min(written, _ROW.size), self._end)
                raise OSError(E.ENOSPC, os.strerror(E.ENOSPC))
            wrote = time.perf_counter()
            stats.write_seconds.observe(wrote - started)
            if self.sync == "full":
                os.fdatasync(self._fd)
                stats.fsync_seconds.observe(time.perf_counter() - wrote)
        except OSError as exc:
            self._seq -= 1
            # Out of room in any form (a full disk, a quota, a file-size
            # limit) is ENOSPC to the caller: it clears when room is made.
            number = E.ENOSPC if exc.errno in (E.ENOSPC, E.EDQUOT, E.EFBIG) else E.EIO
            name = errno_name_of(number)
            stats.errors[name] = stats.errors.get(name, 0) + 1
            raise IommuError(number, f"The journal could not record the call "
                             f"({os.strerror(exc.errno or E.EIO)}); nothing was changed.") from exc
        self._end += len(row)
        self._rows += 1
        stats.rows[_KIND_NAMES[kind]] = stats.rows.get(_KIND_NAMES[kind], 0) + 1
        return seq

    def begin(self, token: str, method: str, request: bytes, identity: str = "",
              fail_nth: int = 0) -> int:
        """Write an OP row ahead of its effect; returns its seq (0 for an
        ephemeral session, which is never journaled)."""
        if token in self.ephemeral or self.replaying:
            return 0
        payload = _pack(token, identity, method, request) + struct.pack("<I", fail_nth)
        return self._append(OP, payload, RESERVE)

    def failed(self, seq: int, errno_value: int) -> None:
        """The call `seq` failed with nothing changed: replay skips it."""
        if seq:
            try:
                self._append(FAIL, struct.pack("<QI", seq, errno_value), 0)
            except IommuError:
                pass  # without it replay reruns the call, which fails the same way

    def record(self, token: str, method: str, request: bytes, identity: str = "") -> None:
        """An OP row for an effect already made (journal-only tools, benches)."""
        self.begin(token, method, request, identity)

    def forget_session(self, token: str) -> None:
        """The session closed for good: on replay it is closed at this point."""
        if token in self.ephemeral or self.replaying:
            return
        try:
            self._append(FORGET, _pack(token), 0)
        except IommuError:
            pass  # it comes back on restart and is reaped again

    # -- reading -------------------------------------------------------------------------------

    def rows(self) -> Iterator[tuple[int, int, bytes]]:
        """(kind, seq, payload) of every row after the snapshot, in order."""
        if self.memory:
            for kind, row in self._mem:
                yield kind, _ROW.unpack_from(row)[5], row[_ROW.size:]
            return
        for kind, seq, payload, _at in self._rows_from(HEADER_SIZE, self._end):
            if seq > self._snap_seq:
                yield kind, seq, payload

    def records(self) -> Iterator[Record]:
        """The OP rows to replay: those after the snapshot that did not fail.
        FORGET rows come through as Record(method="") for the replayer."""
        failed: set[int] = set()
        rows = list(self.rows())
        for kind, _seq, payload in rows:
            if kind == FAIL:
                failed.add(struct.unpack_from("<Q", payload)[0])
        for kind, seq, payload in rows:
            if kind == OP and seq not in failed:
                token, at = _str(payload, 0)
                identity, at = _str(payload, at)
                method, at = _str(payload, at)
                request, at = _bytes(payload, at)
                (fail_nth,) = struct.unpack_from("<I", payload, at)
                yield Record(seq, token, identity, method, request, fail_nth)
            elif kind == FORGET:
                token, _ = _str(payload, 0)
                yield Record(seq, token, "", "", b"")

    def __len__(self) -> int:
        """Rows since the snapshot (what a restart replays)."""
        return self._rows

    @property
    def last_seq(self) -> int:
        return self._seq

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot_info(self) -> tuple[int, int]:
        """(id, seq) of the snapshot on disk, (0, 0) without one."""
        try:
            with open(self.path + ".snap", "rb") as fh:
                head = fh.read(32)
        except FileNotFoundError:
            return 0, 0
        if len(head) < 32 or head[:8] != SNAP_MAGIC:
            raise JournalError(f"{self.path}.snap is not an iommud snapshot (bad magic)")
        return struct.unpack_from("<QQ", head, 8)

    def load_snapshot(self) -> bytes | None:
        """The state bytes of the snapshot the log continues from, checked;
        None when the journal has none."""
        if self.memory or not self._snap_id:
            return None
        path = self.path + ".snap"
        with open(path, "rb") as fh:
            data = fh.read()
        if len(data) < 40 or data[:8] != SNAP_MAGIC:
            raise JournalError(f"{path} is not an iommud snapshot (bad magic)")
        snap_id, snap_seq, length, crc = struct.unpack_from("<QQQI", data, 8)
        body = data[40:]
        if len(body) != length:
            raise JournalError(f"{path}: {len(body)} bytes of state where the header names "
                               f"{length}: the snapshot is cut short")
        if zlib.crc32(body) != crc:
            raise JournalError(f"{path}: the state fails its checksum")
        if (snap_id, snap_seq) != (self._snap_id, self._snap_seq):
            raise JournalError(f"{path} changed under the daemon (snapshot {snap_id:#x})")
        return body

    def write_snapshot(self, state: bytes | Sequence[bytes | memoryview]) -> None:
        """Make `state` (the whole state as of the last row) the snapshot,
        and start a fresh log after it, all at once (a clean stop)."""
        pending = self.begin_snapshot(state)
        try:
            pending.write()
        except BaseException:
            pending.abandon()
            raise
        self.finish_snapshot(pending)

    def begin_snapshot(self, state: bytes | Sequence[bytes | memoryview]) -> PendingSnapshot:
        """A snapshot of `state`, taken as of the last row. Its files are
        written by `PendingSnapshot.write`, which may run in another thread
        while rows go on being appended here; `finish_snapshot` then makes
        it the journal's. One at a time."""
        if self._pending is not None:
            raise JournalError("a snapshot is already being written")
        pending = PendingSnapshot(self, state)
        self._pending = pending
        return pending

    def finish_snapshot(self, pending: PendingSnapshot) -> None:
        """Make a written snapshot the journal's: the rows appended since it
        was taken move to its fresh log, then the files change places. Each
        step is durable before the next, and a crash anywhere leaves a
        snapshot and a log that reach each other (see bind)."""
        assert pending is self._pending
        self._pending = None
        self.stats.snapshots += 1
        if self.memory:
            self._mem = [(k, row) for k, row in self._mem
                         if _ROW.unpack_from(row)[5] > pending.seq]
            self._rows = len(self._mem)
            return
        # On the loop: only the rows appended while the files were written,
        # and two renames. The rows need no sync beyond what they had in the
        # old log (`normal`: none; `full`: one here); the snapshot and the
        # header were synced by write.
        # The files the renames replace are held open until a thread of
        # their own closes them: freeing a large file's blocks is the
        # filesystem's work (10 ms for a 29 MB snapshot and its old log),
        # which the loop must not wait for.
        old_snap = _open_for_release(self.path + ".snap")
        try:
            start = pending.end + pending.copied
            tail = self._copy_rows(start, self._end, pending.log_fd, HEADER_SIZE + pending.copied)
            if self.sync == "full":
                os.fsync(pending.log_fd)
            os.rename(pending.snap_tmp, self.path + ".snap")  # the old log still reaches it
        except OSError:
            _close_aside(old_snap)
            pending.abandon()
            raise
        os.rename(pending.log_tmp, self.path)
        if self.sync == "full":
            _fsync_dir(self.path)
        _close_aside(self._fd, old_snap)
        self._fd = pending.log_fd
        self._snap_id, self._snap_seq, self._first_seq = pending.snap_id, pending.seq, \
            pending.seq + 1
        self._header_fp = self._fingerprint
        self._end = HEADER_SIZE + pending.copied + tail
        self._allocated = os.fstat(self._fd).st_size
        self._rows = sum(1 for _ in self._rows_from(HEADER_SIZE, self._end))

    def _copy_rows(self, start: int, end: int, dst_fd: int, at: int) -> int:
        """Copy the log's bytes [start, end) (whole rows) to dst_fd at `at`;
        returns how many."""
        data = os.pread(self._fd, end - start, start) if end > start else b""
        view = memoryview(data)
        while view:
            done = os.pwrite(dst_fd, view, at)
            view, at = view[done:], at + done
        return len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
