"""The raw uAPI transport: a SOCK_SEQPACKET UNIX socket that speaks the
kernel's ioctls (docs/uapi-transport.md), beside the gRPC socket.

Each connection is one emulated file of a process: an open of /dev/iommu,
/dev/vfio/vfio, /dev/vfio/N or /dev/vfio/devices/vfioN, or a file the daemon
made (a device fd from a group, a fault queue fd, a selftest access fd). Its first record is OPEN;
every later IOCTL record is decoded by kabi.py into the op table's request,
dispatched through the same Dispatcher as gRPC (access policy, session, fd,
fail-nth, handler, log), and answered with a REPLY carrying the kernel's
return value and the bytes it writes back. EOF is the file's release.

Sessions: one *raw session* per uid, opened through the op table when the
uid's first file opens and closed when its last file closes; each open
connection holds it alive (`streams`), so the lease reaper never takes it.
Raw sessions are never journaled (a connection cannot outlive the daemon, so
a restarted daemon has nothing to give back): their dispatcher's rows have
journal=False and their tokens are the journal's `ephemeral` ones.

Everything runs on the daemon's event loop: non-blocking sockets watched
with loop.add_reader, no thread per connection. A request is served to its
reply inside one reader callback unless it needs a NEED round trip, which
suspends only that connection. Hang-ups are served before any request
(`_drain_hangups`), so a process that closes a file and then asks about its
effect sees it, as a kernel's synchronous close gives.
"""
from __future__ import annotations

import array
import asyncio
import dataclasses
import errno as E
import fcntl
import mmap
import os
import pathlib
import secrets
import select
import socket
import stat
import struct
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from iommud import failnth, files, kabi
from iommud.access import Caller
from iommud.dispatch import Dispatcher
from iommud.errors import IommuError
from iommud.kabi import FileKind, GivenFd, Ioctl, Mem, Need, NewFile, ProtocolError, Reply
from iommud.logsetup import get_logger
from iommud.ops import TABLE
from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import Callable

    from iommud.call import Runtime
    from iommud.config import Config
    from iommud.fault import FaultFd, FaultQueue
    from iommud.host import Host
    from iommud.session import Session
    from iommud.viommu import Veventq, VeventqFd

log = get_logger("iommud.uapi")

# -- the wire format (docs/uapi-transport.md) ------------------------------------------------------

#: struct iommud_msg {u32 magic, u16 kind, u16 flags, u32 pid, u32 tid, u64 seq,
#: u64 cmd, u64 arg, u32 body_len, s32 result}: 48 bytes.
HDR = struct.Struct("<IHHIIQQQIi")
MAGIC = 0x31415549  # "IUA1"
OPEN, IOCTL, NEED, GIVE, REPLY, DESCRIBE, EVENT = 1, 2, 3, 4, 5, 6, 7
#: read() of a daemon-made event fd: `cmd` the count, `arg` the buffer.
READ = 8
#: write() of a fault queue's fd: `cmd` the count, `arg` the buffer.
WRITE = 9
#: mmap() of an iommufd: `cmd` the offset, `arg` the length, body {u32 prot,
#: u32 flags}; the REPLY's body is the region's bytes. munmap(): `cmd` the offset.
MMAP, MUNMAP = 10, 11
#: Header flags.
BODY_MEMFD = 1 << 0
TAIL_NONZERO = 1 << 1
#: IOAS_MAP: the caller's user range has a hole (a pin would fault).
USER_HOLE = 1 << 2
#: IOCTL: the caller's task has fail-nth armed; `result` carries N. Its REPLY
#: carries in `arg` what fail-nth reads afterwards (failnth.Walk.left).
FAIL_NTH = 1 << 3
#: REPLY on a vEVENTQ file: a doorbell (an empty EVENT) follows it at once;
#: the shim waits for it, so that poll() right after a read sees it.
BELL = 1 << 4
#: A body larger than this travels in a sealed memfd.
INLINE_MAX = 64 << 10
#: Item types: NEED/GIVE MEM, FD, WRITABLE; REPLY WRITE, COPY, NEWFD.
ITEM_MEM, ITEM_FD, ITEM_WRITABLE, ITEM_BACKING = 1, 2, 3, 4
ITEM_WRITE, ITEM_COPY, ITEM_NEWFD = 1, 2, 3
#: NEWFD flags: install O_CLOEXEC; the ioctl returns this fd's number.
NEWFD_CLOEXEC, NEWFD_RESULT = 1 << 0, 1 << 1

S_U32 = struct.Struct("<I")
#: NEED MEM / WRITABLE {u32 type, u32 len, u64 addr}; NEED FD {u32 type, s32 fd}.
S_NEED_RANGE = struct.Struct("<IIQ")
S_NEED_FD = struct.Struct("<Ii")
#: GIVE MEM {u32 type, s32 status, u32 len, bytes}; FD {u32 type, s32 status,
#: u64 file_token}; WRITABLE {u32 type, s32 status}.
S_GIVE_MEM = struct.Struct("<IiI")
S_GIVE_FD = struct.Struct("<IiQ")
S_GIVE_WRITABLE = struct.Struct("<Ii")
#: GIVE BACKING {u32 type, s32 status, u32 count}, then count segments {u64
#: offset, u64 length, u32 major, u32 minor, u64 inode, u64 file_offset, u32
#: flags (bit 0: a shared mapping), u32 pad}.
S_GIVE_BACKING = struct.Struct("<IiI")
S_SEGMENT = struct.Struct("<QQIIQQI4x")
SEGMENT_SHARED = 1 << 0
#: REPLY WRITE {u32 type, u32 len, u64 addr, bytes}; NEWFD {u32 type, u32 flags,
#: u64 addr, u64 file_token}.
S_WRITE = struct.Struct("<IIQ")
S_NEWFD = struct.Struct("<IIQQ")
#: REPLY COPY {u32 type, u32 len, u64 dst, u64 src}.
S_COPY = struct.Struct("<IIQQ")
#: A reply with one WRITE: its count and the item's header in one pack.
S_ONE_WRITE = struct.Struct("<IIIQ")
S_DESCRIBE = struct.Struct("<IIQ")
#: The reply to OPEN of PATH_PINS: u64 pinned pages, u64 locked pages.
S_PINS = struct.Struct("<QQ")
#: OPEN's path kind 16: not a file, the question ProcessPins answers.
PATH_PINS = 16
S_TOKEN = struct.Struct("<Q")

SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
ANC_SPACE = socket.CMSG_SPACE(16 * 4)
# Plain ints: the socket module's flag enums cost microseconds per operation.
_MSG_CMSG_CLOEXEC = int(socket.MSG_CMSG_CLOEXEC)
_MSG_TRUNCATED = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
_MSG_NOSIGNAL = int(socket.MSG_NOSIGNAL)
#: A memfd body must be sealed against shrinking and writing: then it is
#: shmem, whose reads never block or come up short, and its bytes cannot
#: change while they are read.
_BODY_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_WRITE
#: mmap(2)'s MAP_TYPE mask and MAP_SHARED_VALIDATE (not in the mmap module).
_MAP_TYPE, _MAP_SHARED_VALIDATE = 0x0F, 0x03
#: A connection that has not opened a file by then is closed.
OPEN_TIMEOUT = 30.0
#: How long accepting pauses when the daemon is out of fds.
ACCEPT_BACKOFF = 0.1
_CLOSE_OPS = {FileKind.IOMMU: ("CloseContext", "iommufd"),
              FileKind.CONTAINER: ("CloseContext", "iommufd"),
              FileKind.GROUP: ("CloseGroup", "group_fd"),
              FileKind.DEVICE: ("CloseDevice", "device_fd"),
              FileKind.GROUP_DEVICE: ("CloseDevice", "device_fd"),
              FileKind.ACCESS: ("CloseFd", "fd"),
              FileKind.VEVENTQ: ("CloseFd", "fd"),
              FileKind.FAULT: ("CloseFd", "fd"),
              FileKind.DMABUF: ("CloseFd", "fd")}


def socket_path(config: Config) -> pathlib.Path | None:
    """Where the raw socket listens: `uapi_socket`, relative to the directory
    of `socket` (the gRPC socket) unless absolute; None when disabled ("",
    or a relative path without a UNIX gRPC socket)."""
    spec = config.uapi_socket
    if not spec:
        return None
    path = pathlib.Path(spec)
    if path.is_absolute():
        return path
    if not config.socket:
        return None
    return pathlib.Path(config.socket).absolute().parent / path


# -- vfioN -----------------------------------------------------------------------------------------


class CdevNumbers:
    """The N of /dev/vfio/devices/vfioN: a device has one while it is bound
    to vfio-pci, as its VFIO cdev exists only then. At start the devices on
    vfio-pci are numbered 0, 1, ... in PCI address order; a device that
    binds to vfio-pci later (or is hot-added on it) takes the lowest free
    number, in the order of the host's events, and a device leaving vfio-pci
    frees its number, as the kernel's cdev minor allocation does."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._by_name: dict[str, int] = {}
        self._by_number: dict[int, str] = {}
        self._events = host.subscribe()
        for name in sorted(host.devices):
            self._update(name)

    def _update(self, name: str) -> None:
        bound = self._host.bound_driver.get(name) == "vfio-pci"
        number = self._by_name.get(name)
        if bound and number is None:
            number = 0
            while number in self._by_number:
                number += 1
            self._by_name[name], self._by_number[number] = number, name
        elif not bound and number is not None:
            del self._by_name[name], self._by_number[number]

    def refresh(self) -> None:
        """Catch up with the host: its events in order, then every device
        (events a slow queue dropped)."""
        while True:
            try:
                event = self._events.get_nowait()
            except asyncio.QueueEmpty:
                break
            if event.device:
                self._update(event.device)
        for name in list(self._by_name):
            self._update(name)
        for name in sorted(self._host.devices):
            self._update(name)

    def device(self, number: int) -> str | None:
        self.refresh()
        return self._by_number.get(number)

    def number(self, name: str) -> int | None:
        self.refresh()
        return self._by_name.get(name)

    def close(self) -> None:
        self._host.unsubscribe(self._events)


# -- sessions, files, connections -----------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class RawSession:
    """The raw session of one uid: its files hold it open."""

    uid: int
    token: str
    sess: Session
    #: A file token given for an fd argument -> its fd number, when the file
    #: is an fd of this session (kabi.Ioctl.resolve).
    resolve: Callable[[int], int | None]
    #: A real fd a process passed -> a session fd of the same file
    #: (kabi.Ioctl.adopt).
    adopt: Callable[[int], int]
    files: int = 0


@dataclasses.dataclass(eq=False)
class RawFile:
    """An emulated file: one connection."""

    kind: FileKind
    #: Its fd number in the raw session (0 for a file that is no fd there).
    fd: int
    #: DESCRIBE's N: the group, the cdev number, the fault object's id.
    n: int
    token: int
    raw: RawSession
    #: Holds the raw session open (every file with an fd in it).
    counted: bool = True


class Conn:
    """One connection of the raw socket."""

    __slots__ = ("caller", "closed", "fd", "file", "outq", "pending", "received", "server",
                 "sock", "token", "walk")

    def __init__(self, server: UapiServer, sock: socket.socket, caller: Caller) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        #: The peer's credentials at accept (SO_PEERCRED), with the pid of
        #: the last message.
        self.caller = caller
        self.file: RawFile | None = None
        #: The raw session's token, once the file is open.
        self.token = ""
        #: An ioctl waiting for its GIVE: (seq, codec flow, what it needs).
        self.pending: tuple[int, kabi.Flow, list[Need]] | None = None
        #: Records the socket would not take yet, with their fds.
        self.outq: deque[tuple[list[bytes], list[int]]] = deque()
        self.closed = False
        #: The fail-nth walk of the ioctl being served (header FAIL_NTH).
        self.walk: failnth.Walk | None = None
        #: The fds the record being served brought (SCM_RIGHTS, after a body
        #: memfd): a GIVE's real fds, in item order; closed after it.
        self.received: list[int] = []

    def call(self, name: str, request: Any) -> Any:
        """Dispatch one operation for this file's caller: the raw transport's
        rows are synchronous, so the dispatcher's coroutine completes on its
        first step, inside this reader callback."""
        server = self.server
        coro = server.dispatcher.call(server.ops[name], request, self.caller, self.token)
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        coro.close()
        raise RuntimeError(f"{name} awaited: the raw transport serves synchronous operations")


# -- the server ------------------------------------------------------------------------------------


class UapiServer:
    def __init__(self, rt: Runtime, path: pathlib.Path, mode: int) -> None:
        self.rt = rt
        self.path = path
        self.mode = mode
        # The op table without journaling: raw sessions are never journaled.
        self.ops = {name: replace(op, journal=False) for name, op in TABLE.items()}
        self.dispatcher = Dispatcher(rt, self.ops, offload=False)
        for name in _USED_OPS:
            assert not self.ops[name].is_async, f"{name} must be synchronous for the raw transport"
        self.limit = rt.config.max_message_bytes
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[int, Conn] = {}
        self._files: dict[int, RawFile] = {}
        self._raw: dict[int, RawSession] = {}
        self._hup = select.epoll()
        self._draining = False
        self._cdev = CdevNumbers(rt.host)
        self._rbuf = bytearray(HDR.size + INLINE_MAX)
        self._rview = memoryview(self._rbuf)
        self._bufs = [self._rbuf]
        #: vEVENTQ connections: the unsubscribe of their queue's listener,
        #: and those with a doorbell (an empty EVENT) the shim has not drained.
        self._bells: dict[int, Callable[[], None]] = {}
        self._rung: set[int] = set()

    # -- listening -----------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (the socket's mode set before anyone can connect)."""
        self._loop = asyncio.get_running_loop()
        _prepare(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK
                                 | socket.SOCK_CLOEXEC)
        try:
            listener.bind(str(self.path))
            os.chmod(self.path, self.mode)
            listener.listen(512)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._accept)
        log.info("uapi.listening", path=str(self.path))

    def stop(self) -> None:
        """Close every connection (releasing its file, as process exit would)
        and the listener; remove the socket file."""
        if self._listener is not None and self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            self.path.unlink(missing_ok=True)
        for conn in list(self._conns.values()):
            self._close(conn)
        self._hup.close()
        self._cdev.close()

    def _accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: the peer waits in the backlog, and the
                # loop does not spin on a listener it cannot serve.
                log.warning("uapi.accept_failed", error=str(exc))
                fd = self._listener.fileno()
                self._loop.remove_reader(fd)
                self._loop.call_later(ACCEPT_BACKOFF, self._resume_accept)
                return
            sock.setblocking(False)
            try:
                pid, uid, gid = struct.unpack("<iII", sock.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            except OSError:
                sock.close()
                continue
            caller = Caller(pid=pid, uid=uid, gid=gid, groups=_peer_groups(sock), process=True)
            conn = Conn(self, sock, caller)
            self._conns[conn.fd] = conn
            self._loop.add_reader(conn.fd, self._readable, conn)
            self._loop.call_later(OPEN_TIMEOUT, self._open_timeout, conn)

    def _resume_accept(self) -> None:
        if self._listener is not None and self._loop is not None:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _open_timeout(self, conn: Conn) -> None:
        if not conn.closed and conn.file is None:
            self._refuse(conn, f"no OPEN within {OPEN_TIMEOUT:g} s")

    # -- receiving -------------------------------------------------------------------------------

    def _readable(self, conn: Conn) -> None:
        """Serve one record of `conn` (the loop calls again while more wait:
        one record per call spares the EAGAIN of a second read, and a serial
        caller never has two)."""
        if conn.closed or conn.outq:
            return
        rview = self._rview
        try:
            n, anc, mflags, _ = conn.sock.recvmsg_into(self._bufs, ANC_SPACE, _MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        fds = _received_fds(anc) if anc else []
        try:
            if n == 0:
                self._close(conn)  # EOF: the last copy of the peer's fd is closed
                return
            if n < HDR.size or mflags & _MSG_TRUNCATED:
                self._refuse(conn, f"a record of {n} bytes, flags {mflags:#x}")
                return
            magic, kind, flags, pid, _tid, seq, cmd, arg, body_len, nth = HDR.unpack_from(rview)
            if magic != MAGIC:
                self._refuse(conn, f"bad magic {magic:#x}")
                return
            if flags & BODY_MEMFD:
                body = self._memfd_body(fds, body_len, n)
                if body is None:
                    self._refuse(conn, "a memfd body that cannot be read")
                    return
            elif n - HDR.size != body_len:
                self._refuse(conn, f"body_len {body_len} in a record of {n} bytes")
                return
            else:
                body = bytes(rview[HDR.size:n])
            if pid and pid != conn.caller.pid:
                conn.caller = replace(conn.caller, pid=pid)
            if not self._draining and len(self._conns) > 1:
                self._drain_hangups(conn)
            conn.received = fds[1:] if flags & BODY_MEMFD else fds
            self._record(conn, kind, flags, seq, cmd, arg, body, nth)
        except Exception:  # a daemon bug: this connection goes, the daemon serves on
            log.exception("uapi.bug", during="record", pid=conn.caller.pid)
            self._close(conn)
        finally:
            conn.received = []
            for fd in fds:
                os.close(fd)

    def _memfd_body(self, fds: list[int], body_len: int, n: int) -> bytes | None:
        """A body that came in a memfd: its first body_len bytes, read with
        pread (a peer that shrinks it gets a short read, never a SIGBUS)."""
        if n != HDR.size or not fds or body_len > self.limit:
            return None
        parts: list[bytes] = []
        offset = 0
        try:
            if fcntl.fcntl(fds[0], fcntl.F_GET_SEALS) & _BODY_SEALS != _BODY_SEALS \
                    or os.fstat(fds[0]).st_size < body_len:
                return None
            while offset < body_len:
                chunk = os.pread(fds[0], min(body_len - offset, 1 << 20), offset)
                if not chunk:
                    return None
                parts.append(chunk)
                offset += len(chunk)
        except OSError:
            return None
        return b"".join(parts)

    def _record(self, conn: Conn, kind: int, flags: int, seq: int, cmd: int, arg: int,
                body: bytes, nth: int = 0) -> None:
        if conn.file is None:
            if kind == OPEN:
                self._open(conn, seq, cmd, arg, body)
            else:
                self._send_reply(conn, seq, -E.EPROTO)
                self._refuse(conn, f"a first record of kind {kind}, not OPEN")
            return
        if kind == IOCTL:
            if conn.pending is not None:
                self._abandon(conn)
            if flags & FAIL_NTH:
                # The task's fail-nth is armed: the N-th step of this ioctl
                # fails, the steps it reaches count down N (failnth.py). A
                # daemon without injection refuses it, counting nothing.
                conn.walk = failnth.Walk(max(nth, 1))
                if not self.rt.config.debug_fail_nth:
                    self._send_reply(conn, seq, -E.EPERM)
                    return
            self._ioctl(conn, seq, cmd, arg, body, flags)
        elif kind == GIVE:
            self._give(conn, seq, body)
        elif kind == DESCRIBE:
            f = conn.file
            self._send_reply(conn, seq, 0, [S_DESCRIBE.pack(f.kind, f.n, f.token)])
        elif kind == READ:
            if conn.pending is not None:
                self._abandon(conn)
            self._read(conn, seq, cmd, arg)
        elif kind == WRITE:
            if conn.pending is not None:
                self._abandon(conn)
            self._read(conn, seq, cmd, arg, write=True)
        elif kind in (MMAP, MUNMAP):
            if conn.pending is not None:
                self._abandon(conn)
            self._mmap(conn, seq, kind, cmd, arg, body)
        else:  # a second OPEN, or a daemon's kind from the shim
            self._send_reply(conn, seq, -E.EPROTO)

    def _drain_hangups(self, serving: Conn) -> None:
        """Release every file whose peer has hung up before serving a record:
        close() is synchronous in the kernel, so its effect must be visible to
        whatever the process does next, on any of its files."""
        events = self._hup.poll(0)
        if not events:
            return
        self._draining = True
        try:
            for fd, _ in events:
                conn = self._conns.get(fd)
                for _ in range(4096):  # the hung-up peer's records, then its EOF
                    if conn is None or conn is serving or conn.closed or conn.outq:
                        break
                    self._readable(conn)
        finally:
            self._draining = False

    # -- OPEN and DESCRIBE ------------------------------------------------------------------------

    def _open(self, conn: Conn, seq: int, cmd: int, arg: int, body: bytes) -> None:
        if len(body) != 4:
            self._send_reply(conn, seq, -E.EPROTO)
            self._refuse(conn, f"an OPEN body of {len(body)} bytes")
            return
        if cmd == PATH_PINS:
            self._pins(conn, seq, arg)
            return
        try:
            self.rt.access.check_call(conn.caller, "OPEN", False)
            raw = self._raw_session(conn)
            try:
                file = self._open_file(conn, raw, cmd, arg)
            except BaseException:
                if not raw.files:
                    self._close_raw(conn, raw)
                raise
        except IommuError as err:
            self._send_reply(conn, seq, -err.errno)
            self._close(conn)
            return
        except Exception:
            log.exception("uapi.bug", during="OPEN")
            self._send_reply(conn, seq, -E.EIO)
            self._close(conn)
            return
        self._adopt(conn, file)
        self._send_reply(conn, seq, 0, [S_TOKEN.pack(file.token)])

    def _pins(self, conn: Conn, seq: int, pid: int) -> None:
        """OPEN of path kind 16: a question, not a file. What iommufd charges
        process `pid` (its /proc/<pid>/status VmPin and VmLck, which the shim
        shows with IOMMUD_PRELOAD_PROC_STATUS=1): the reply's body is u64
        pinned pages, u64 locked pages; then the connection closes."""
        try:
            self.rt.access.check_call(conn.caller, "OPEN", False)
            r = conn.call("ProcessPins", pb.ProcessPinsRequest(pid=pid & 0xFFFF_FFFF))
        except IommuError as err:
            self._send_reply(conn, seq, -err.errno)
        else:
            self._send_reply(conn, seq, 0, [S_PINS.pack(r.pinned_pages, r.locked_pages)])
        self._close(conn)

    def _raw_session(self, conn: Conn) -> RawSession:
        uid = conn.caller.uid
        assert uid is not None
        raw = self._raw.get(uid)
        if raw is None:
            r = conn.call("OpenSession", pb.OpenSessionRequest(client_name=f"uapi:uid {uid}"))
            if self.rt.journal is not None:
                self.rt.journal.ephemeral.add(r.token)
            sess = self.rt.sessions.get(r.token)
            assert sess is not None
            raw = self._raw[uid] = RawSession(uid, r.token, sess, self._resolver(sess),
                                              self._adopter(sess))
        conn.token = raw.token
        return raw

    def _open_file(self, conn: Conn, raw: RawSession, cmd: int, arg: int) -> RawFile:
        """The open() of a path kind (docs/uapi-transport.md), through the op
        table. A node that does not exist is ENOENT: /dev/vfio/N exists while
        a member of group N is on vfio-pci, vfioN while its device is."""
        host = self.rt.host
        if cmd == FileKind.IOMMU:
            fd = conn.call("OpenContext", pb.OpenContextRequest()).iommufd
            return self._new_file(FileKind.IOMMU, fd, 0, raw)
        if cmd == FileKind.CONTAINER:
            fd = conn.call("OpenContainer", pb.OpenContainerRequest()).container_fd
            return self._new_file(FileKind.CONTAINER, fd, 0, raw)
        if cmd == FileKind.GROUP:
            if arg not in host.groups or not any(
                    host.bound_driver.get(d.name) == "vfio-pci" for d in host.members(arg)):
                raise IommuError(E.ENOENT, f"/dev/vfio/{arg} does not exist.")
            fd = conn.call("OpenGroup", pb.OpenGroupRequest(group=arg)).group_fd
            return self._new_file(FileKind.GROUP, fd, arg, raw)
        if cmd == FileKind.DEVICE:
            name = self._cdev.device(arg)
            if name is None:
                raise IommuError(E.ENOENT, f"/dev/vfio/devices/vfio{arg} does not exist.")
            fd = conn.call("OpenDevice", pb.OpenDeviceRequest(name=name)).device_fd
            return self._new_file(FileKind.DEVICE, fd, arg, raw)
        raise IommuError(E.EINVAL, f"OPEN of path kind {cmd}: no such kind.")

    def _new_file(self, kind: FileKind, fd: int, n: int, raw: RawSession,
                  counted: bool = True) -> RawFile:
        token = 0
        while not token or token in self._files:
            token = secrets.randbits(64)
        return RawFile(kind, fd, n, token, raw, counted)

    def _adopt(self, conn: Conn, file: RawFile) -> None:
        """The connection now is the file: it holds the raw session open and
        its hang-up is watched."""
        conn.file = file
        conn.token = file.raw.token
        self._files[file.token] = file
        if file.counted:
            file.raw.files += 1
            file.raw.sess.streams += 1
        self._hup.register(conn.fd, select.EPOLLRDHUP)
        log.debug("uapi.open", kind=file.kind.name, fd=file.fd, n=file.n, uid=file.raw.uid,
                  pid=conn.caller.pid)

    # -- IOCTL, NEED and GIVE -----------------------------------------------------------------------

    def _target(self, file: RawFile) -> Any:
        if file.kind is FileKind.CONTAINER:
            return file.raw.sess.context(file.fd)
        if file.kind is FileKind.DEVICE:
            return file.raw.sess.device_fd(file.fd)
        if file.kind in (FileKind.VEVENTQ, FileKind.FAULT):
            return file.raw.sess.fd_entry(file.fd)
        return None

    # -- READ, WRITE and doorbells on event files (vEVENTQs, fault queues) -----------------------

    def _read(self, conn: Conn, seq: int, count: int, buf: int, write: bool = False) -> None:
        """read() of a daemon-made file: a vEVENTQ's (kabi.veventq_read) or
        a fault queue's (kabi.fault_read); write() of a fault queue's
        (kabi.fault_write). A file without them is EINVAL, as vfs_read and
        vfs_write answer. The shim drained its doorbells before asking."""
        file = conn.file
        assert file is not None
        self._rung.discard(conn.fd)
        if write:
            codec = kabi.fault_write if file.kind is FileKind.FAULT else None
        else:
            codec = {FileKind.VEVENTQ: kabi.veventq_read,
                     FileKind.FAULT: kabi.fault_read}.get(file.kind)
        if codec is None:
            self._send_reply(conn, seq, -E.EINVAL)
            return
        try:
            x = Ioctl(buf, b"", file.fd, self._target(file), conn.call, self.limit,
                      file.raw.resolve)
            flow = codec(x, count)
        except IommuError as err:
            self._send_reply(conn, seq, -err.errno)
            return
        self._advance(conn, seq, flow, None)

    def _mmap(self, conn: Conn, seq: int, kind: int, offset: int, length: int,
              body: bytes) -> None:
        """mmap() and munmap() of an iommufd's region (IommufdMmap,
        IommufdMunmap); another file's mmap is ENODEV, as a socket's."""
        file = conn.file
        assert file is not None
        if file.kind not in (FileKind.IOMMU, FileKind.CONTAINER):
            self._send_reply(conn, seq, -E.ENODEV)
            return
        try:
            if kind == MUNMAP:
                conn.call("IommufdMunmap", pb.IommufdMunmapRequest(iommufd=file.fd,
                                                                   offset=offset))
                self._send_reply(conn, seq, 0)
                return
            if len(body) != 8:
                raise ProtocolError(f"an MMAP body of {len(body)} bytes")
            prot, flags = struct.unpack("<II", body)
            r = conn.call("IommufdMmap", pb.IommufdMmapRequest(
                iommufd=file.fd, offset=offset, length=length,
                shared=(flags & _MAP_TYPE) in (mmap.MAP_SHARED, _MAP_SHARED_VALIDATE),
                exec=bool(prot & mmap.PROT_EXEC)))
        except IommuError as err:
            self._send_reply(conn, seq, -err.errno)
            return
        except ProtocolError as exc:
            log.info("uapi.protocol", problem=str(exc), pid=conn.caller.pid)
            self._send_reply(conn, seq, -E.EPROTO)
            return
        self._send(conn, REPLY, seq, 0, bytes(r.data))

    def _watch_veventq(self, conn: Conn) -> None:
        """A new event file (a vEVENTQ's, a fault queue's) rings its doorbell
        whenever its queue has records and none is waiting: poll() on the
        shim's fd is then readable exactly while read() would return
        something."""
        queue = self._veventq_of(conn)
        if queue is not None:
            self._bells[conn.fd] = queue.subscribe(lambda: self._ring(conn))

    def _veventq_of(self, conn: Conn) -> Veventq | FaultQueue | None:
        """The queue behind an event file: a vEVENTQ, or a fault queue (its
        `deliver` holds what read() would take)."""
        file = conn.file
        if file is None or file.kind not in (FileKind.VEVENTQ, FileKind.FAULT):
            return None
        try:
            entry = file.raw.sess.fd_entry(file.fd)
        except IommuError:
            return None
        if file.kind is FileKind.FAULT:
            ffd = cast("FaultFd", entry)
            return None if ffd.closed else ffd.queue
        vfd = cast("VeventqFd", entry)
        return None if vfd.closed else vfd.queue

    def _ring(self, conn: Conn) -> None:
        if conn.closed or conn.fd in self._rung:
            return
        queue = self._veventq_of(conn)
        if queue is None or not queue.deliver:
            return
        self._rung.add(conn.fd)
        self._send(conn, EVENT, 0, 0, b"")

    def _ioctl(self, conn: Conn, seq: int, cmd: int, arg: int, body: bytes,
               flags: int) -> None:
        file = conn.file
        assert file is not None
        try:
            target = None if file.kind is FileKind.IOMMU else self._target(file)
            spec = kabi.lookup(file.kind, target, cmd, bool(self.rt.config.debug_selftest))
            if isinstance(spec, int):
                self._send_reply(conn, seq, -spec)
                return
            x = Ioctl(arg, body, file.fd, target, conn.call, self.limit, file.raw.resolve)
            x.user_hole = bool(flags & USER_HOLE)
            x.adopt = file.raw.adopt
            kabi.prepare(spec, x, bool(flags & TAIL_NONZERO))
            with failnth.walking(conn.walk):
                out = spec.codec(x)
        except IommuError as err:
            self._send_reply(conn, seq, -err.errno)
            return
        except ProtocolError as exc:
            log.info("uapi.protocol", problem=str(exc), pid=conn.caller.pid)
            self._send_reply(conn, seq, -E.EPROTO)
            return
        except Exception:
            log.exception("uapi.bug", cmd=hex(cmd))
            self._send_reply(conn, seq, -E.EIO)
            return
        if isinstance(out, Reply):
            self._finish(conn, seq, out)
        else:
            self._advance(conn, seq, out, None)

    @staticmethod
    def _adopter(sess: Session) -> Callable[[int], int]:
        def adopt(os_fd: int) -> int:
            """A file a process passed (SCM_RIGHTS) as a session fd, as fget
            holds it for a call: the daemon keeps its own reference to the
            file (files.host_file) while an area maps its pages."""
            try:
                file = files.host_file(os_fd)
            except OSError as exc:
                raise IommuError(exc.errno or E.EBADF, f"The file passed cannot be held: "
                                 f"{exc.strerror}.") from exc
            try:
                return sess.install(files.FileFd(file))
            except BaseException:
                file.get()
                file.put()
                raise

        return adopt

    def _resolver(self, sess: Session) -> Callable[[int], int | None]:
        files = self._files

        def resolve(token: int) -> int | None:
            """A file token given for an fd argument: its fd number, when it
            is an fd of the same raw session."""
            file = files.get(token)
            if file is None or file.raw.sess is not sess or not file.fd:
                return None
            return file.fd

        return resolve

    def _advance(self, conn: Conn, seq: int, flow: kabi.Flow, given: list[Any] | None) -> None:
        """Run a codec flow to its next NEED, or to its reply."""
        try:
            with failnth.walking(conn.walk):
                needs = next(flow) if given is None else flow.send(given)
        except StopIteration as stop:
            self._finish(conn, seq, stop.value)
            return
        except IommuError as err:
            self._send_reply(conn, seq, -err.errno)
            return
        except Exception:
            log.exception("uapi.bug", during="NEED")
            self._send_reply(conn, seq, -E.EIO)
            return
        conn.pending = (seq, flow, needs)
        parts = [S_U32.pack(len(needs))]
        for need in needs:
            if isinstance(need, kabi.FdArg):
                parts.append(S_NEED_FD.pack(ITEM_FD, need.fd))
            elif isinstance(need, kabi.Backing):
                parts.append(S_NEED_RANGE.pack(ITEM_BACKING, need.length, need.addr))
            else:
                item = ITEM_MEM if isinstance(need, Mem) else ITEM_WRITABLE
                parts.append(S_NEED_RANGE.pack(item, need.length, need.addr))
        self._send(conn, NEED, seq, 0, b"".join(parts))

    def _give(self, conn: Conn, seq: int, body: bytes) -> None:
        pending = conn.pending
        if pending is None:
            self._send_reply(conn, seq, -E.EPROTO)  # a GIVE nobody asked for
            return
        conn.pending = None
        pseq, flow, needs = pending
        try:
            if seq != pseq:
                raise ProtocolError(f"GIVE for seq {seq}, NEED was {pseq}")
            given = _parse_give(body, needs, conn.received)
        except ProtocolError as exc:
            flow.close()
            log.info("uapi.protocol", problem=str(exc), pid=conn.caller.pid)
            self._send_reply(conn, pseq, -E.EPROTO)
            return
        self._advance(conn, pseq, flow, given)

    def _abandon(self, conn: Conn) -> None:
        """A new request while a NEED is unanswered: the waiting ioctl fails
        with EPROTO (nothing of it was done: NEEDs come before the handler)."""
        assert conn.pending is not None
        seq, flow, _ = conn.pending
        conn.pending = None
        flow.close()
        self._send_reply(conn, seq, -E.EPROTO)

    def _finish(self, conn: Conn, seq: int, reply: Reply) -> None:
        new = reply.newfile
        if reply.copies:
            items = _write_items(reply.writes or [])
            items += [S_COPY.pack(ITEM_COPY, n, dst, src) for dst, src, n in reply.copies]
            self._send_reply(conn, seq, reply.result, items,
                             len(reply.writes or ()) + len(reply.copies))
            return
        if new is None:
            writes = reply.writes
            if writes is None:
                self._send(conn, REPLY, seq, reply.result, b"")
            elif len(writes) == 1:  # the common case: one struct written back
                addr, data = writes[0]
                self._send(conn, REPLY, seq, reply.result,
                           S_ONE_WRITE.pack(1, ITEM_WRITE, len(data), addr) + data)
            else:
                self._send_reply(conn, seq, reply.result, _write_items(writes), len(writes))
            return
        self._finish_newfile(conn, seq, reply, new)

    def _finish_newfile(self, conn: Conn, seq: int, reply: Reply, new: NewFile) -> None:
        """A reply that hands over a daemon-made file: a new connection whose
        other end travels with the reply (SCM_RIGHTS) for the shim to install."""
        src = conn.file
        assert src is not None and self._loop is not None
        try:
            # Two sockets, two open files: ours non-blocking, the shim's blocking.
            ours, theirs = socket.socketpair(socket.AF_UNIX,
                                             socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            ours.setblocking(False)
        except OSError as exc:
            if new.fd:  # give back the fd the handler installed
                self._release_fd(conn, new.kind, new.fd)
            self._send_reply(conn, seq, -(exc.errno or E.EMFILE))
            return
        file = self._new_file(new.kind, new.fd, new.n, src.raw, counted=bool(new.fd))
        child = Conn(self, ours, conn.caller)
        self._conns[child.fd] = child
        self._adopt(child, file)
        self._loop.add_reader(child.fd, self._readable, child)
        if new.kind in (FileKind.VEVENTQ, FileKind.FAULT):
            self._watch_veventq(child)
        flags = (NEWFD_CLOEXEC if new.cloexec else 0) | (NEWFD_RESULT if new.result else 0)
        writes = reply.writes or []
        items = _write_items(writes)
        items.append(S_NEWFD.pack(ITEM_NEWFD, flags, new.addr, file.token))
        try:
            self._send_reply(conn, seq, reply.result, items, len(writes) + 1, [theirs.fileno()])
        finally:
            theirs.close()

    # -- sending ------------------------------------------------------------------------------------

    def _send_reply(self, conn: Conn, seq: int, result: int, items: list[bytes] | None = None,
                    count: int | None = None, fds: list[int] | None = None) -> None:
        """A REPLY whose body is `count` items (a DESCRIBE's or OPEN's body
        when count is None)."""
        if items is None:
            body = b""
        elif count is None:
            body = b"".join(items)
        else:
            body = S_U32.pack(count) + b"".join(items)
        self._send(conn, REPLY, seq, result, body, fds)

    def _send(self, conn: Conn, kind: int, seq: int, result: int, body: bytes,
              fds: list[int] | None = None) -> None:
        if conn.closed:
            return
        if kind == REPLY and conn.fd in self._bells:
            # Whatever the reply, the shim drained the doorbells before its
            # request: ring again right after it while the queue has records,
            # and say so in the reply.
            self._rung.discard(conn.fd)
            queue = self._veventq_of(conn)
            bell = queue is not None and bool(queue.deliver)
            self._send_record(conn, kind, seq, result, body, fds, BELL if bell else 0)
            self._ring(conn)
            return
        self._send_record(conn, kind, seq, result, body, fds)

    def _send_record(self, conn: Conn, kind: int, seq: int, result: int, body: bytes,
                     fds: list[int] | None = None, hflags: int = 0) -> None:
        left = 0
        if conn.walk is not None and kind == REPLY:
            left, conn.walk = conn.walk.left, None
        if not fds and not conn.outq and len(body) <= INLINE_MAX:  # the common case
            try:
                conn.sock.send(HDR.pack(MAGIC, kind, hflags, 0, 0, seq, 0, left, len(body),
                                        result)
                               + body, _MSG_NOSIGNAL)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # EPIPE, ECONNRESET: the peer is gone
                self._close(conn)
                return
        owned: list[int] = []
        flags, size = hflags, len(body)
        if size > INLINE_MAX:
            try:
                owned.append(_sealed_memfd(body))
            except OSError:
                kind, result, body, size = REPLY, -E.ENOMEM, b"", 0
            else:
                flags, body = flags | BODY_MEMFD, b""
        header = HDR.pack(MAGIC, kind, flags, 0, 0, seq, 0, left, size, result)
        send_fds = owned + list(fds or ())
        if not conn.outq:
            try:
                self._sendmsg(conn, [header, body], send_fds)
                for fd in owned:
                    os.close(fd)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # EPIPE, ECONNRESET: the peer is gone
                for fd in owned:
                    os.close(fd)
                self._close(conn)
                return
        # The socket is full: keep the record (and dups of its fds) and stop
        # reading from this peer until it drains.
        kept = owned + [os.dup(fd) for fd in fds or ()]
        conn.outq.append(([header, body], kept))
        if len(conn.outq) == 1 and self._loop is not None:
            self._loop.remove_reader(conn.fd)
            self._loop.add_writer(conn.fd, self._writable, conn)

    @staticmethod
    def _sendmsg(conn: Conn, parts: list[bytes], fds: list[int]) -> None:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        conn.sock.sendmsg(parts, anc, _MSG_NOSIGNAL)

    def _writable(self, conn: Conn) -> None:
        assert self._loop is not None
        while conn.outq and not conn.closed:
            parts, fds = conn.outq[0]
            try:
                self._sendmsg(conn, parts, fds)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            conn.outq.popleft()
            for fd in fds:
                os.close(fd)
        if not conn.closed:
            self._loop.remove_writer(conn.fd)
            self._loop.add_reader(conn.fd, self._readable, conn)

    # -- closing ---------------------------------------------------------------------------------

    def _refuse(self, conn: Conn, why: str) -> None:
        """A peer that does not speak the protocol: its connection closes
        (releasing its file, if it has one)."""
        log.info("uapi.refused", problem=why, uid=conn.caller.uid, pid=conn.caller.pid)
        self._close(conn)

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        unsubscribe = self._bells.pop(conn.fd, None)
        if unsubscribe is not None:
            unsubscribe()
        self._rung.discard(conn.fd)
        self._conns.pop(conn.fd, None)
        if self._loop is not None:
            self._loop.remove_reader(conn.fd)
            if conn.outq:
                self._loop.remove_writer(conn.fd)
        if conn.file is not None:
            try:
                self._hup.unregister(conn.fd)
            except (OSError, ValueError):
                pass
        if conn.pending is not None:
            conn.pending[1].close()
            conn.pending = None
        for _, fds in conn.outq:
            for fd in fds:
                os.close(fd)
        conn.outq.clear()
        conn.sock.close()
        file = conn.file
        if file is not None:
            self._files.pop(file.token, None)
            self._release(conn, file)

    def _release(self, conn: Conn, file: RawFile) -> None:
        """The file's last reference is gone: close its fd in the raw
        session, and the session with its last file."""
        raw = file.raw
        if self._raw.get(raw.uid) is not raw:
            return  # the session already ended (daemon stop)
        if file.fd:
            self._release_fd(conn, file.kind, file.fd)
        log.debug("uapi.release", kind=file.kind.name, fd=file.fd, uid=raw.uid)
        if file.counted:
            raw.files -= 1
            raw.sess.streams -= 1
            if not raw.files:
                self._close_raw(conn, raw)

    def _release_fd(self, conn: Conn, kind: FileKind, fd: int) -> None:
        name, field = _CLOSE_OPS[kind]
        op = self.ops[name]
        try:
            conn.call(name, op.request(**{field: fd}))
        except IommuError as err:
            log.warning("uapi.release_failed", op=name, fd=fd, errno=err.name)

    def _close_raw(self, conn: Conn, raw: RawSession) -> None:
        del self._raw[raw.uid]
        try:
            conn.call("CloseSession", pb.CloseSessionRequest())
        except IommuError as err:
            log.warning("uapi.session_close_failed", errno=err.name)
        if self.rt.journal is not None:
            self.rt.journal.ephemeral.discard(raw.token)


#: The operations the codec and the opens dispatch: each must be synchronous.
_USED_OPS = ("IoasMapFile", "ProcessPins", "FaultQueueRead", "FaultQueueRespond",
             "TestTriggerIopf", "TestDmabufGet", "TestDmabufRevoke",
             "OpenSession", "CloseSession", "OpenContext", "CloseContext", "OpenContainer",
             "OpenGroup", "CloseGroup", "OpenDevice", "CloseDevice", "Destroy", "IoasAlloc",
             "IoasAllowIovas", "IoasCopy", "IoasIovaRanges", "IoasMap", "IoasUnmap", "Option",
             "IommuVfioIoas", "HwptAlloc", "GetHwInfo", "HwptSetDirtyTracking",
             "HwptGetDirtyBitmap", "HwptInvalidate", "FaultQueueAlloc", "IoasChangeProcess",
             "VfioGetApiVersion", "VfioCheckExtension", "VfioSetIommu", "VfioIommuGetInfo",
             "VfioIommuMapDma", "VfioIommuUnmapDma", "VfioIommuDirtyPages",
             "VfioGroupGetStatus", "VfioGroupSetContainer", "VfioGroupUnsetContainer",
             "VfioGroupGetDeviceFd", "DeviceBindIommufd", "DeviceAttachIommufdPt",
             "DeviceDetachIommufdPt", "DeviceGetInfo", "CloseFd", "TestAddReserved",
             "TestMockDomain", "TestMockDomainReplace", "TestMdCheckMap", "TestMdCheckRefs",
             "TestCreateAccess", "TestDestroyAccessPages", "TestAccessPages", "TestAccessRw",
             "TestSetTempMemoryLimit", "TestAccessReplaceIoas", "TestDirty",
             "TestDevCheckCache", "TestPasidAttach", "TestPasidReplace", "TestPasidDetach",
             "TestPasidCheckHwpt", "ViommuAlloc", "VdeviceAlloc", "HwQueueAlloc",
             "VeventqAlloc", "VeventqRead", "TestMdCheckIotlb", "TestTriggerVevent",
             "IommufdMmap", "IommufdMunmap")


# -- helpers -----------------------------------------------------------------------------------------


def _prepare(path: pathlib.Path) -> None:
    """Create the socket's directory and clear a stale socket; refuse to
    take over one another daemon serves."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        return
    if not stat.S_ISSOCK(path.stat().st_mode):
        raise OSError(E.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink()  # stale: nobody listens
    except OSError as exc:
        if exc.errno != E.EPROTOTYPE:
            raise
        path.unlink()  # a stream socket left behind, not ours
    else:
        raise OSError(E.EADDRINUSE, f"another daemon is serving {path}")
    finally:
        probe.close()


def _peer_groups(sock: socket.socket) -> frozenset[int]:
    """SO_PEERGROUPS: the peer's supplementary groups (empty where unknown)."""
    size = 64
    for _ in range(3):
        try:
            data = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size * 4)
        except OSError as exc:
            if exc.errno != E.ERANGE:
                return frozenset()
            size *= 16
            continue
        return frozenset(array.array("I", data[:len(data) // 4 * 4]))
    return frozenset()


def _received_fds(anc: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", data[:len(data) // 4 * 4]))
    return fds


def _sealed_memfd(body: bytes) -> int:
    fd = os.memfd_create("iommud-body", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                    | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_items(writes: list[tuple[int, bytes]]) -> list[bytes]:
    items: list[bytes] = []
    for addr, data in writes:
        items.append(S_WRITE.pack(ITEM_WRITE, len(data), addr))
        items.append(data)
    return items


def _parse_give(body: bytes, needs: list[Need], received: list[int] | None = None) -> list[Any]:
    """A GIVE's items, checked against the NEED they answer: the same count,
    types and lengths, in order, and nothing after them. `received` are the
    real fds the GIVE brought, one per FD item of a real fd, in order."""
    if len(body) < 4 or S_U32.unpack_from(body)[0] != len(needs):
        raise ProtocolError(f"a GIVE of {len(body)} bytes does not answer {len(needs)} items")
    offset = 4
    out: list[Any] = []
    real_fds = list(received or ())
    try:
        for need in needs:
            if isinstance(need, kabi.FdArg):
                kind, status, token = S_GIVE_FD.unpack_from(body, offset)
                offset += S_GIVE_FD.size
                if kind != ITEM_FD:
                    raise ProtocolError(f"item of type {kind} where FD was asked")
                real = status == 0 and token == 0
                if real and not real_fds:
                    raise ProtocolError("a real fd's FD item without its fd")
                out.append(GivenFd(status, token, real, real_fds.pop(0) if real else -1))
            elif isinstance(need, kabi.Backing):
                segments, offset = _parse_backing(body, offset, need)
                out.append(segments)
            elif isinstance(need, Mem):
                kind, status, length = S_GIVE_MEM.unpack_from(body, offset)
                offset += S_GIVE_MEM.size
                if kind != ITEM_MEM:
                    raise ProtocolError(f"item of type {kind} where MEM was asked")
                if status:
                    if length:
                        raise ProtocolError("a faulted MEM item with bytes")
                    out.append(None)
                    continue
                if length != need.length or offset + length > len(body):
                    raise ProtocolError(f"MEM of {length:#x} bytes where {need.length:#x} "
                                        f"were asked")
                out.append(body[offset:offset + length])
                offset += length
            else:
                kind, status = S_GIVE_WRITABLE.unpack_from(body, offset)
                offset += S_GIVE_WRITABLE.size
                if kind != ITEM_WRITABLE:
                    raise ProtocolError(f"item of type {kind} where WRITABLE was asked")
                out.append(status == 0)
    except struct.error as exc:
        raise ProtocolError(f"a truncated GIVE: {exc}") from None
    if offset != len(body):
        raise ProtocolError(f"{len(body) - offset} bytes after the GIVE's items")
    return out


def _parse_backing(body: bytes, offset: int, need: kabi.Backing
                   ) -> tuple[list[kabi.Segment] | None, int]:
    """GIVE BACKING {u32 type=4, s32 status, u32 count, count segments}: the
    mappings over the range, in order, each within it."""
    kind, status, count = S_GIVE_BACKING.unpack_from(body, offset)
    offset += S_GIVE_BACKING.size
    if kind != ITEM_BACKING:
        raise ProtocolError(f"item of type {kind} where BACKING was asked")
    if status:
        if count:
            raise ProtocolError("a failed BACKING item with segments")
        return None, offset
    segments: list[kabi.Segment] = []
    at = 0
    for _ in range(count):
        seg_off, length, major, minor, inode, file_offset, flags = S_SEGMENT.unpack_from(
            body, offset)
        offset += S_SEGMENT.size
        if seg_off < at or not length or seg_off + length > need.length:
            raise ProtocolError(f"a BACKING segment at {seg_off:#x} (+{length:#x}) out of order "
                                f"or outside the range of {need.length:#x} bytes")
        at = seg_off + length
        segments.append(kabi.Segment(seg_off, length, major, minor, inode, file_offset,
                                     bool(flags & SEGMENT_SHARED)))
    return segments, offset
