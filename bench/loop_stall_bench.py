#!/usr/bin/env python3
"""How long one large request keeps the daemon's event loop from serving others.

A probe thread sends Echo on its own channel back to back while the main
thread issues the largest legal request of each RPC (at the daemon's default
limits, or the largest one the scenario names). The loop stall of a request
is the longest Echo round trip the probe saw while it ran, less the probe's
median round trip when the daemon is idle: a request that keeps the loop busy
for 200 ms makes one Echo wait about 200 ms. Target: at most 10 ms each.

    python bench/loop_stall_bench.py [--areas 1048576] [--json bench/results/loop-stall-DATE.json]
"""
from __future__ import annotations

import argparse
import array
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import grpc

from iommud_client import Client, DmaAccess
from iommud_wire import pb, pb_grpc

PAGE = 4096
RW = 4 | 2
BUF = 0x7F00_0000_0000


class Probe:
    """Echo back to back on a private channel; records each round trip."""

    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(endpoint)
        self.stub = pb_grpc.IommuServiceStub(self.channel)
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        req = pb.EchoRequest(payload=b"p")
        while not self._stop.is_set():
            start = time.perf_counter()
            self.stub.Echo(req, timeout=120)
            self.samples.append((start, time.perf_counter() - start))

    def __enter__(self) -> Probe:
        self._thread.start()
        while len(self.samples) < 50:
            time.sleep(0.001)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.channel.close()

    def after(self, t: float) -> None:
        """Wait until a probe round trip that started after `t` has landed."""
        while not any(start > t for start, _ in self.samples[-8:]):
            time.sleep(0.001)

    def worst_since(self, t0: float) -> float:
        """The longest round trip that overlapped the window since t0."""
        return max((d for s, d in self.samples if s + d >= t0), default=0.0)


def start_daemon(tmp: str, args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    sock = os.path.join(tmp, "iommud.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
    with open(os.path.join(tmp, "iommud.log"), "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "iommud", "--socket", sock,
                                 "--log-format", "json", *args],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    endpoint = f"unix:{sock}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(endpoint, timeout=2) as c:
                c.echo(b"")
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


def measure(probe: Probe, baseline: float, fn: Callable[[], object]) -> tuple[float, float]:
    """(request seconds, loop stall seconds) of one run of fn."""
    t0 = time.perf_counter()
    fn()
    took = time.perf_counter() - t0
    probe.after(time.perf_counter())                # let the probe's last call land
    return took, max(0.0, probe.worst_since(t0) - baseline)


def fill(ctx, ioas: int, areas: int, length: int = PAGE) -> None:
    """`areas` allocated areas of `length`, in batches the daemon accepts."""
    step = 32768
    for base in range(0, areas, step):
        n = min(step, areas - base)
        ctx.ioas_map_batch(ioas, array.array("Q", (BUF + (base + k) * length
                                                   for k in range(n))),
                           array.array("Q", [length] * n))


#: A scenario: `prepare()` sets up (not measured) and returns the request to run.
Scenario = Callable[[], Callable[[], object]]


def scenarios(c: Client, areas: int) -> dict[str, Scenario]:
    s = c.open_session("stall", lease_seconds=3600)
    ctx = s.open_context()
    lim = c.info().limits
    big = ctx.ioas_alloc()
    fill(ctx, big, areas)
    first = ctx.list_areas_page(big, 0, 1).areas[0].iova
    n_batch = 32768
    out: dict[str, Scenario] = {}

    def fresh_ioas() -> int:
        return ctx.ioas_alloc()

    out[f"IoasMapBatch x{n_batch} page maps"] = lambda: (lambda i: lambda: ctx.ioas_map_batch(
        i, array.array("Q", (BUF + k * PAGE for k in range(n_batch))),
        array.array("Q", [PAGE] * n_batch)))(fresh_ioas())
    out[f"IoasMapBatch x{n_batch} sub-page maps"] = lambda: (lambda i: lambda: ctx.ioas_map_batch(
        i, array.array("Q", (BUF + k * 0x1000 for k in range(n_batch))),
        array.array("Q", [0x800] * n_batch)))(fresh_ioas())
    iovas = array.array("Q", (BUF + (k % areas) * PAGE for k in range(lim.max_translate_batch)))
    out[f"TranslateBatch x{lim.max_translate_batch:#x}"] = lambda: (
        lambda: ctx.translate_batch(big, iovas))
    out["ListAreas page of 4096"] = lambda: (lambda: ctx.list_areas_page(big, first))
    out["ListObjects"] = lambda: (lambda: ctx.list_objects())
    out["GetInfo"] = lambda: (lambda: c.info(s.token))
    out[f"IoasCopy of {areas} areas"] = lambda: (lambda i: lambda: ctx.ioas_copy(
        i, big, first, areas * PAGE))(fresh_ioas())
    out["IoasAllowIovas x4096"] = lambda: (lambda i: lambda: ctx.ioas_allow_iovas(
        i, [(k << 24, (k << 24) + 0xFFFF) for k in range(1, 4097)]))(fresh_ioas())
    dev = s.open_device("0000:04:10.0")            # stays open for the session's life
    dev_id = dev.bind(ctx)
    dma_ioas = ctx.ioas_alloc()
    dev.attach(dma_ioas)
    dma_iova = ctx.ioas_map(dma_ioas, BUF, 1 << 20)
    accesses = [DmaAccess(dma_iova + (k % 256) * PAGE, 8, True) for k in range(65536)]
    out["DeviceDma x65536"] = lambda: (lambda: dev.dma(accesses))
    out[f"HwptAlloc on an IOAS of {areas} areas (fills a domain)"] = lambda: (
        lambda: ctx.hwpt_alloc(dev_id, big))
    out[f"DeviceAttach to an IOAS of {areas} areas"] = lambda: (
        dev.detach(), lambda: dev.attach(big))[1]

    def unmap_all() -> Callable[[], object]:
        victim = ctx.ioas_alloc()
        fill(ctx, victim, areas)
        return lambda: ctx.ioas_unmap_all(victim)
    out[f"IoasUnmap of {areas} areas"] = unmap_all

    def destroy() -> Callable[[], object]:
        victim = ctx.ioas_alloc()
        fill(ctx, victim, areas)
        return lambda: ctx.destroy(victim)
    out[f"Destroy of an IOAS with {areas} areas"] = destroy

    def close_session() -> Callable[[], object]:
        s2 = c.open_session("stall2", keepalive=False)
        ctx2 = s2.open_context()
        fill(ctx2, ctx2.ioas_alloc(), areas)
        return lambda: s2.close()
    out[f"CloseSession with {areas} areas"] = close_session

    def many_sessions() -> Callable[[], object]:
        sessions = [c.open_session(f"s{k}", keepalive=False) for k in range(1000)]
        for x in sessions:
            x.open_context().ioas_alloc()

        def run() -> object:
            info = c.info()
            for x in sessions:
                x.close()
            return info
        return run
    out["GetInfo with 1000 sessions"] = many_sessions
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--areas", type=int, default=(1 << 20) - 1)
    ap.add_argument("--runs", type=int, default=3,
                    help="runs of each request; the least stall is the figure (a loaded "
                         "machine only ever adds to it)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, endpoint = start_daemon(tmp, ["--max-memory-bytes-per-session", str(8 << 30)])
        try:
            with Client(endpoint, timeout=600) as c, Probe(endpoint) as probe:
                base = statistics.median(d for _, d in probe.samples[-40:])
                plan = scenarios(c, args.areas)
                for name, prepare in plan.items():
                    runs = [measure(probe, base, prepare()) for _ in range(args.runs)]
                    stall = min(r[1] for r in runs)
                    took = statistics.median(r[0] for r in runs)
                    results[name] = {"request_ms": round(took * 1e3, 2),
                                     "loop_stall_ms": round(stall * 1e3, 2),
                                     "loop_stall_ms_runs": [round(r[1] * 1e3, 2) for r in runs]}
                    print(f"{name:55s} request {took * 1e3:9.1f} ms   loop stall "
                          f"{stall * 1e3:8.1f} ms  (runs: "
                          f"{', '.join(f'{r[1] * 1e3:.1f}' for r in runs)})", flush=True)
                results["probe_median_ms"] = round(base * 1e3, 3)
        finally:
            proc.terminate()
            proc.wait(30)
    results.update(machine=f"{platform.machine()} {os.cpu_count()} cpus, "
                           f"Python {platform.python_version()}", date=time.strftime("%Y-%m-%d"),
                   areas=args.areas)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")


if __name__ == "__main__":
    main()
