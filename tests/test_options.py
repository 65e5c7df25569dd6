"""IOMMU_OPTION, IOAS_CHANGE_PROCESS, HWPT_INVALIDATE and FAULT_QUEUE_ALLOC
(§2.9, 2.15, 2.16, 2.19; checklist rules 36-39, 49, 50, 53)."""
from __future__ import annotations

from support import raises_errno

from iommud_wire import pb

RLIMIT, HUGE = 0, 1
SET, GET = 0, 1


def test_option_errors_and_defaults(ctx) -> None:
    ioas = ctx.ioas_alloc()
    assert ctx.option(HUGE, GET, ioas) == 1                                   # rule 38
    raises_errno(lambda: ctx.option(7, GET), "EOPNOTSUPP")                    # rule 39
    raises_errno(lambda: ctx.option(HUGE, 5, ioas), "EOPNOTSUPP")
    raises_errno(lambda: ctx.option(HUGE, GET, ioas, reserved=1), "EOPNOTSUPP")
    raises_errno(lambda: ctx.option(HUGE, GET, 99), "ENOENT")
    raises_errno(lambda: ctx.option(HUGE, SET, ioas, 2), "EINVAL")
    assert ctx.option(RLIMIT, GET) == 0
    raises_errno(lambda: ctx.option(RLIMIT, GET, 1), "EOPNOTSUPP")
    raises_errno(lambda: ctx.option(RLIMIT, SET, 0, 1), "EPERM")              # rule 36
    assert ctx.option(RLIMIT, GET) == 0


def test_huge_pages_off_forces_page_alignment(ctx) -> None:
    ioas = ctx.ioas_alloc()
    assert ctx.option(HUGE, SET, ioas, 0) == 0
    assert ctx.option(HUGE, GET, ioas) == 0
    assert ctx.ioas_iova_ranges(ioas)[1] == 0x1000
    raises_errno(lambda: ctx.ioas_map(ioas, 0, 0x800, 0x1000), "EINVAL")
    ctx.option(HUGE, SET, ioas, 1)
    assert ctx.ioas_iova_ranges(ioas)[1] == 1
    ctx.ioas_map(ioas, 0, 0x800, 0x1000)
    # An unaligned area is in the way.
    raises_errno(lambda: ctx.option(HUGE, SET, ioas, 0), "EADDRINUSE")
    assert ctx.option(HUGE, GET, ioas) == 1 and ctx.ioas_iova_ranges(ioas)[1] == 1


def test_rlimit_mode_with_cap_sys_resource(daemon_factory) -> None:            # rule 37
    d = daemon_factory("--cap-sys-resource", "1")
    with d.client() as c, c.open_session() as s:
        ctx = s.open_context()
        raises_errno(lambda: ctx.option(RLIMIT, SET, 0, 2), "EINVAL")
        assert ctx.option(RLIMIT, SET, 0, 1) == 1 and ctx.option(RLIMIT, GET) == 1
        ctx.ioas_alloc()
        raises_errno(lambda: ctx.option(RLIMIT, SET, 0, 0), "EBUSY")
        assert ctx.option(RLIMIT, GET) == 1


def test_change_process(ctx) -> None:                                          # rule 53
    ctx.ioas_change_process()
    ioas = ctx.ioas_alloc()
    ctx.ioas_change_process()
    ctx.ioas_map(ioas, 0x7F00_0000_0000, 0x1000, 0x1000)
    raises_errno(ctx.ioas_change_process, "EINVAL")
    raises_errno(lambda: ctx.ioas_change_process(reserved=1), "EOPNOTSUPP")
    assert [a.iova for a in ctx.list_areas(ioas)] == [0x1000]


def test_hwpt_invalidate(ctx) -> None:                                         # rule 49
    ioas = ctx.ioas_alloc()
    err = raises_errno(lambda: ctx.hwpt_invalidate(ioas, b"x" * 16, entry_len=0, entry_num=1),
                       "EINVAL")
    assert err.metadata["entry_num"] == "0"
    raises_errno(lambda: ctx.hwpt_invalidate(ioas, reserved=1), "EOPNOTSUPP")
    # Bounded before the lookup (iommufd_hwpt_invalidate): an entry longer
    # than a page, or more than 2^19 entries, is EINVAL even for a foreign id.
    raises_errno(lambda: ctx.hwpt_invalidate(99, b"x" * 16, entry_len=4097, entry_num=1),
                 "EINVAL")
    raises_errno(lambda: ctx.hwpt_invalidate(99, b"x" * 16, entry_len=16,
                                             entry_num=(1 << 19) + 1), "EINVAL")
    raises_errno(lambda: ctx.hwpt_invalidate(99, b"x" * 16, entry_len=4096, entry_num=1 << 19),
                 "ENOENT")
    raises_errno(lambda: ctx.hwpt_invalidate(99), "ENOENT")
    err = raises_errno(lambda: ctx.hwpt_invalidate(ioas), "EINVAL")      # not nested / vIOMMU
    assert err.metadata["entry_num"] == "0"


def test_fault_queue_alloc_and_hwpt_reference(session) -> None:               # rule 50
    ctx = session.open_context()
    raises_errno(lambda: ctx.fault_queue_alloc(flags=1), "EOPNOTSUPP")
    assert ctx.list_objects() == []
    fq = ctx.fault_queue_alloc()
    fault = fq.fault_id
    objs = {o.id: o for o in ctx.list_objects()}
    assert objs[fault].type == pb.OBJECT_TYPE_FAULT
    assert objs[fault].users == 1                     # its fd (iommufd_eventq_init)
    dev = session.open_device("0000:03:00.1")
    dev_id = dev.bind(ctx)
    ioas = ctx.ioas_alloc()
    raises_errno(lambda: ctx.hwpt_alloc(dev_id, ioas, 4, fault_id=ioas), "ENOENT")
    hwpt = ctx.hwpt_alloc(dev_id, ioas, 4, fault_id=fault)
    raises_errno(lambda: ctx.destroy(fault), "EBUSY")
    ctx.destroy(hwpt)
    raises_errno(lambda: ctx.destroy(fault), "EBUSY")     # the fd still holds it
    fq.close()
    ctx.destroy(fault)
    dev.close()
