"""Device fds, binding, DMA ownership, attach/replace/detach, PASID, HWPTs and
device DMA, against a real daemon on the embedded default topology (§3, §4 and
§8 rules 54-67 of the semantics document). Devices are chosen by their
properties, so the tests follow the topology rather than hard-coded names."""
from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from support import raises_errno

from iommud_client import Client, DmaAccess, IommudError
from iommud_wire import pb
from iommud_wire.uapi import IOMMU_HWPT_ALLOC_PASID

if TYPE_CHECKING:
    from collections.abc import Iterator

MSI_START, MSI_LAST = 0xFEE00000, 0xFEEFFFFF
RW = 4 | 2
ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dmn(module_daemon_factory):
    return module_daemon_factory(name="dev")


@pytest.fixture
def cl(dmn) -> Iterator[Client]:
    with dmn.client() as c:
        yield c


@pytest.fixture
def s(cl):
    with cl.open_session("devtest") as sess:
        yield sess


class Topo:
    """Picks devices of the default topology by role."""

    def __init__(self, sess) -> None:
        self.devices = {d.name: d for d in sess.list_devices()}
        self.groups: dict[int, list] = {}
        for d in self.devices.values():
            self.groups.setdefault(d.group, []).append(d)

    def _pick(self, pred) -> list:
        found = [d for d in sorted(self.devices.values(), key=lambda d: d.name) if pred(d)]
        assert found, "the default topology lacks a device for this role"
        return found

    def singleton_vfio(self, **props) -> list:
        return self._pick(lambda d: d.driver == "vfio-pci" and len(self.groups[d.group]) == 1
                          and all(getattr(d, k) == v for k, v in props.items()))

    def safe_multi_group(self, reliable: bool | None = None) -> list:
        for members in self.groups.values():
            if (len(members) > 1 and all(m.driver == "vfio-pci" for m in members)
                    and (reliable is None or all(m.reliable_source_id for m in members) == reliable)):
                return sorted(members, key=lambda d: d.name)
        raise AssertionError("no multi-device vfio-pci group in the topology")

    def unsafe_sibling_group(self) -> tuple:
        for members in self.groups.values():
            vfio = [m for m in members if m.driver == "vfio-pci"]
            unsafe = [m for m in members if m.driver and not m.driver_managed_dma]
            if vfio and unsafe:
                return vfio[0], unsafe[0]
        raise AssertionError("no group mixing vfio-pci with a kernel driver")

    def kernel_device(self):
        return self._pick(lambda d: d.driver and not d.driver_managed_dma)[0]


@pytest.fixture
def topo(s) -> Topo:
    return Topo(s)


def group_of(sess, name: str):
    dev = next(d for d in sess.list_devices() if d.name == name)
    return sess.group(dev.group)


def snapshot(sess):
    return ([(g.group, g.owner, g.owner_cnt, g.domain) for g in sess.list_groups()],
            [(d.name, d.driver, d.user_open) for d in sess.list_devices()])


# -- device fds before bind (§3.1) -------------------------------------------

def test_open_requires_vfio_driver_and_known_name(s, topo) -> None:
    raises_errno(lambda: s.open_device(topo.kernel_device().name), "ENODEV")
    raises_errno(lambda: s.open_device("0000:ff:1f.7"), "ENODEV")


def test_unbound_fd_gives_info_but_refuses_dma_operations(s, topo) -> None:
    name = topo.singleton_vfio()[0].name
    with s.open_device(name) as dev:
        info = dev.info()
        assert info.device.name == name and not info.bound
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        before = snapshot(s)
        raises_errno(lambda: dev.attach(ioas), "EINVAL")
        raises_errno(lambda: dev.detach(), "EINVAL")
        raises_errno(lambda: dev.read(0x1000), "EINVAL")
        assert snapshot(s) == before
        assert group_of(s, name).owner == pb.GROUP_OWNER_NONE


def test_closed_device_fd_is_ebadf(s, topo) -> None:
    dev = s.open_device(topo.singleton_vfio()[0].name)
    ctx = s.open_context()
    dev.bind(ctx)
    dev.close()
    for call in (dev.info, lambda: dev.attach(1), lambda: dev.bind(ctx), dev.close):
        raises_errno(call, "EBADF")


# -- bind (§3.2, rules 55-58) --------------------------------------------------

def test_bind_claims_group_and_blocks_dma(s, topo) -> None:
    name = topo.singleton_vfio()[0].name
    ctx = s.open_context()
    with s.open_device(name) as dev:
        dev_id = dev.bind(ctx, cookie=0x1234)
        g = group_of(s, name)
        assert (g.owner, g.owner_cnt, g.domain) == (pb.GROUP_OWNER_IOMMUFD, 1, "blocking")
        objs = {o.id: o for o in ctx.list_objects()}
        assert objs[dev_id].type == pb.OBJECT_TYPE_DEVICE and objs[dev_id].cookie == 0x1234
        raises_errno(lambda: ctx.destroy(dev_id), "EBUSY")          # rule 7
        assert dev_id in {o.id for o in ctx.list_objects()}
        assert not dev.read(0x1000).ok                                     # blocked
    g = group_of(s, name)
    assert (g.owner, g.owner_cnt, g.domain) == (pb.GROUP_OWNER_NONE, 0, "default")
    assert ctx.list_objects() == []


def test_bind_argument_errors_change_nothing(s, topo) -> None:
    name = topo.singleton_vfio()[0].name
    ctx = s.open_context()
    with s.open_device(name) as dev:
        other = s.open_device(topo.singleton_vfio()[1].name)
        before = snapshot(s)
        raises_errno(lambda: dev.bind(ctx, flags=2), "EINVAL")        # rule 55
        raises_errno(lambda: dev.bind(-1), "EINVAL")
        raises_errno(lambda: dev.bind(999), "EBADF")
        raises_errno(lambda: dev.bind(other.device_fd), "EBADFD")
        assert snapshot(s) == before and ctx.list_objects() == []
        dev.bind(ctx)
        raises_errno(lambda: dev.bind(ctx), "EINVAL")                 # rule 56
        other.close()


def test_second_open_of_a_bound_device_cannot_bind(cl, s, topo) -> None:
    name = topo.singleton_vfio()[0].name
    ctx = s.open_context()
    with s.open_device(name) as dev, cl.open_session("other") as s2:
        dev.bind(ctx)
        dev2 = s2.open_device(name)
        ctx2 = s2.open_context()
        raises_errno(lambda: dev2.bind(ctx2), "EINVAL")
        assert ctx2.list_objects() == []


def test_bind_refused_while_sibling_on_kernel_driver(s, topo) -> None:   # rule 57
    vfio, _unsafe = topo.unsafe_sibling_group()
    ctx = s.open_context()
    with s.open_device(vfio.name) as dev:
        before = snapshot(s)
        raises_errno(lambda: dev.bind(ctx), "EPERM")
        assert snapshot(s) == before and ctx.list_objects() == []
        assert not group_of(s, vfio.name).viable


def test_siblings_share_one_context_only(cl, s, topo) -> None:          # rule 58
    a, b = topo.safe_multi_group()[:2]
    ctx = s.open_context()
    with s.open_device(a.name) as da, s.open_device(b.name) as db:
        da.bind(ctx)
        with cl.open_session("rival") as s2:
            ctx2 = s2.open_context()
            db2 = s2.open_device(b.name)
            raises_errno(lambda: db2.bind(ctx2), "EPERM")
            assert ctx2.list_objects() == []
        other_ctx = s.open_context()
        raises_errno(lambda: db.bind(other_ctx), "EPERM")
        db.bind(ctx)                                                       # same ctx: fine
        assert group_of(s, a.name).owner_cnt == 2
        da.close()
        assert group_of(s, a.name).owner == pb.GROUP_OWNER_IOMMUFD       # b still holds it
    g = group_of(s, a.name)
    assert (g.owner, g.owner_cnt) == (pb.GROUP_OWNER_NONE, 0)            # last unbind releases


def test_bind_on_iommufd_form_with_cookie(s, topo) -> None:
    name = topo.singleton_vfio()[0].name
    ctx = s.open_context()
    with s.open_device(name) as dev:
        dev_id = ctx.bind_device(dev, cookie=0xABC)
        assert dev.info().dev_id == dev_id
        raises_errno(lambda: ctx.bind_device(dev), "EINVAL")


# -- host drivers: deny probe (§4.3, rule 59) -------------------------------------

def test_unsafe_probe_refused_while_owned(s, topo) -> None:
    a, b = topo.safe_multi_group()[:2]
    ctx = s.open_context()
    with s.open_device(a.name) as dev:
        dev.bind(ctx)
        s.unbind_host_driver(b.name)
        before = snapshot(s)
        raises_errno(lambda: s.bind_host_driver(b.name, "e1000e"), "EBUSY")
        assert snapshot(s) == before
        s.bind_host_driver(b.name, "pci-stub")                              # IOMMU-safe: fine
        s.unbind_host_driver(b.name)
        raises_errno(lambda: s.unbind_host_driver(a.name), "EBUSY")   # open by a user
    s.bind_host_driver(b.name, "e1000e")                                    # released: probes
    assert not group_of(s, a.name).viable
    s.unbind_host_driver(b.name)
    s.bind_host_driver(b.name, "vfio-pci")
    assert group_of(s, a.name).viable


def test_hot_add_and_remove(s, topo) -> None:
    a = topo.singleton_vfio()[0]
    ctx = s.open_context()
    new = pb.HostDevice(name="0000:7f:00.0", group=a.group, vendor=0x8086, device=0x1533,
                        class_code=0x020000, driver="igb", reliable_source_id=True)
    raises_errno(lambda: s.hot_add_device(pb.HostDevice(name="bogus", group=1)), "EINVAL")
    with s.open_device(a.name) as dev:
        dev.bind(ctx)
        new.driver = "e1000e"
        raises_errno(lambda: s.hot_add_device(new), "EBUSY")          # probe denied
        assert "0000:7f:00.0" not in {d.name for d in s.list_devices()}
        new.driver = ""
        s.hot_add_device(new)                                              # driverless: fine
        raises_errno(lambda: s.hot_add_device(new), "EEXIST")
        assert {d.name for d in s.list_devices()} >= {"0000:7f:00.0"}
        raises_errno(lambda: s.hot_remove_device(a.name), "EBUSY")
    s.hot_remove_device("0000:7f:00.0")
    raises_errno(lambda: s.hot_remove_device("0000:7f:00.0"), "ENODEV")


def test_watch_host_streams_ownership_and_driver_events(s, topo) -> None:
    name = topo.singleton_vfio()[0].name
    group = topo.devices[name].group
    stream = s.watch_host()
    ctx = s.open_context()
    with s.open_device(name) as dev:
        dev.bind(ctx)
    events = []
    for ev in stream:
        events.append((ev.kind, ev.group, ev.detail))
        if ev.detail == "released":
            break
    stream.cancel()
    assert ("ownership", group, "claimed") in events
    assert events[-1] == ("ownership", group, "released")


# -- attach / detach / replace (§3.3-3.5, rules 60-66) -----------------------------

@pytest.fixture
def bound(s, topo):
    name = topo.singleton_vfio()[0].name
    ctx = s.open_context()
    dev = s.open_device(name)
    dev_id = dev.bind(ctx, cookie=0xC0FFEE)
    yield ctx, dev, dev_id
    try:
        dev.close()
    except IommudError as exc:
        assert exc.errno_name == "EBADF", exc        # the test closed it already


def test_attach_ioas_creates_auto_hwpt_and_reserves_msi(bound) -> None:
    ctx, dev, dev_id = bound
    ioas = ctx.ioas_alloc()
    hwpt = dev.attach(ioas)                                                 # rule 60
    assert hwpt not in (ioas, dev_id)
    objs = {o.id: o for o in ctx.list_objects()}
    assert objs[hwpt].type == pb.OBJECT_TYPE_HWPT_PAGING and objs[hwpt].auto_domain
    assert objs[hwpt].ioas_id == ioas and objs[ioas].users == 1
    ranges, align = ctx.ioas_iova_ranges(ioas)                              # rule 62
    assert align == 0x1000
    assert all(r.last < MSI_START or r.start > MSI_LAST for r in ranges)
    assert any(r.last == MSI_START - 1 for r in ranges)
    raises_errno(lambda: ctx.destroy(ioas), "EBUSY")                  # rule 5
    raises_errno(lambda: ctx.destroy(hwpt), "EBUSY")                  # rule 6
    dev.detach()
    assert hwpt not in {o.id for o in ctx.list_objects()}                  # auto HWPT freed
    ranges, align = ctx.ioas_iova_ranges(ioas)
    assert [(r.start, r.last) for r in ranges] == [(0, (1 << 64) - 1)] and align == 1
    dev.detach()                                                            # rule 65: no-op


def test_attach_refused_when_msi_window_mapped(bound) -> None:          # rule 61
    ctx, dev, _ = bound
    ioas = ctx.ioas_alloc()
    ctx.ioas_map(ioas, user_va=0x1000_0000, length=0x1000, iova=MSI_START + 0x1000)
    before = (ctx.list_objects(), ctx.ioas_iova_ranges(ioas))
    raises_errno(lambda: dev.attach(ioas), "EADDRINUSE")
    assert (ctx.list_objects(), ctx.ioas_iova_ranges(ioas)) == before
    assert dev.info().rid_hwpt_id == 0


def test_map_into_reserved_window_after_attach_is_einval(bound) -> None:  # rule 20
    ctx, dev, _ = bound
    ioas = ctx.ioas_alloc()
    dev.attach(ioas)
    raises_errno(lambda: ctx.ioas_map(ioas, user_va=0, length=0x1000, iova=MSI_START), "EINVAL")
    assert ctx.list_areas(ioas) == []


def test_replace_moves_to_new_ioas_and_frees_old_auto_hwpt(bound) -> None:  # rule 64
    ctx, dev, _ = bound
    a, b = ctx.ioas_alloc(), ctx.ioas_alloc()
    h1 = dev.attach(a)
    h2 = dev.attach(b)
    assert h2 != h1 and dev.info().rid_hwpt_id == h2
    ids = {o.id for o in ctx.list_objects()}
    assert h1 not in ids and h2 in ids
    assert ctx.ioas_iova_ranges(a)[0][0].last == (1 << 64) - 1               # a released MSI
    assert dev.attach(b) == h2                                               # same IOAS reuses


def test_attach_flag_and_pt_errors(bound, topo) -> None:                # rule 66
    ctx, dev, dev_id = bound
    ioas = ctx.ioas_alloc()
    raises_errno(lambda: dev.attach(ioas, flags=2), "EINVAL")
    raises_errno(lambda: dev.attach(999), "ENOENT")
    raises_errno(lambda: dev.attach(dev_id), "EINVAL")
    raises_errno(lambda: dev.detach(flags=2), "EINVAL")
    assert dev.info().rid_hwpt_id == 0


def test_group_siblings_must_share_hwpt_in_stage_2(s, topo) -> None:    # rule 63
    a, b = topo.safe_multi_group()[:2]
    ctx = s.open_context()
    with s.open_device(a.name) as da, s.open_device(b.name) as db:
        da.bind(ctx)
        db.bind(ctx)
        i1, i2 = ctx.ioas_alloc(), ctx.ioas_alloc()
        h = da.attach(i1)
        before = ctx.list_objects()
        raises_errno(lambda: db.attach(i2), "EINVAL")
        assert ctx.list_objects() == before
        assert db.attach(i1) == h                                           # shares the HWPT
        # A replace through one device moves the whole group.
        h2 = da.attach(i2)
        assert db.info().rid_hwpt_id == h2 and h not in {o.id for o in ctx.list_objects()}


def test_pasid_rules(s, topo) -> None:
    pasid_dev = topo.singleton_vfio(max_pasid_log2=20)[0]
    plain = next(d for d in topo.singleton_vfio() if d.max_pasid_log2 == 0)
    ctx = s.open_context()
    with s.open_device(pasid_dev.name) as dp, s.open_device(plain.name) as dn:
        dp_id = dp.bind(ctx)
        dn.bind(ctx)
        ioas = ctx.ioas_alloc()
        # vfio-pci has PASID ops, so a device without PASID support gets the
        # core's EINVAL, not EOPNOTSUPP (vfio_df_ioctl_attach_pt), and a PASID
        # detach there is a silent no-op (vfio_iommufd_physical_pasid_detach_ioas).
        raises_errno(lambda: dn.attach(ioas, pasid=1), "EINVAL")
        dn.detach(pasid=1)
        raises_errno(lambda: dp.attach(ioas, pasid=1 << 20), "EINVAL")
        plain_hwpt = ctx.hwpt_alloc(dp_id, ioas)                            # no ALLOC_PASID
        raises_errno(lambda: dp.attach(plain_hwpt, pasid=5), "EINVAL")
        # An IOAS id for a PASID is EINVAL: automatic HWPTs are allocated with
        # flags 0 (iommufd_device_auto_get_domain), so iommufd_hwpt_pasid_compat
        # refuses them.
        raises_errno(lambda: dp.attach(ioas, pasid=5), "EINVAL")
        assert dict(dp.info().pasid_hwpt_ids) == {}
        hwpt = dp.attach(ctx.hwpt_alloc(dp_id, ioas, IOMMU_HWPT_ALLOC_PASID), pasid=5)
        info = dp.info()
        assert dict(info.pasid_hwpt_ids) == {5: hwpt} and info.rid_hwpt_id == 0
        # A RID domain without PASID support is refused while PASIDs are attached.
        raises_errno(lambda: dp.attach(plain_hwpt), "EINVAL")
        ctx.ioas_map(ioas, user_va=0x5000_0000, length=0x2000, iova=0x40_0000)
        assert dp.dma([DmaAccess(0x40_0010, 4, True)], pasid=5).results[0].pa == 0x5000_0010
        assert not dp.dma([DmaAccess(0x40_0010, 4)], pasid=6).results[0].ok
        dp.detach(pasid=5)
        assert dict(dp.info().pasid_hwpt_ids) == {}


# -- HWPT_ALLOC and GET_HW_INFO (rules 41-46) ---------------------------------------

def test_hwpt_alloc_rules(bound, topo) -> None:
    ctx, dev, dev_id = bound
    ioas = ctx.ioas_alloc()
    raises_errno(lambda: ctx.hwpt_alloc(dev_id, 999), "EINVAL")         # rule 41
    raises_errno(lambda: ctx.hwpt_alloc(999, ioas), "ENOENT")          # rule 42
    raises_errno(lambda: ctx.hwpt_alloc(dev_id, ioas, reserved=1), "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(dev_id, ioas, 1 << 7), "EOPNOTSUPP")
    raises_errno(lambda: ctx.hwpt_alloc(dev_id, ioas, data_len=8), "EINVAL")
    hwpt = ctx.hwpt_alloc(dev_id, ioas)
    raises_errno(lambda: ctx.hwpt_alloc(dev_id, hwpt, data_type=1, data_len=8), "EINVAL")  # 44
    assert {o.id: o.auto_domain for o in ctx.list_objects()}[hwpt] is False
    assert dev.attach(hwpt) == hwpt
    dev.detach()
    assert hwpt in {o.id for o in ctx.list_objects()}                       # user HWPT stays
    ctx.destroy(hwpt)
    ctx.destroy(ioas)


def test_hwpt_alloc_refused_when_map_outside_aperture(bound, topo) -> None:  # rule 45
    ctx, dev, dev_id = bound
    bits = topo.devices[dev.name].aperture_bits
    ioas = ctx.ioas_alloc()
    ctx.ioas_map(ioas, user_va=0, length=0x1000, iova=1 << bits)
    before = ctx.list_objects()
    raises_errno(lambda: ctx.hwpt_alloc(dev_id, ioas), "EADDRINUSE")
    raises_errno(lambda: dev.attach(ioas), "EADDRINUSE")
    assert ctx.list_objects() == before


def test_get_hw_info(bound) -> None:                                      # rule 46
    ctx, _dev, dev_id = bound
    raises_errno(lambda: ctx.get_hw_info(dev_id, flags=2), "EOPNOTSUPP")
    raises_errno(lambda: ctx.get_hw_info(999), "ENOENT")
    info = ctx.get_hw_info(dev_id, data_len=0)
    assert info.data == b"" and info.data_len == 24 and info.out_data_type == 1
    big = ctx.get_hw_info(dev_id, data_len=32)
    assert len(big.data) == 32 and big.data[24:] == bytes(8)


# -- device DMA ----------------------------------------------------------------------

def test_device_dma_translates_and_faults_with_cookie(bound) -> None:
    ctx, dev, dev_id = bound
    ioas = ctx.ioas_alloc()
    assert dev.read(0x1000).fault == pb.DMA_FAULT_REASON_BLOCKED
    dev.attach(ioas)
    ctx.ioas_map(ioas, user_va=0x8000_0000, length=0x4000, iova=0x10_0000)
    ctx.ioas_map(ioas, user_va=0x9000_0000, length=0x1000, iova=0x20_0000, writeable=False)
    resp = dev.dma([DmaAccess(0x10_0008, 8, True), DmaAccess(0x30_0000, 4),
                    DmaAccess(0x20_0000, 4, True), DmaAccess(0x20_0000, 4, False),
                    DmaAccess(0x10_3ffc, 8)])
    ok = [(r.ok, r.pa, r.fault) for r in resp.results]
    assert ok == [(True, 0x8000_0008, 0), (False, 0, pb.DMA_FAULT_REASON_UNMAPPED),
                  (False, 0, pb.DMA_FAULT_REASON_PERMISSION), (True, 0x9000_0000, 0),
                  (False, 0, pb.DMA_FAULT_REASON_UNMAPPED)]
    assert [(f.dev_id, f.cookie, f.iova, f.write) for f in resp.faults] == [
        (dev_id, 0xC0FFEE, 0x30_0000, False), (dev_id, 0xC0FFEE, 0x20_0000, True),
        (dev_id, 0xC0FFEE, 0x10_3ffc, False)]


# -- lifetimes ---------------------------------------------------------------------------

def test_context_close_waits_for_bound_devices(cl, topo) -> None:
    name = topo.singleton_vfio()[0].name
    with cl.open_session("lifetime") as s:
        ctx = s.open_context()
        dev = s.open_device(name)
        dev.bind(ctx)
        ioas = ctx.ioas_alloc()
        dev.attach(ioas)
        assert ctx.close() == 0                                           # devices keep it alive
        assert s.info().session.objects == 3
        raises_errno(lambda: ctx.ioas_alloc(), "EBADF")
        dev.close()
        counts = s.info().session
        assert (counts.contexts, counts.objects, counts.device_fds) == (0, 0, 0)
        assert group_of(s, name).owner == pb.GROUP_OWNER_NONE


def test_session_close_releases_devices_and_groups(cl, topo) -> None:
    a, b = topo.safe_multi_group()[:2]
    s = cl.open_session("closing")
    ctx = s.open_context()
    for name in (a.name, b.name):
        s.open_device(name).bind(ctx)
    ctx.ioas_alloc()
    assert group_of(s, a.name).owner_cnt == 2
    assert s.close() == 3
    with cl.open_session("observer") as s2:
        g = group_of(s2, a.name)
        assert (g.owner, g.owner_cnt, g.domain) == (pb.GROUP_OWNER_NONE, 0, "default")
        daemon = cl.info().daemon
        assert (daemon.devices, daemon.device_fds, daemon.objects) == (0, 0, 0)


def test_capabilities_report_stage(bound) -> None:
    ctx, _, _ = bound
    caps = ctx.capabilities()
    assert (caps.group_stage, caps.multi_device_groups, caps.split_groups) == (2, True, False)


# -- stages 1 and 3 ---------------------------------------------------------------------

def test_stage_1_serves_only_singleton_groups(daemon_factory) -> None:
    d = daemon_factory("--group-stage", "1")
    with d.client() as c, c.open_session() as s:
        topo = Topo(s)
        ctx = s.open_context()
        assert ctx.capabilities().group_stage == 1
        a = topo.safe_multi_group()[0]
        dev = s.open_device(a.name)
        raises_errno(lambda: dev.bind(ctx), "EOPNOTSUPP")
        assert group_of(s, a.name).owner == pb.GROUP_OWNER_NONE
        single = s.open_device(topo.singleton_vfio()[0].name)
        single.bind(ctx)
        assert single.attach(ctx.ioas_alloc())


def test_stage_3_splits_reliable_groups_only(daemon_factory) -> None:
    d = daemon_factory("--group-stage", "3")
    with d.client() as c, c.open_session() as s:
        topo = Topo(s)
        ctx = s.open_context()
        assert ctx.capabilities().split_groups
        a, b = topo.safe_multi_group(reliable=True)[:2]
        da, db = s.open_device(a.name), s.open_device(b.name)
        da.bind(ctx)
        db.bind(ctx)
        i1, i2 = ctx.ioas_alloc(), ctx.ioas_alloc()
        h1, h2 = da.attach(i1), db.attach(i2)
        assert h1 != h2                                                   # 1:N
        x, y = topo.safe_multi_group(reliable=False)[:2]
        dx, dy = s.open_device(x.name), s.open_device(y.name)
        dx.bind(ctx)
        dy.bind(ctx)
        dx.attach(i1)
        raises_errno(lambda: dy.attach(i2), "EINVAL")


def test_demo_script_replays_thread_flow(dmn) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_thread_flow.py"),
                             "--endpoint", dmn.endpoint], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo complete" in result.stdout


# -- dirty tracking through a HWPT (§6, rules 47-48) ----------------------------------------

def test_hwpt_dirty_tracking(s, topo) -> None:
    name = topo.singleton_vfio(dirty_tracking=True)[0].name
    plain = next(d for d in topo.singleton_vfio() if not d.dirty_tracking).name
    ctx = s.open_context()
    with s.open_device(name) as dev, s.open_device(plain) as other:
        dev_id = dev.bind(ctx)
        other_id = other.bind(ctx)
        ioas = ctx.ioas_alloc()
        raises_errno(lambda: ctx.hwpt_alloc(other_id, ioas, 2), "EOPNOTSUPP")   # rule 43
        hwpt = ctx.hwpt_alloc(dev_id, ioas, 2)
        plain_hwpt = ctx.hwpt_alloc(dev_id, ioas)
        dev.attach(hwpt)
        ctx.ioas_map(ioas, 0x8000_0000, 0x8000, 0x10_0000)
        raises_errno(lambda: ctx.hwpt_set_dirty_tracking(hwpt, flags=2), "EOPNOTSUPP")
        raises_errno(lambda: ctx.hwpt_set_dirty_tracking(ioas), "ENOENT")      # rule 47
        raises_errno(lambda: ctx.hwpt_set_dirty_tracking(plain_hwpt), "EOPNOTSUPP")
        ctx.hwpt_set_dirty_tracking(hwpt, True)
        dev.dma([DmaAccess(0x10_1000, 8, True), DmaAccess(0x10_7ff0, 0x10, True),
                 DmaAccess(0x10_3000, 8)])
        bits = ctx.hwpt_get_dirty_bitmap(hwpt, 0x10_0000, 0x8000, 0x1000, no_clear=True)
        assert int.from_bytes(bits, "little") == 0b1000_0010
        bits = ctx.hwpt_get_dirty_bitmap(hwpt, 0x10_0000, 0x8000, 0x2000)
        assert int.from_bytes(bits, "little") == 0b1001
        assert int.from_bytes(ctx.hwpt_get_dirty_bitmap(hwpt, 0x10_0000, 0x8000), "little") == 0
        raises_errno(lambda: ctx.hwpt_get_dirty_bitmap(hwpt, 0x10_0000, 0x8000, 0), "EINVAL")
        raises_errno(lambda: ctx.hwpt_get_dirty_bitmap(hwpt, 0x10_1000, 0x2000, 0x2000), "EINVAL")
        raises_errno(lambda: ctx.hwpt_get_dirty_bitmap(hwpt, 0, 0x1000, flags=2), "EOPNOTSUPP")
        ctx.hwpt_set_dirty_tracking(hwpt, False)
        dev.write(0x10_0000)
        assert int.from_bytes(ctx.hwpt_get_dirty_bitmap(hwpt, 0x10_0000, 0x8000), "little") == 0
