"""The fail-nth walk, after the kernel's iommufd_fail_nth selftest: for each
operation, fail its step N = 1, 2, ... (ENOMEM, named in ErrorInfo) until it
succeeds, and after every injected failure compare the whole visible state
with the state before the call. At the end, closing the sessions must leave
no object, ownership claim, mapping or byte of accounting."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from support import raises_errno

from iommud_client import Client, IommudError
from iommud_wire import pb

if TYPE_CHECKING:
    from collections.abc import Callable

NVME, NVME_GROUP = "0000:03:00.0", 12
BRIDGE_A, BRIDGE_B, BRIDGE_GROUP = "0000:05:00.0", "0000:05:00.1", 20
NVME2, NVME2_GROUP = "0000:03:00.1", 13
VA = 0x7F00_0000_0000


@pytest.fixture(scope="module")
def dmn(module_daemon_factory):
    return module_daemon_factory("--debug-fail-nth", "1", name="failnth")


class World:
    """Everything the test can observe, from one session plus the host."""

    def __init__(self, client: Client, sess) -> None:
        self.client, self.sess = client, sess
        self.contexts: list = []       # Context objects (iommufd and containers)
        self.containers: list = []

    def snapshot(self) -> Any:
        counts = self.sess.info().session
        state: list[Any] = [(counts.contexts, counts.objects, counts.ioas, counts.areas,
                             counts.mapped_bytes, counts.hwpts, counts.devices, counts.device_fds)]
        for ctx in self.contexts:
            objs = ctx.list_objects()
            state.append([(o.id, o.type, o.users, o.areas, o.mapped_bytes, o.ioas_id,
                           o.auto_domain, o.device) for o in objs])
            for o in objs:
                if o.type == pb.OBJECT_TYPE_IOAS:   # its areas, holes and alignment
                    state.append([(a.iova, a.length, a.user_va, a.prot)
                                  for a in ctx.list_areas(o.id)])
                    state.append(ctx.ioas_iova_ranges(o.id))
        for cont in self.containers:
            try:
                state.append(cont.iommu_get_info().SerializeToString())
            except IommudError as exc:          # no IOMMU set yet
                state.append(exc.errno_name)
        state.append(groups(self.sess))
        state.append([(d.name, d.driver) for d in self.sess.list_devices()])
        return state

    def walk(self, op: Callable[[], Any], min_steps: int = 1) -> Any:
        """Fail op's step 1, 2, ... until it succeeds; returns its result."""
        before = self.snapshot()
        sites: list[str] = []
        for nth in range(1, 100):
            self.client.metadata = [("iommud-fail-nth", str(nth))]
            try:
                result = op()
            except IommudError as exc:
                assert exc.errno_name == "ENOMEM", exc
                assert exc.metadata.get("fail_nth") == str(nth), exc.metadata
                sites.append(exc.metadata["site"])
            else:
                assert len(sites) >= min_steps, sites
                return result
            finally:
                self.client.metadata = []
            assert self.snapshot() == before, f"step {nth} ({sites[-1]}) left state behind"
        raise AssertionError(f"never succeeded: {sites}")


def groups(sess) -> list[tuple]:
    return [(g.group, g.owner, g.owner_cnt, g.domain) for g in sess.list_groups()]


def assert_nothing_left(c: Client, base, groups_before: list[tuple]) -> None:
    """After the walk's session closed: daemon counts and every group as before."""
    assert c.info().daemon == base
    with c.open_session("check") as s2:
        assert groups(s2) == groups_before


def test_injection_is_refused_when_off(daemon) -> None:
    with daemon.client() as c:
        c.metadata = [("iommud-fail-nth", "1")]
        raises_errno(lambda: c.open_session("nope"), "EPERM")


def test_bad_step_numbers_are_einval(dmn) -> None:
    with dmn.client() as c:
        for bad in ("0", "-1", "x"):
            c.metadata = [("iommud-fail-nth", bad)]
            raises_errno(lambda: c.open_session("bad"), "EINVAL")


def test_fail_nth_walk_over_native_calls_leaves_nothing(dmn) -> None:
    with dmn.client() as c:
        base = c.info().daemon
        sess = c.open_session("walk")
        w, groups_before = World(c, sess), groups(sess)
        ctx = w.walk(sess.open_context)
        w.contexts.append(ctx)
        ioas = w.walk(ctx.ioas_alloc)
        ioas2 = w.walk(ctx.ioas_alloc)
        w.walk(lambda: ctx.ioas_map(ioas, VA, 0x4000, iova=0x10_0000), min_steps=1)
        w.walk(lambda: ctx.ioas_map(ioas, VA + 0x4000, 0x2000), min_steps=1)
        w.walk(lambda: ctx.ioas_map_batch(ioas, [VA, VA + 0x1000], [0x1000, 0x3000]), min_steps=1)

        dev = sess.open_device(NVME)
        dev_id = w.walk(lambda: dev.bind(ctx), min_steps=2)   # object id, DMA ownership
        # Attach creates an automatic HWPT: id, aperture, alignment, MSI window.
        w.walk(lambda: dev.attach(ioas), min_steps=3)
        w.walk(lambda: ctx.ioas_map(ioas, VA, 0x1000), min_steps=1)
        w.walk(lambda: ctx.ioas_copy(ioas2, ioas, 0x10_0000, 0x4000, 0x20_0000), min_steps=1)
        # Replace onto the second IOAS: a new HWPT, reserved regions moved.
        w.walk(lambda: dev.attach(ioas2), min_steps=3)
        hwpt = w.walk(lambda: ctx.hwpt_alloc(dev_id, ioas), min_steps=2)
        w.walk(lambda: dev.attach(hwpt), min_steps=1)

        # A multi-device group: the sibling binds into the same context.
        a, b = sess.open_device(BRIDGE_A), sess.open_device(BRIDGE_B)
        w.walk(lambda: a.bind(ctx), min_steps=2)
        w.walk(lambda: b.bind(ctx), min_steps=1)
        w.walk(lambda: a.attach(ioas), min_steps=1)
        w.walk(lambda: b.attach(ioas), min_steps=1)

        sess.close()
        assert_nothing_left(c, base, groups_before)


def test_fail_nth_walk_over_type1_compat_leaves_nothing(dmn) -> None:
    with dmn.client() as c:
        base = c.info().daemon
        sess = c.open_session("compat")
        w, groups_before = World(c, sess), groups(sess)
        cont = w.walk(sess.open_container)
        w.contexts.append(cont)
        w.containers.append(cont)
        grp = w.walk(lambda: sess.open_group(NVME2_GROUP))
        w.walk(lambda: grp.set_container(cont), min_steps=1)
        w.walk(cont.set_iommu, min_steps=3)      # IOAS, HWPT, ownership and reservations
        w.walk(lambda: cont.map_dma(0x10_0000, 0x4000, VA), min_steps=1)
        w.walk(lambda: cont.map_dma(0x20_0000, 0x1000, VA + 0x8000), min_steps=1)
        devfd = w.walk(lambda: grp.get_device_fd(NVME2), min_steps=1)
        devfd.close()
        grp.unset_container()
        sess.close()
        assert_nothing_left(c, base, groups_before)
