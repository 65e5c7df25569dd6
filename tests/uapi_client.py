"""A Python client of the raw uAPI socket that does what the preload shim
does (docs/uapi-transport.md), for the tests and the benchmark.

The caller's memory is a `Memory`: byte arrays at fake addresses, which the
client reads for the first copy and NEED MEM, probes for NEED WRITABLE and
writes for REPLY WRITE; an address outside every allocation (or a write to
a read-only one) faults. The process's fd table is `Process`: emulated files
keyed by their real socket fd numbers, which is what an fd argument (BIND's
iommufd, SET_CONTAINER's fd) names.
"""
from __future__ import annotations

import array
import errno as E
import fcntl
import os
import socket
import struct
from dataclasses import dataclass, field

HDR = struct.Struct("<IHHIIQQQIi")
MAGIC = 0x31415549
OPEN, IOCTL, NEED, GIVE, REPLY, DESCRIBE, EVENT = 1, 2, 3, 4, 5, 6, 7
BODY_MEMFD, TAIL_NONZERO = 1, 2
PATH_IOMMU, PATH_CONTAINER, PATH_GROUP, PATH_DEVICE = 1, 2, 3, 4
NEWFD_CLOEXEC, NEWFD_RESULT = 1, 2
U32 = struct.Struct("<I")
S32 = struct.Struct("<i")
FIRST_COPY_MAX = 512
INLINE_MAX = 64 << 10
RECV_MAX = HDR.size + INLINE_MAX


def io(nr: int) -> int:
    return 0x3B00 | nr


class Memory:
    """The caller's memory: allocations at fake addresses."""

    def __init__(self) -> None:
        self._next = 0x10_0000
        self.blocks: dict[int, bytearray] = {}
        self.readonly: set[int] = set()
        #: Blocks that are a shared mapping of a file: (major, minor, inode,
        #: file offset), as /proc/self/maps would show them.
        self.files: dict[int, tuple[int, int, int, int]] = {}

    def alloc(self, size_or_data: int | bytes, readonly: bool = False) -> int:
        data = bytearray(size_or_data)  # zeroed bytes, or a copy of the given ones
        addr = self._next
        self._next += (len(data) + 0xFFFF) & ~0xFFF | 0x1_0000  # a hole after each block
        self.blocks[addr] = data
        if readonly:
            self.readonly.add(addr)
        return addr

    def _find(self, addr: int, length: int) -> tuple[int, bytearray] | None:
        for base, data in self.blocks.items():
            if base <= addr and addr + length <= base + len(data):
                return base, data
        return None

    def read(self, addr: int, length: int) -> bytes | None:
        found = self._find(addr, length)
        if found is None:
            return None
        base, data = found
        return bytes(data[addr - base:addr - base + length])

    def writable(self, addr: int, length: int) -> bool:
        found = self._find(addr, length)
        return found is not None and found[0] not in self.readonly

    def write(self, addr: int, data: bytes) -> bool:
        found = self._find(addr, len(data))
        if found is None or found[0] in self.readonly:
            return False
        base, block = found
        block[addr - base:addr - base + len(data)] = data
        return True

    def struct(self, fmt: struct.Struct, *values: int) -> int:
        return self.alloc(fmt.pack(*values))

    def map_file(self, fd: int, length: int, offset: int = 0) -> int:
        """A MAP_SHARED mapping of `length` bytes of the file `fd` from
        `offset` (its bytes are not the file's: only the mapping is told)."""
        addr = self.alloc(length)
        st = os.fstat(fd)
        self.files[addr] = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino, offset)
        return addr

    def backing(self, addr: int, length: int) -> list[tuple[int, ...]]:
        """The BACKING segments of [addr, addr + length): (offset, length,
        major, minor, inode, file offset, shared) per block it overlaps."""
        out = []
        for base, data in sorted(self.blocks.items()):
            lo, hi = max(base, addr), min(base + len(data), addr + length)
            if lo >= hi:
                continue
            major, minor, ino, foff = self.files.get(base, (0, 0, 0, 0))
            shared = base in self.files
            out.append((lo - addr, hi - lo, major, minor, ino,
                        foff + (lo - base) if shared else 0, 1 if shared else 0))
        return out

    def unpack(self, fmt: struct.Struct, addr: int) -> tuple[int, ...]:
        data = self.read(addr, fmt.size)
        assert data is not None
        return fmt.unpack(data)


@dataclass
class Stats:
    needs: int = 0
    records: int = 0
    backings: int = 0


class File:
    """One emulated fd: a connection to the daemon."""

    def __init__(self, proc: Process, sock: socket.socket, token: int = 0) -> None:
        self.proc = proc
        self.sock = sock
        self.fd = sock.fileno()
        self.token = token
        self.seq = 0
        self._rbuf = bytearray(RECV_MAX)

    # -- records ---------------------------------------------------------------------------

    def send(self, kind: int, cmd: int = 0, arg: int = 0, body: bytes = b"", flags: int = 0,
             seq: int | None = None, fds: list[int] | None = None, body_len: int | None = None,
             magic: int = MAGIC, result: int = 0) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        memfd = -1
        if len(body) > INLINE_MAX:  # a large body travels in a sealed memfd
            memfd = os.memfd_create("body", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.write(memfd, body)
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE)
            flags |= BODY_MEMFD
            body_len, body = len(body), b""
            fds = [memfd, *(fds or [])]
        header = HDR.pack(magic, kind, flags, self.proc.pid, self.proc.pid, seq, cmd, arg,
                          len(body) if body_len is None else body_len, result)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        try:
            self.sock.sendmsg([header, body], anc)
        finally:
            if memfd >= 0:
                os.close(memfd)
        return seq

    def recv(self) -> tuple[tuple[int, ...], bytes, list[int]]:
        """One record: its header fields, body, and the fds that came with it."""
        n, anc, _, _ = self.sock.recvmsg_into([self._rbuf], socket.CMSG_SPACE(64))
        if n == 0:
            raise EOFError("the daemon closed the connection")
        fds: list[int] = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", data[:len(data) // 4 * 4]))
        hdr = HDR.unpack_from(self._rbuf)
        if hdr[2] & BODY_MEMFD:
            memfd = fds.pop(0)
            body = os.pread(memfd, hdr[8], 0)
            os.close(memfd)
        else:
            body = bytes(self._rbuf[HDR.size:n])
        self.proc.stats.records += 1
        return hdr, body, fds

    # -- ioctl, as the shim does it ----------------------------------------------------------

    def first_copy(self, cmd: int, arg: int) -> tuple[bytes, int] | int:
        """The first copy of an ioctl (the doc's table), or -EFAULT."""
        nr = cmd & 0xFF
        mem = self.proc.mem
        if nr in (100, 105, 111, 101, 102):
            return b"", 0
        if nr == 104:
            data = mem.read(arg, 4)
            return (data, 0) if data is not None else -E.EFAULT
        if nr == 106:
            out = bytearray()
            for i in range(4096):
                byte = mem.read(arg + i, 1)
                if byte is None:
                    return -E.EFAULT
                out += byte
                if byte == b"\0":
                    break
            return bytes(out), 0
        head = mem.read(arg, 4)
        if head is None:
            return -E.EFAULT
        (size,) = U32.unpack(head)
        first = mem.read(arg, min(size, FIRST_COPY_MAX))
        if first is None or not mem.writable(arg, min(size, FIRST_COPY_MAX)):
            return -E.EFAULT
        flags = 0
        if size > FIRST_COPY_MAX:
            rest = mem.read(arg + FIRST_COPY_MAX, size - FIRST_COPY_MAX)
            if rest is None:
                return -E.EFAULT
            if rest.count(0) != len(rest):
                flags = TAIL_NONZERO
        return head + first, flags

    def ioctl(self, cmd: int, arg: int = 0) -> int:
        """ioctl(fd, cmd, arg): >= 0, or -errno."""
        first = self.first_copy(cmd, arg)
        if isinstance(first, int):
            return first
        body, flags = first
        seq = self.send(IOCTL, cmd, arg, body, flags)
        return self.exchange(seq)

    def exchange(self, seq: int) -> int:
        while True:
            hdr, body, fds = self.recv()
            kind, rseq, result = hdr[1], hdr[5], hdr[9]
            assert rseq == seq, f"reply for seq {rseq}, expected {seq}"
            if kind == NEED:
                self.proc.stats.needs += 1
                give, give_fds = self.proc.answer(body)
                self.send(GIVE, body=give, seq=seq, fds=give_fds)
                continue
            assert kind == REPLY, kind
            return self.apply(result, body, fds)

    def apply(self, result: int, body: bytes, fds: list[int]) -> int:
        """REPLY items, in order; a write that faults makes the call EFAULT."""
        if not body:
            return result
        (count,) = U32.unpack_from(body)
        off = 4
        for _ in range(count):
            (item,) = U32.unpack_from(body, off)
            if item == 1:
                _, length, addr = struct.unpack_from("<IIQ", body, off)
                off += 16
                if not self.proc.mem.write(addr, body[off:off + length]):
                    return -E.EFAULT
                off += length
            elif item == 2:   # COPY: a memmove inside the caller's memory
                _, length, dst, src = struct.unpack_from("<IIQQ", body, off)
                off += 24
                data = self.proc.mem.read(src, length)
                if data is None or not self.proc.mem.write(dst, data):
                    return -E.EFAULT
            elif item == 3:
                _, flags, addr, token = struct.unpack_from("<IIQQ", body, off)
                off += 24
                new = File(self.proc, socket.socket(fileno=fds.pop(0)), token)
                self.proc.files[new.fd] = new
                if addr and not self.proc.mem.write(addr, S32.pack(new.fd)):
                    return -E.EFAULT
                if flags & NEWFD_RESULT:
                    result = new.fd
            else:
                raise AssertionError(f"unknown REPLY item {item}")
        assert off == len(body), "REPLY items end where the body ends"
        return result

    def describe(self) -> tuple[int, int, int]:
        seq = self.send(DESCRIBE)
        hdr, body, _ = self.recv()
        assert hdr[1] == REPLY and hdr[5] == seq and hdr[9] == 0
        kind, n, token = struct.unpack("<IIQ", body)
        return kind, n, token

    def close(self) -> None:
        self.proc.files.pop(self.fd, None)
        self.sock.close()


@dataclass
class Process:
    """A process using the shim: its memory, its emulated fds and its pid."""

    path: str
    pid: int = field(default_factory=os.getpid)
    mem: Memory = field(default_factory=Memory)
    files: dict[int, File] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    #: fd numbers the process has open that the shim does not emulate.
    real_fds: dict[int, int] = field(default_factory=dict)

    def connect(self) -> File:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(self.path)
        return File(self, sock)

    def open(self, path_kind: int, n: int = 0) -> File:
        """OPEN: the file, or OSError with the daemon's errno."""
        f = self.connect()
        seq = f.send(OPEN, path_kind, n, U32.pack(os.O_RDWR))
        hdr, body, _ = f.recv()
        assert hdr[1] == REPLY and hdr[5] == seq, hdr
        if hdr[9] < 0:
            f.sock.close()
            raise OSError(-hdr[9], os.strerror(-hdr[9]))
        (f.token,) = struct.unpack("<Q", body)
        self.files[f.fd] = f
        return f

    def answer(self, body: bytes) -> tuple[bytes, list[int]]:
        """A GIVE for a NEED's items."""
        (count,) = U32.unpack_from(body)
        off, out, fds = 4, [U32.pack(count)], []
        for _ in range(count):
            (item,) = U32.unpack_from(body, off)
            if item == 1:
                _, length, addr = struct.unpack_from("<IIQ", body, off)
                off += 16
                data = self.mem.read(addr, length)
                out.append(struct.pack("<IiI", 1, 0, length) + data if data is not None
                           else struct.pack("<IiI", 1, -E.EFAULT, 0))
            elif item == 2:
                _, fd = struct.unpack_from("<Ii", body, off)
                off += 8
                if fd in self.files:
                    out.append(struct.pack("<IiQ", 2, 0, self.files[fd].token))
                elif fd in self.real_fds:
                    out.append(struct.pack("<IiQ", 2, 0, 0))
                    fds.append(self.real_fds[fd])
                else:
                    out.append(struct.pack("<IiQ", 2, -E.EBADF, 0))
            elif item == 3:
                _, length, addr = struct.unpack_from("<IIQ", body, off)
                off += 16
                ok = self.mem.writable(addr, length)
                out.append(struct.pack("<Ii", 3, 0 if ok else -E.EFAULT))
            elif item == 4:   # BACKING: the mappings behind a range
                _, length, addr = struct.unpack_from("<IIQ", body, off)
                off += 16
                self.stats.backings += 1
                segments = self.mem.backing(addr, length)
                out.append(struct.pack("<IiI", 4, 0, len(segments)))
                out.extend(struct.pack("<QQIIQQI4x", *g) for g in segments)
            else:
                raise AssertionError(f"unknown NEED item {item}")
        assert off == len(body)
        return b"".join(out), fds

    def close(self) -> None:
        for f in list(self.files.values()):
            f.close()
