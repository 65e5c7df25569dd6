"""Per-session limits: every one is configurable, reported by GetInfo, and
going over it gives the kernel's errno for that resource with the numbers in
ErrorInfo, and changes nothing."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support import raises_errno

from iommud_client import IommudError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from iommud_client import Client

LIMITS = {"max_contexts_per_session": 3, "max_fds_per_session": 5, "max_areas_per_ioas": 4,
          "max_mapped_bytes_per_session": 0x10000, "max_sessions": 16, "dma_entry_limit": 8}
NVME_GROUP = 12
VA = 0x7F00_0000_0000


@pytest.fixture(scope="module")
def dmn(module_daemon_factory):
    args = [a for k, v in LIMITS.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    return module_daemon_factory(*args, name="limits")


@pytest.fixture
def cl(dmn) -> Iterator[Client]:
    with dmn.client() as c:
        yield c


def snapshot(sess) -> tuple:
    counts = sess.info().session
    return (counts.contexts, counts.objects, counts.areas, counts.mapped_bytes, counts.device_fds)


def test_info_reports_every_limit(cl) -> None:
    limits = cl.info().limits
    for name, value in LIMITS.items():
        assert getattr(limits, name) == value, name


def test_fds_past_the_limit_are_emfile(cl) -> None:
    with cl.open_session("fds") as s:
        ctxs = [s.open_context() for _ in range(3)]
        e = raises_errno(s.open_context, "EMFILE")    # contexts first: 3 of them
        assert e.metadata["limit"] == "3"
        s.open_group(NVME_GROUP)
        s.open_device("0000:04:10.0")                 # five fds now
        before = snapshot(s)
        e = raises_errno(lambda: s.open_group(NVME_GROUP), "EMFILE")
        assert e.metadata["limit"] == "5"
        raises_errno(lambda: s.open_device("0000:03:00.0"), "EMFILE")
        assert snapshot(s) == before
        ctxs[0].close()                               # a freed fd can be used again
        assert s.open_device("0000:03:00.0") is not None


def test_areas_past_the_ioas_limit_are_enospc(cl) -> None:
    with cl.open_session("areas") as s:
        ctx = s.open_context()
        ioas, other = ctx.ioas_alloc(), ctx.ioas_alloc()
        for i in range(4):
            ctx.ioas_map(ioas, VA, 0x1000, iova=0x10_0000 + i * 0x2000)
        before = (snapshot(s), [(a.iova, a.length) for a in ctx.list_areas(ioas)])
        e = raises_errno(lambda: ctx.ioas_map(ioas, VA, 0x1000, iova=0x20_0000), "ENOSPC")
        assert e.metadata["ioas_id"] == str(ioas)
        raises_errno(lambda: ctx.ioas_map(ioas, VA, 0x1000), "ENOSPC")
        # A copy makes one area per source area: 2 into an IOAS with room for 1.
        ctx.ioas_map(other, VA, 0x1000, iova=0x1000)
        ctx.ioas_map(other, VA + 0x1000, 0x1000, iova=0x2000)
        ctx.ioas_unmap(ioas, 0x10_0000, 0x1000)
        raises_errno(lambda: ctx.ioas_copy(ioas, other, 0x1000, 0x2000, 0x40_0000), "ENOSPC")
        assert len(ctx.list_areas(ioas)) == 3
        # A batch past the limit maps none of its entries.
        e = raises_errno(lambda: ctx.ioas_map_batch(ioas, [VA, VA], [0x1000, 0x1000]), "ENOSPC")
        assert "Request 0x1 of the batch" in e.message
        assert len(ctx.list_areas(ioas)) == 3
        # The limit is per IOAS: the other one still takes areas.
        ctx.ioas_map(other, VA, 0x1000, iova=0x3000)
        assert before[1][1:] == [(a.iova, a.length) for a in ctx.list_areas(ioas)]


def test_mapped_bytes_past_the_session_limit_are_enomem(cl) -> None:
    with cl.open_session("bytes") as s, cl.open_session("neighbour") as n:
        a, b = s.open_context(), s.open_context()
        ia, ib = a.ioas_alloc(), b.ioas_alloc()
        a.ioas_map(ia, VA, 0x8000, iova=0x10_0000)
        b.ioas_map(ib, VA, 0x6000, iova=0x10_0000)   # 0xe000 of 0x10000, across contexts
        before = snapshot(s)
        e = raises_errno(lambda: b.ioas_map(ib, VA, 0x4000, iova=0x20_0000), "ENOMEM")
        assert (e.metadata["mapped_bytes"], e.metadata["length"], e.metadata["limit"]) == \
            ("57344", "0x4000", "65536")
        raises_errno(lambda: a.ioas_copy(ia, ia, 0x10_0000, 0x4000, 0x40_0000), "ENOMEM")
        raises_errno(lambda: b.ioas_map_batch(ib, [VA, VA], [0x1000, 0x3000]),
                     "ENOMEM")                    # the batch's sum is charged
        assert snapshot(s) == before
        # Another session has its own budget.
        nctx = n.open_context()
        nctx.ioas_map(nctx.ioas_alloc(), VA, 0x10000, iova=0x10_0000)
        # Exactly up to the limit is allowed; unmapping and closing return budget.
        a.ioas_map(ia, VA, 0x2000, iova=0x30_0000)
        assert s.info().session.mapped_bytes == 0x10000
        a.close()
        b.ioas_map(ib, VA, 0xA000, iova=0x20_0000)
        assert s.info().session.mapped_bytes == 0x10000


def test_type1_map_dma_is_charged_too(cl) -> None:
    with cl.open_session("type1") as s:
        cont = s.open_container()
        grp = s.open_group(NVME_GROUP)
        grp.set_container(cont)
        cont.set_iommu()
        cont.map_dma(0x10_0000, 0xC000, VA)
        raises_errno(lambda: cont.map_dma(0x20_0000, 0x8000, VA), "ENOMEM")
        cont.map_dma(0x20_0000, 0x4000, VA)
        assert s.info().session.mapped_bytes == 0x10000
        grp.unset_container()


def test_a_session_past_its_memory_budget_is_enomem_and_unchanged(daemon_factory) -> None:
    """The memory budget bounds what a session's state holds in the daemon
    (areas, domains, dirty bits, objects, fds), whatever the other limits
    allow: past it a map or a new object is ENOMEM and nothing changes; freed
    state makes room again. A second session has its own budget."""
    import array
    d = daemon_factory("--max-memory-bytes-per-session", str(4 << 20))
    with d.client() as c, c.open_session("vm") as s, c.open_session("other") as s2:
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        n = 4096
        batches = 0
        while True:
            base = batches * n
            vas = array.array("Q", (VA + (base + k) * 0x1000 for k in range(n)))
            try:
                ctx.ioas_map_batch(ioas, vas, array.array("Q", [0x1000] * n))
            except IommudError as exc:
                err = exc
                break
            batches += 1
            assert batches < 1000, "the budget never bound"
        assert err.errno_name == "ENOMEM"
        assert "memory" in str(err) and err.metadata["limit"] == str(4 << 20)
        assert batches > 0
        [obj] = [o for o in ctx.list_objects() if o.id == ioas]
        assert obj.areas == batches * n                  # the refused batch made nothing
        # Smaller and smaller batches fill what is left, until not even one
        # area fits; then no object fits either.
        extra, size, at = 0, n, (batches + 1) * n
        while size:
            vas = array.array("Q", (VA + (at + k) * 0x1000 for k in range(size)))
            try:
                ctx.ioas_map_batch(ioas, vas, array.array("Q", [0x1000] * size))
                extra, at = extra + size, at + size
            except IommudError as exc:
                assert exc.errno_name == "ENOMEM"
                size //= 2
        raises_errno(lambda: ctx.ioas_map(ioas, VA, 0x1000), "ENOMEM")
        raises_errno(lambda: ctx.ioas_alloc(), "ENOMEM")
        assert [o.areas for o in ctx.list_objects()] == [batches * n + extra]
        # Another session is not charged for this one.
        ctx2 = s2.open_context()
        ctx2.ioas_map(ctx2.ioas_alloc(), VA, 0x1000, iova=0x1000)
        # Freeing state makes room again.
        ctx.ioas_unmap_all(ioas)
        ctx.ioas_map_batch(ioas, array.array("Q", (VA + k * 0x1000 for k in range(n))),
                           array.array("Q", [0x1000] * n))
        assert ctx.ioas_alloc() > ioas
