"""64 sessions at once against one daemon on its UNIX socket: mapping,
unmapping, translating, binding, attaching and closing devices, a fixed
number of operations each, then every invariant is checked against what each
client was told. Nothing here is timed: throughput is measured by
bench/rpc_bench.py, never asserted by a test.

Each worker keeps a model of what it was acknowledged (its areas, its bound
devices). Afterwards the daemon must agree with every model exactly: no area
lost, duplicated or overlapping, every translation right, each group owned by
at most one context and counted once per bound device, and the daemon-wide
counts equal to the sum of the models. Closing every session must then leave
nothing behind. Contention is real: the workers compete for the same devices,
so binds fail with EPERM when another context owns the group or EINVAL when
another fd holds the device, and those are the only failures a worker accepts.
"""
from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest

from iommud_client import Client, IommudError
from iommud_wire import pb

SESSIONS = 64
OPS_PER_WORKER = 80     # operations each worker completes (a step with nothing to do is none)
PAGE = 4096
RW = 4 | 2


@dataclass
class Worker:
    index: int
    session: object = None
    ctx: object = None
    ioas_id: int = 0
    areas: dict[int, tuple[int, int]] = field(default_factory=dict)   # iova -> (length, user_va)
    bound: dict[str, object] = field(default_factory=dict)            # device name -> DeviceFd
    attached: set[str] = field(default_factory=set)
    ops: Counter = field(default_factory=Counter)
    failure: BaseException | None = None


def host_view(cl: Client) -> tuple[list, dict[int, tuple[int, int]]]:
    """The host's devices and each group's (owner, owner_cnt), through a short session."""
    s = cl.open_session("probe")
    try:
        return s.list_devices(), {g.group: (g.owner, g.owner_cnt) for g in s.list_groups()}
    finally:
        s.close()


def run_worker(w: Worker, endpoint: str, devices: list[str], start: threading.Barrier) -> None:
    rng = random.Random(w.index)
    try:
        cl = Client(endpoint)
        w.session = cl.open_session(f"load-{w.index}", lease_seconds=120)
        w.ctx = w.session.open_context()
        w.ioas_id = w.ctx.ioas_alloc()
        start.wait()
        while sum(w.ops.values()) < OPS_PER_WORKER:
            step(w, rng, devices)
    except BaseException as exc:   # reported and asserted by the test thread
        w.failure = exc


def step(w: Worker, rng: random.Random, devices: list[str]) -> None:
    roll = rng.random()
    if roll < 0.35 or not w.areas:
        length = PAGE * rng.randint(1, 16)
        user_va = 0x7F00_0000_0000 + rng.randrange(1 << 20) * PAGE
        iova = w.ctx.ioas_map(w.ioas_id, user_va, length)
        assert iova not in w.areas
        w.areas[iova] = (length, user_va)
        w.ops["map"] += 1
    elif roll < 0.55:
        iova = rng.choice(list(w.areas))
        length, _ = w.areas.pop(iova)
        assert w.ctx.ioas_unmap(w.ioas_id, iova, length) == length
        w.ops["unmap"] += 1
    elif roll < 0.75:
        iovas = rng.sample(list(w.areas), min(len(w.areas), 32))
        got = w.ctx.translate_batch(w.ioas_id, [i + 8 for i in iovas])
        assert list(got.pas) == [w.areas[i][1] + 8 for i in iovas]
        w.ops["translate"] += 1
    elif roll < 0.90:
        name = rng.choice(devices)
        if name in w.bound:
            dev = w.bound.pop(name)
            w.attached.discard(name)
            dev.close()
            w.ops["unbind"] += 1
            return
        dev = w.session.open_device(name)
        try:
            dev.bind(w.ctx)
        except IommudError as exc:
            dev.close()
            # Another context owns the group (EPERM, rule 58), or another fd
            # already holds this device (EINVAL, §3 step 4).
            assert exc.errno_name in ("EPERM", "EINVAL"), exc
            w.ops["bind_refused"] += 1
            return
        w.bound[name] = dev
        w.ops["bind"] += 1
    else:
        unattached = [n for n in w.bound if n not in w.attached]
        if not unattached:
            return
        name = rng.choice(unattached)
        w.bound[name].attach(w.ioas_id)
        w.attached.add(name)
        w.ops["attach"] += 1


@pytest.fixture(scope="module")
def dmn(module_daemon_factory):
    return module_daemon_factory("--max-sessions", "256", name="load")


@pytest.mark.timeout(600)
def test_64_sessions_under_load_keep_every_invariant(dmn) -> None:
    with dmn.client() as cl:
        host_devices, groups_before = host_view(cl)
    devices = [d.name for d in host_devices if d.driver == "vfio-pci"]
    assert len(devices) >= 8
    workers = [Worker(i) for i in range(SESSIONS)]
    start = threading.Barrier(SESSIONS)
    threads = [threading.Thread(target=run_worker, args=(w, dmn.endpoint, devices, start))
               for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    failures = [(w.index, w.failure) for w in workers if w.failure is not None]
    assert not failures, failures[:3]

    totals = sum((w.ops for w in workers), Counter())
    # The load was real: every kind of operation ran, contended binds included.
    for kind in ("map", "unmap", "translate", "bind", "attach", "unbind", "bind_refused"):
        assert totals[kind] > 0, totals
    # Every worker completed its whole quota, each operation counted once.
    assert [sum(w.ops.values()) for w in workers] == [OPS_PER_WORKER] * SESSIONS
    assert sum(totals.values()) == SESSIONS * OPS_PER_WORKER, totals
    print(f"{SESSIONS} sessions: {dict(totals)}")

    with dmn.client() as cl:
        # Every session's areas are exactly its acknowledged model.
        for w in workers:
            areas = w.ctx.list_areas(w.ioas_id)
            got = [(a.iova, a.length, a.user_va, a.prot) for a in areas]
            want = sorted((iova, ln, va, RW) for iova, (ln, va) in w.areas.items())
            assert got == want, w.index
            for (iova, ln, _, _), nxt in itertools.pairwise(got):
                assert iova + ln <= nxt[0], "overlapping areas"
            if w.areas:
                iovas = sorted(w.areas)
                res = w.ctx.translate_batch(w.ioas_id, iovas)
                assert list(res.pas) == [w.areas[i][1] for i in iovas]
            listed = sorted(o.device for o in w.ctx.list_objects()
                            if o.type == pb.OBJECT_TYPE_DEVICE)
            assert listed == sorted(w.bound), w.index

        # Group ownership: a group's devices are bound in one context at most,
        # and the group's claim counts exactly those devices.
        by_name = {d.name: d.group for d in host_devices}
        holders: dict[int, set[int]] = {}
        bound_per_group: Counter = Counter()
        for w in workers:
            for name in w.bound:
                holders.setdefault(by_name[name], set()).add(w.index)
                bound_per_group[by_name[name]] += 1
        assert all(len(h) == 1 for h in holders.values()), holders
        for group, (owner, owner_cnt) in host_view(cl)[1].items():
            if group in bound_per_group:
                assert owner == pb.GROUP_OWNER_IOMMUFD, group
                assert owner_cnt == bound_per_group[group], group
            else:
                assert (owner, owner_cnt) == groups_before[group], group

        # Daemon-wide counts balance with the sum of the models.
        counts = cl.info().daemon
        assert counts.areas == sum(len(w.areas) for w in workers)
        assert counts.mapped_bytes == sum(ln for w in workers for ln, _ in w.areas.values())
        assert counts.devices == sum(len(w.bound) for w in workers)

        for w in workers:
            w.session.close()
        counts = cl.info().daemon
        assert (counts.sessions, counts.contexts, counts.objects, counts.areas,
                counts.mapped_bytes, counts.devices, counts.device_fds) == (0,) * 7, counts
        assert host_view(cl)[1] == groups_before
        assert cl.health() == "SERVING"
