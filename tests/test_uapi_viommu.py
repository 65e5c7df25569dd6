"""Nested HWPTs, vIOMMUs, vDEVICEs, HW queues and vEVENTQs over the raw uAPI
transport (kabi.py, docs/uapi-transport.md): each struct under the kernel's
size rule (main.c's table: VIOMMU_ALLOC 24/40, VDEVICE_ALLOC 24/24,
VEVENTQ_ALLOC 28/32, HW_QUEUE_ALLOC 40/40), the answers written back where
the kernel writes them, the vEVENTQ's fd handed over as a new file whose
READ records follow iommufd_veventq_fops_read and whose doorbells make it
readable while its queue has records, and the test ops MD_CHECK_IOTLB and
TRIGGER_VEVENT. The client does what the preload shim does (uapi_client.py);
every failure asserts its errno.
"""
from __future__ import annotations

import select
import socket
import struct

import pytest
from test_uapi_selftest import (
    MD_CHECK_IOTLB,
    TRIGGER_VEVENT,
    alloc_ioas,
    check,
    ioas_map,
    mock_domain,
    ok,
    tcmd,
    uapi,
)
from uapi_client import EVENT, NEED, REPLY, File, Process, io

from iommud_wire.uapi import (
    IOMMU_HW_QUEUE_TYPE_SELFTEST,
    IOMMU_HWPT_ALLOC_NEST_PARENT,
    IOMMU_HWPT_DATA_SELFTEST,
    IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
    IOMMU_TEST_IOTLB_DEFAULT,
    IOMMU_VEVENTQ_FLAG_LOST_EVENTS,
    IOMMU_VEVENTQ_TYPE_SELFTEST,
    IOMMU_VIOMMU_TYPE_SELFTEST,
    MOCK_APERTURE_START,
    PAGE_SIZE,
)

S = struct.Struct
IOMMU_HWPT_ALLOC, IOMMU_HWPT_INVALIDATE, IOMMU_DESTROY = io(0x89), io(0x8D), io(0x80)
IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC = io(0x90), io(0x91)
IOMMU_VEVENTQ_ALLOC, IOMMU_HW_QUEUE_ALLOC = io(0x93), io(0x94)
IOMMU_IOAS_UNMAP = io(0x86)
HWPT_ALLOC = S("<IIIIIIIIQII")
INVALIDATE = S("<IIQIIII")
VIOMMU_ALLOC = S("<IIIIIIIIQ")
VDEVICE_ALLOC = S("<IIIIQ")
VEVENTQ_ALLOC = S("<IIIIIIII")
HW_QUEUE_ALLOC = S("<IIIIIIQQ")
DESTROY, IOAS_UNMAP = S("<II"), S("<IIQQ")
READ = 8                          # a READ record: read() of a daemon-made file
BELL = 1 << 4                     # REPLY flag: a doorbell follows
PATH_VEVENTQ = 8
DATA = S("<II").pack(IOMMU_TEST_IOTLB_DEFAULT, 0)
UVA = 0x7F00_0000_0000


@pytest.fixture(scope="module")
def st(module_daemon_factory):
    return module_daemon_factory("--debug-selftest", "1", name="uapi-viommu")


@pytest.fixture
def proc(st):
    p = Process(uapi(st))
    yield p
    p.close()


def hwpt_alloc(f: File, dev: int, pt: int, flags: int = 0, data_type: int = 0,
               data: bytes | None = b"", data_len: int | None = None) -> tuple[int, int]:
    mem = f.proc.mem
    uptr = mem.alloc(data) if data else 0
    size = len(data or b"") if data_len is None else data_len
    a = mem.struct(HWPT_ALLOC, 48, flags, dev, pt, 0, 0, data_type, size, uptr, 0, 0)
    return f.ioctl(IOMMU_HWPT_ALLOC, a), mem.unpack(HWPT_ALLOC, a)[4]


def viommu_alloc(f: File, dev: int, hwpt: int, vtype: int = IOMMU_VIOMMU_TYPE_SELFTEST,
                 size: int = 40, data_uptr: int = 0, data_len: int = 0) -> tuple[int, int]:
    a = f.proc.mem.alloc(VIOMMU_ALLOC.pack(size, 0, vtype, dev, hwpt, 0, data_len, 0,
                                           data_uptr).ljust(max(size, 40), b"\0"))
    return f.ioctl(IOMMU_VIOMMU_ALLOC, a), f.proc.mem.unpack(VIOMMU_ALLOC, a)[5]


def vdevice_alloc(f: File, viommu: int, dev: int, virt_id: int) -> tuple[int, int]:
    a = f.proc.mem.struct(VDEVICE_ALLOC, 24, viommu, dev, 0, virt_id)
    return f.ioctl(IOMMU_VDEVICE_ALLOC, a), f.proc.mem.unpack(VDEVICE_ALLOC, a)[3]


def veventq_alloc(f: File, viommu: int, depth: int, size: int = 32
                  ) -> tuple[int, int, File | None]:
    a = f.proc.mem.alloc(VEVENTQ_ALLOC.pack(size, 0, viommu, IOMMU_VEVENTQ_TYPE_SELFTEST,
                                            depth, 0, 0xFFFF_FFFF, 0))
    ret = f.ioctl(IOMMU_VEVENTQ_ALLOC, a)
    out = f.proc.mem.unpack(VEVENTQ_ALLOC, a)
    return ret, out[5], f.proc.files.get(struct.unpack("<i", struct.pack("<I", out[6]))[0])


def destroy(f: File, obj_id: int) -> int:
    return f.ioctl(IOMMU_DESTROY, f.proc.mem.struct(DESTROY, 8, obj_id))


class Viommu:
    """A mock device, a NEST_PARENT HWPT, a vIOMMU and a nested HWPT on it."""

    def __init__(self, f: File) -> None:
        self.f = f
        self.ioas = alloc_ioas(f)
        self.stdev, _, self.dev = mock_domain(f, self.ioas)
        ret, self.parent = hwpt_alloc(f, self.dev, self.ioas, IOMMU_HWPT_ALLOC_NEST_PARENT)
        ok(ret)
        ret, self.viommu = viommu_alloc(f, self.dev, self.parent)
        ok(ret)
        ret, self.nested = hwpt_alloc(f, self.dev, self.viommu, 0, IOMMU_HWPT_DATA_SELFTEST,
                                      DATA)
        ok(ret)

    def attach_through_vdevice(self, virt_id: int) -> int:
        ret, vdev = vdevice_alloc(self.f, self.viommu, self.dev, virt_id)
        ok(ret)
        ok(tcmd(self.f, 10, self.stdev, S("<I").pack(self.nested))[0])   # MOCK_DOMAIN_REPLACE
        return vdev

    def trigger(self) -> int:
        return tcmd(self.f, TRIGGER_VEVENT, 0, S("<I").pack(self.dev))[0]


# -- reading a vEVENTQ's file, as the shim does ----------------------------------------------------

def doorbell(q: File) -> bool:
    """Is the file readable with a doorbell (an empty EVENT) at its head?"""
    if not select.select([q.sock], [], [], 0)[0]:
        return False
    data = q.sock.recv(64, socket.MSG_PEEK)
    return len(data) >= 48 and S("<IH").unpack_from(data)[1] == EVENT


def read(q: File, count: int, buf: int) -> int:
    """read(q, buf, count): drain the doorbells, then one READ exchange; a
    REPLY flagged BELL has a doorbell right behind it, waited for."""
    while doorbell(q):
        q.sock.recv(64)
    seq = q.send(READ, count, buf)
    while True:
        hdr, body, fds = q.recv()
        if hdr[1] == EVENT:
            continue                  # rung while the read was on its way
        assert hdr[5] == seq
        if hdr[1] == NEED:
            give, give_fds = q.proc.answer(body)
            q.send(4, body=give, seq=seq, fds=give_fds)
            continue
        assert hdr[1] == REPLY
        if hdr[2] & BELL:
            assert select.select([q.sock], [], [], 20)[0]
        return q.apply(hdr[9], body, fds)


def records(data: bytes) -> list[tuple[int, int, bytes]]:
    """(flags, sequence, data) of each vEVENT: the selftest's carry 4 bytes."""
    out, at = [], 0
    while at < len(data):
        flags, seq = S("<II").unpack_from(data, at)
        size = 0 if flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS else 4
        out.append((flags, seq, data[at + 8:at + 8 + size]))
        at += 8 + size
    return out


# -- size rules and write-backs ------------------------------------------------------------------

def test_size_rules_of_the_new_ioctls(proc) -> None:
    """iommufd_fops_ioctl: below offsetofend of the last required field is
    EINVAL, a non-zero byte past the kernel's struct E2BIG (the selftest's
    cmd_length for VIOMMU_ALLOC and VDEVICE_ALLOC)."""
    f = proc.open(1)
    mem = proc.mem
    for cmd, fmt, minimum, size in ((IOMMU_VIOMMU_ALLOC, VIOMMU_ALLOC, 24, 40),
                                    (IOMMU_VDEVICE_ALLOC, VDEVICE_ALLOC, 24, 24),
                                    (IOMMU_VEVENTQ_ALLOC, VEVENTQ_ALLOC, 28, 32),
                                    (IOMMU_HW_QUEUE_ALLOC, HW_QUEUE_ALLOC, 40, 40)):
        body = bytes(fmt.size)
        check(f.ioctl(cmd, mem.alloc(S("<I").pack(minimum - 1) + body[4:])), "EINVAL")
        check(f.ioctl(cmd, mem.alloc(S("<I").pack(size + 1) + body[4:] + b"\x01")), "E2BIG")
        zero = f.ioctl(cmd, mem.alloc(S("<I").pack(size + 1) + body[4:] + b"\0"))
        exact = f.ioctl(cmd, mem.alloc(S("<I").pack(size) + body[4:]))
        assert zero == exact < 0          # the same answer: the handler's own (zeroed fields)


def test_viommu_alloc_writes_back_data_and_id(proc) -> None:
    """iommufd_viommu_alloc_ioctl with mock data: the driver's answer at
    data_uptr (mock_viommu_init), out_viommu_id in the struct; a size between
    min and 40 writes back only `size` bytes."""
    f = proc.open(1)
    v = Viommu(f)
    data = proc.mem.alloc(S("<IIQQ").pack(0xBEEF, 0, 0, 0))
    ret, viommu = viommu_alloc(f, v.dev, v.parent, data_uptr=data, data_len=24)
    ok(ret)
    assert viommu == v.nested + 1
    assert S("<IIQQ").unpack(proc.mem.read(data, 24)) == (0xBEEF, 0xBEEF, PAGE_SIZE,
                                                          2 * PAGE_SIZE)
    a = proc.mem.alloc(VIOMMU_ALLOC.pack(28, 0, IOMMU_VIOMMU_TYPE_SELFTEST, v.dev, v.parent,
                                         0xAAAA_AAAA, 0, 0, 0))
    ok(f.ioctl(IOMMU_VIOMMU_ALLOC, a))
    assert S("<I").unpack(proc.mem.read(a + 20, 4)) == (viommu + 1,)
    assert proc.mem.read(a + 28, 12) == bytes(12)     # past `size`: untouched (it was zero)
    # Data the caller cannot read or write: EFAULT, nothing allocated.
    check(viommu_alloc(f, v.dev, v.parent, data_uptr=0, data_len=24)[0], "EFAULT")
    ro = proc.mem.alloc(bytes(24), readonly=True)
    check(viommu_alloc(f, v.dev, v.parent, data_uptr=ro, data_len=24)[0], "EFAULT")
    check(viommu_alloc(f, v.dev, v.parent, vtype=0xDEAD)[0], "EOPNOTSUPP")
    ret, _ = vdevice_alloc(f, viommu, v.dev, 0x99)
    ok(ret)
    assert vdevice_alloc(f, viommu, v.dev, 0x99) == (-17, 0)          # EEXIST, nothing back


def test_nested_hwpt_alloc_efault_where_the_driver_copies(proc) -> None:
    """A NULL data_uptr: the handler answers in the kernel's order, the
    driver's copy last (EFAULT), the data type before it (EOPNOTSUPP)."""
    f = proc.open(1)
    v = Viommu(f)
    check(hwpt_alloc(f, v.dev, v.parent, 0, IOMMU_HWPT_DATA_SELFTEST, None, 8)[0], "EFAULT")
    check(hwpt_alloc(f, v.dev, v.parent, 0, IOMMU_HWPT_DATA_SELFTEST + 1, None, 8)[0],
          "EOPNOTSUPP")
    check(hwpt_alloc(f, v.dev, v.parent, IOMMU_HWPT_ALLOC_NEST_PARENT,
                     IOMMU_HWPT_DATA_SELFTEST, None, 8)[0], "EOPNOTSUPP")
    ret, nested = hwpt_alloc(f, v.dev, v.parent, 0, IOMMU_HWPT_DATA_SELFTEST, DATA)
    ok(ret)
    ok(tcmd(f, MD_CHECK_IOTLB, nested, S("<II").pack(3, IOMMU_TEST_IOTLB_DEFAULT))[0])
    check(tcmd(f, MD_CHECK_IOTLB, nested, S("<II").pack(3, 0))[0], "EINVAL")
    check(tcmd(f, MD_CHECK_IOTLB, nested, S("<II").pack(4, IOMMU_TEST_IOTLB_DEFAULT))[0],
          "EINVAL")
    check(tcmd(f, MD_CHECK_IOTLB, v.parent, S("<II").pack(0, 0))[0], "ENOENT")


def test_hwpt_invalidate_writes_back_entry_num(proc) -> None:
    """iommufd_hwpt_invalidate writes entry_num back on success and failure."""
    f = proc.open(1)
    v = Viommu(f)
    ret, nested = hwpt_alloc(f, v.dev, v.parent, 0, IOMMU_HWPT_DATA_SELFTEST, DATA)
    ok(ret)

    def invalidate(entries: bytes, num: int, uptr: int | None = None) -> tuple[int, int]:
        ptr = proc.mem.alloc(entries) if uptr is None else uptr
        a = proc.mem.struct(INVALIDATE, 32, nested, ptr, IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
                            8, num, 0)
        return f.ioctl(IOMMU_HWPT_INVALIDATE, a), proc.mem.unpack(INVALIDATE, a)[5]

    assert invalidate(S("<IIII").pack(0, 0, 0xFFFF_FFFF, 1), 2) == (-95, 1)   # EOPNOTSUPP
    assert invalidate(S("<IIII").pack(0, 1, 0, 2), 2) == (0, 2)
    ok(tcmd(f, MD_CHECK_IOTLB, nested, S("<II").pack(1, 0))[0])
    ok(tcmd(f, MD_CHECK_IOTLB, nested, S("<II").pack(3, IOMMU_TEST_IOTLB_DEFAULT))[0])
    # Entries the caller cannot read: EFAULT before the handler, none handled.
    assert invalidate(b"", 2, uptr=0x10) == (-14, 0)


def test_veventq_file_read_rules_and_doorbells(proc) -> None:
    """VEVENTQ_ALLOC hands over a new file (path kind 8); its READ follows
    iommufd_veventq_fops_read; a doorbell makes it readable while the queue
    has records, and only then."""
    f = proc.open(1)
    v = Viommu(f)
    check(veventq_alloc(f, v.viommu, 2, size=27)[0], "EINVAL")
    ret, qid, q = veventq_alloc(f, v.viommu, 2)
    ok(ret)
    assert q is not None and q.fd != f.fd
    assert q.describe()[:2] == (PATH_VEVENTQ, qid)
    check(q.ioctl(io(0x81), proc.mem.struct(S("<III"), 12, 0, 0)), "ENOTTY")
    check(read(f, 8, proc.mem.alloc(8)), "EINVAL")              # an iommufd has no read
    buf = proc.mem.alloc(64)
    check(read(q, 0, buf), "EINVAL")
    check(read(q, 7, buf), "EINVAL")
    assert read(q, 64, buf) == 0 and not doorbell(q)
    v.attach_through_vdevice(0x99)
    ok(v.trigger())
    assert doorbell(q)
    check(read(q, 8, buf), "EINVAL")                            # the data does not fit
    assert doorbell(q)                                          # still there to read
    assert read(q, 64, buf) == 12
    assert records(proc.mem.read(buf, 12)) == [(0, 0, b"\x99\0\0\0")]
    assert not doorbell(q)
    for _ in range(3):
        ok(v.trigger())                                         # depth 2: one lost
    assert read(q, 36, buf) == 32
    assert records(proc.mem.read(buf, 32)) == [(0, 1, b"\x99\0\0\0"), (0, 2, b"\x99\0\0\0"),
                                               (IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 3, b"")]
    # A buffer the caller cannot write: EFAULT and the records stay; one
    # writable for the first record only: that one is read.
    ok(v.trigger())
    ok(v.trigger())
    check(read(q, 24, proc.mem.alloc(24, readonly=True)), "EFAULT")
    short = proc.mem.alloc(12)
    assert read(q, 24, short) == 12
    assert records(proc.mem.read(short, 12)) == [(0, 4, b"\x99\0\0\0")]
    assert doorbell(q)
    assert read(q, 64, buf) == 12
    assert records(proc.mem.read(buf, 12)) == [(0, 5, b"\x99\0\0\0")]
    check(destroy(f, qid), "EBUSY")                             # its file holds it
    q.close()
    ok(destroy(f, qid))
    check(v.trigger(), "EOPNOTSUPP")                            # no vEVENTQ any more


def test_trigger_vevent_and_hw_queue_codecs(proc) -> None:
    """TRIGGER_VEVENT reads {u32 dev_id} (`id` is not read); HW_QUEUE_ALLOC's
    out_hw_queue_id comes back and its locked page refuses IOAS_UNMAP."""
    f = proc.open(1)
    v = Viommu(f)
    check(tcmd(f, TRIGGER_VEVENT, v.dev, S("<I").pack(999))[0], "ENOENT")
    check(v.trigger(), "ENOENT")                                # no vDEVICE attach yet
    ok(ioas_map(f, v.ioas, UVA, PAGE_SIZE, MOCK_APERTURE_START))
    a = proc.mem.struct(HW_QUEUE_ALLOC, 40, 0, v.viommu, IOMMU_HW_QUEUE_TYPE_SELFTEST, 0,
                        0xAAAA, MOCK_APERTURE_START, PAGE_SIZE)
    ok(f.ioctl(IOMMU_HW_QUEUE_ALLOC, a))
    queue = proc.mem.unpack(HW_QUEUE_ALLOC, a)[5]
    assert queue == v.nested + 1
    unmap = proc.mem.struct(IOAS_UNMAP, 24, v.ioas, MOCK_APERTURE_START, PAGE_SIZE)
    check(f.ioctl(IOMMU_IOAS_UNMAP, unmap), "EBUSY")
    ok(destroy(f, queue))
    ok(f.ioctl(IOMMU_IOAS_UNMAP, unmap))


def test_closing_the_iommufd_keeps_the_context_for_the_veventq_file(proc) -> None:
    """The vEVENTQ's file holds its context: events still flow to it (here,
    none can be triggered), and its release ends the context."""
    f = proc.open(1)
    v = Viommu(f)
    _, _, q = veventq_alloc(f, v.viommu, 2)
    assert q is not None
    f.close()
    buf = proc.mem.alloc(16)
    assert read(q, 16, buf) == 0
    q.close()


MMAP, MUNMAP = 10, 11             # records: mmap() and munmap() of an iommufd
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE = 1, 2


def mmap_record(f: File, offset: int, length: int, prot: int = PROT_READ | PROT_WRITE,
                flags: int = MAP_SHARED) -> tuple[int, bytes]:
    seq = f.send(MMAP, offset, length, S("<II").pack(prot, flags))
    hdr, body, _ = f.recv()
    assert hdr[1] == REPLY and hdr[5] == seq
    return hdr[9], body


def munmap_record(f: File, offset: int) -> int:
    seq = f.send(MUNMAP, offset)
    hdr, _, _ = f.recv()
    assert hdr[1] == REPLY and hdr[5] == seq
    return hdr[9]


def test_mmap_records_of_an_iommufd(proc) -> None:
    """MMAP and MUNMAP (docs/uapi-transport.md): iommufd_fops_mmap's rules,
    the region's bytes in the REPLY, the hold on the vIOMMU until MUNMAP."""
    f = proc.open(1)
    v = Viommu(f)
    data = proc.mem.alloc(S("<IIQQ").pack(0xBEEF, 0, 0, 0))
    ret, viommu = viommu_alloc(f, v.dev, v.parent, data_uptr=data, data_len=24)
    ok(ret)
    _, _, offset, length = S("<IIQQ").unpack(proc.mem.read(data, 24))
    check(mmap_record(f, offset, length, flags=MAP_PRIVATE)[0], "EINVAL")
    check(mmap_record(f, offset, length, prot=PROT_READ | PROT_EXEC)[0], "EPERM")
    check(mmap_record(f, offset + PAGE_SIZE, length)[0], "ENXIO")
    check(mmap_record(f, offset, length // 2)[0], "ENXIO")
    ret, body = mmap_record(f, offset, length, flags=0x03)   # MAP_SHARED_VALIDATE
    assert ret == 0 and len(body) == length and body[:4] == S("<I").pack(0xBEEF)
    check(destroy(f, viommu), "EBUSY")
    assert munmap_record(f, offset) == 0
    check(munmap_record(f, offset), "EINVAL")
    ok(destroy(f, viommu))
    q = veventq_alloc(f, v.viommu, 2)[2]
    assert q is not None
    check(mmap_record(q, 0, PAGE_SIZE)[0], "ENODEV")          # not an iommufd
