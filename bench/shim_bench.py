#!/usr/bin/env python3
"""Serial ioctls per second through the preload shim, next to gRPC unary calls
and bare socket echoes, in one run on one daemon.

One run builds bench/shim_bench.c (gcc) and keeps these processes up for
every figure:

- a daemon (`python -m iommud`, JSON logs to a file, default settings);
- `iommud-preload -- shim_bench loop`: a C program under the shim, with one
  emulated /dev/iommu and an IOAS; it answers commands on a pipe, running
  each ioctl serially for a slice and printing how many it made;
- two SEQPACKET echo servers, each returning every record as it came:
  `shim_bench serve-echo`, blocking C (the kernel's round trip between two
  processes and nothing else: the floor of any transport over a UNIX
  socket), and bench/uapi_bench.py's asyncio add_reader server (the
  daemon's own style, Python: the floor of a Python event-loop server,
  which the daemon is). The C program under the shim is the client of both,
  with a record of IOAS_MAP's size.

Figures, each with one caller and one request in flight:

- shim: IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP pairs of one FIXED_IOVA page at a
  fresh IOVA (each ioctl counted), IOMMU_IOAS_IOVA_RANGES with room for 4
  ranges, and VFIO_GET_API_VERSION (no struct: the shim and transport floor);
- gRPC unary, through the Python client (iommud_client) on the same daemon:
  `ctx.ioas_map` then `ctx.ioas_unmap` of the same kind of page (each call
  counted), and `Client.echo`;
- the two echoes.

The machine is shared, so every figure is measured in short slices,
interleaved round after round, and reported as the median slice (and the
best): a load that comes and goes biases none of the figures against the
others. Each figure also gets the CPU time its client and its server spent
per operation (all their threads, from /proc/PID/task/*/schedstat), which
moves least with the machine's load. The target (issue 14) is shim
MAP/UNMAP at least 10x gRPC unary.

The shim is the tree's clients/preload/csrc/preload.c, built here with the
package's flags and preloaded as the launcher would (--library installed
takes the installed iommud-preload's instead).

    python bench/shim_bench.py [--rounds 15] [--seconds 0.5] [--library source|installed]
                               [--json bench/results/shim-DATE.json]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

import grpc

from iommud_client import Client

if TYPE_CHECKING:
    from collections.abc import Callable

    from iommud_client.client import Context

BENCH = pathlib.Path(__file__).resolve().parent
REPO = BENCH.parent
PAGE = 4096
UVA = 0x7F00_0000_0000


def gcc() -> str:
    path = shutil.which("gcc")
    if not path:
        raise SystemExit("shim_bench needs gcc")
    return path


def build(out: pathlib.Path) -> pathlib.Path:
    binary = out / "shim_bench"
    subprocess.run([gcc(), "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
                    str(REPO / "clients" / "preload" / "examples"), str(BENCH / "shim_bench.c"),
                    "-o", str(binary)], check=True)
    return binary


def build_library(out: pathlib.Path) -> pathlib.Path:
    """The tree's clients/preload/csrc/preload.c, with the package's flags
    (clients/preload/setup.py)."""
    lib = out / "libiommud-preload.so"
    subprocess.run([gcc(), "-std=gnu11", "-O2", "-g", "-fPIC", "-shared", "-fvisibility=hidden",
                    "-U_FORTIFY_SOURCE", "-Wall", "-Wextra",
                    str(REPO / "clients" / "preload" / "csrc" / "preload.c"), "-o", str(lib),
                    "-ldl", "-pthread"], check=True)
    return lib


def ready(proc: subprocess.Popen[str]) -> None:
    """Wait for a child's "ready" line."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        raise RuntimeError(f"{proc.args!r} did not start: {line!r}")


def wait_for(path: str, proc: subprocess.Popen[bytes]) -> None:
    """Wait for a socket a Python child binds (the daemon, the asyncio echo)."""
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.02)


class Loop:
    """The C program under the shim: one command, one "OPS SECONDS" answer."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.stdin, self.stdout = proc, proc.stdin, proc.stdout

    def run(self, command: str, seconds: float) -> tuple[int, float]:
        self.stdin.write(f"{command} {seconds}\n")
        self.stdin.flush()
        answer = self.stdout.readline()
        try:
            ops, took = answer.split()
            return int(ops), float(took)
        except ValueError:
            raise RuntimeError(f"shim_bench {command}: {answer!r}") from None


def run(fn: Callable[[], int], seconds: float) -> tuple[int, float]:
    """How many operations fn() did (it returns how many each call), in how long."""
    started = time.perf_counter()
    deadline = started + seconds
    done = 0
    while time.perf_counter() < deadline:
        for _ in range(10):
            done += fn()
    return done, time.perf_counter() - started


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process so far (schedstat: ns on CPU)."""
    total = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass   # a thread that ended
    return total


def grpc_figures(ctx: Context, client: Client) -> dict[str, Callable[[], int]]:
    ioas = ctx.ioas_alloc()
    iova = [1 << 32]

    def map_unmap() -> int:
        at = iova[0]
        iova[0] += 2 * PAGE
        ctx.ioas_map(ioas, user_va=UVA + at, length=PAGE, iova=at)
        if ctx.ioas_unmap(ioas, at, PAGE) != PAGE:
            raise RuntimeError("IoasUnmap unmapped the wrong length")
        return 2

    payload = b"x" * 48

    def echo() -> int:
        client.echo(payload)
        return 1

    return {"grpc_map_unmap_calls": map_unmap, "grpc_echo": echo}


LABELS = {
    "shim_map_unmap_ioctls": "shim: IOAS_MAP + IOAS_UNMAP, ioctls",
    "shim_iova_ranges": "shim: IOAS_IOVA_RANGES",
    "shim_get_api_version": "shim: VFIO_GET_API_VERSION",
    "grpc_map_unmap_calls": "gRPC: ioas_map + ioas_unmap, calls",
    "grpc_echo": "gRPC: Echo",
    "echo_c": "SEQPACKET echo, C server",
    "echo_asyncio": "SEQPACKET echo, asyncio server",
}


@dataclass
class Figure:
    """One figure's slices: ops/s each, and the CPU its client and server
    processes spent over all of them."""

    client: int
    server: int
    rates: list[float] = field(default_factory=list)
    ops: int = 0
    client_ns: int = 0
    server_ns: int = 0

    def slice(self, measure: Callable[[], tuple[int, float]]) -> None:
        c0, s0 = cpu_ns(self.client), cpu_ns(self.server)
        ops, took = measure()
        self.client_ns += cpu_ns(self.client) - c0
        self.server_ns += cpu_ns(self.server) - s0
        self.ops += ops
        self.rates.append(ops / took)

    def result(self) -> dict[str, float]:
        rates = sorted(self.rates)
        return {"median_per_s": rates[len(rates) // 2], "best_per_s": rates[-1],
                "client_cpu_us_per_op": self.client_ns / self.ops / 1e3,
                "server_cpu_us_per_op": self.server_ns / self.ops / 1e3}


def measure(loop: Loop, pids: dict[str, int], echo_c: str, echo_py: str, grpc_path: str,
            rounds: int, seconds: float) -> dict[str, dict[str, float]]:
    """Every figure in `rounds` slices of `seconds`, interleaved."""
    shim, me = loop.proc.pid, os.getpid()
    commands = {"shim_map_unmap_ioctls": ("map_unmap", pids["daemon"]),
                "shim_iova_ranges": ("iova_ranges", pids["daemon"]),
                "shim_get_api_version": ("api_version", pids["daemon"]),
                "echo_c": (f"echo {echo_c}", pids["echo_c"]),
                "echo_asyncio": (f"echo {echo_py}", pids["echo_asyncio"])}
    figures = {name: Figure(shim, server) for name, (_, server) in commands.items()}
    with Client(f"unix:{grpc_path}", keepalive=False) as client, \
            client.open_session("shim-bench", keepalive=False) as session, \
            session.open_context() as ctx:
        unary = grpc_figures(ctx, client)
        figures.update({name: Figure(me, pids["daemon"]) for name in unary})
        for command, _ in commands.values():
            loop.run(command, 0.2)   # warm up caches, allocators and connections
        for fn in unary.values():
            run(fn, 0.2)
        for _ in range(rounds):
            for name, (command, _) in commands.items():
                figures[name].slice(functools.partial(loop.run, command, seconds))
            for name, fn in unary.items():
                figures[name].slice(functools.partial(run, fn, seconds))
    return {name: figures[name].result() for name in LABELS}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--json", default="")
    ap.add_argument("--library", choices=("source", "installed"), default="source",
                    help="the shim built from this tree's preload.c (default), or the installed "
                         "iommud-preload's")
    args = ap.parse_args()
    launcher = shutil.which("iommud-preload")
    if not launcher:
        raise SystemExit("iommud-preload is not installed (README: pip install ./clients/preload)")
    results: dict[str, object] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = pathlib.Path(tmpdir)
        binary = build(tmp)
        grpc_sock, uapi_sock = str(tmp / "iommud.sock"), str(tmp / "iommud.uapi.sock")
        echo_c, echo_py = str(tmp / "echo-c.sock"), str(tmp / "echo-py.sock")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("IOMMUD_") and k != "LD_PRELOAD"}
        procs: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = []
        log: IO[str]
        try:
            with open(tmp / "iommud.log", "w") as log:
                daemon = subprocess.Popen([sys.executable, "-m", "iommud", "--socket", grpc_sock,
                                           "--log-format", "json"], stdout=log,
                                          stderr=subprocess.STDOUT, env=env)
            procs.append(daemon)
            c_echo = subprocess.Popen([binary, "serve-echo", echo_c], stdout=subprocess.PIPE,
                                      text=True, env=env)
            procs.append(c_echo)
            py_echo = subprocess.Popen([sys.executable, str(BENCH / "uapi_bench.py"), "--serve-echo",
                                        echo_py], env=env)
            procs.append(py_echo)
            ready(c_echo)
            wait_for(echo_py, py_echo)
            wait_for(uapi_sock, daemon)   # listening after the gRPC socket
            # The launcher; with the tree's library, what the launcher does
            # (docs: clients/preload/README.md) with that library instead.
            if args.library == "installed":
                argv, shim_env = [launcher, "--endpoint", uapi_sock, "--", str(binary), "loop"], env
            else:
                argv = [str(binary), "loop"]
                shim_env = {**env, "LD_PRELOAD": str(build_library(tmp)),
                            "IOMMUD_PRELOAD_SOCKET": uapi_sock}
            shim = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env=shim_env)
            procs.append(shim)
            ready(shim)
            pids = {"daemon": daemon.pid, "echo_c": c_echo.pid, "echo_asyncio": py_echo.pid}
            results["figures"] = measure(Loop(shim), pids, echo_c, echo_py, grpc_sock,
                                         args.rounds, args.seconds)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(30)
    figures = results["figures"]
    assert isinstance(figures, dict)
    med = {name: v["median_per_s"] for name, v in figures.items()}
    best = {name: v["best_per_s"] for name, v in figures.items()}
    cpu = {name: v["client_cpu_us_per_op"] + v["server_cpu_us_per_op"] for name, v in figures.items()}
    ratios = {
        "shim_map_unmap_over_grpc_map_unmap": med["shim_map_unmap_ioctls"]
        / med["grpc_map_unmap_calls"],
        "shim_map_unmap_over_grpc_map_unmap_best": best["shim_map_unmap_ioctls"]
        / best["grpc_map_unmap_calls"],
        "grpc_map_unmap_cpu_over_shim_map_unmap_cpu": cpu["grpc_map_unmap_calls"]
        / cpu["shim_map_unmap_ioctls"],
        "shim_iova_ranges_over_grpc_map_unmap": med["shim_iova_ranges"]
        / med["grpc_map_unmap_calls"],
        "shim_map_unmap_over_grpc_echo": med["shim_map_unmap_ioctls"] / med["grpc_echo"],
        "shim_map_unmap_over_echo_asyncio": med["shim_map_unmap_ioctls"] / med["echo_asyncio"],
        "shim_map_unmap_over_echo_c": med["shim_map_unmap_ioctls"] / med["echo_c"],
        "shim_get_api_version_over_echo_asyncio": med["shim_get_api_version"]
        / med["echo_asyncio"],
    }
    results.update(ratios=ratios, rounds=args.rounds, seconds_per_slice=args.seconds,
                   library=args.library,
                   machine=f"{platform.machine()} {os.cpu_count()} cpus, "
                           f"Python {platform.python_version()}, grpcio {grpc.__version__}",
                   load_before=load_before, load_after=os.getloadavg(),
                   date=time.strftime("%Y-%m-%d"))
    print(f"serial, one caller: median (best) of {args.rounds} slices of {args.seconds} s; "
          f"CPU per operation, client + server")
    for name, label in LABELS.items():
        v = figures[name]
        print(f"  {label:<38} {v['median_per_s']:9,.0f}/s ({v['best_per_s']:9,.0f})  "
              f"{1e6 / v['median_per_s']:7.1f} us   CPU {v['client_cpu_us_per_op']:6.1f} + "
              f"{v['server_cpu_us_per_op']:6.1f} us")
    print(f"  shim MAP/UNMAP over gRPC unary MAP/UNMAP: "
          f"{ratios['shim_map_unmap_over_grpc_map_unmap']:.1f}x (target 10x; best slices "
          f"{ratios['shim_map_unmap_over_grpc_map_unmap_best']:.1f}x, CPU per operation "
          f"{ratios['grpc_map_unmap_cpu_over_shim_map_unmap_cpu']:.1f}x); IOVA_RANGES over it: "
          f"{ratios['shim_iova_ranges_over_grpc_map_unmap']:.1f}x; over the asyncio echo: "
          f"{ratios['shim_map_unmap_over_echo_asyncio']:.2f}; over the C echo: "
          f"{ratios['shim_map_unmap_over_echo_c']:.2f}")
    print(f"  load average before and after: {load_before[0]:.2f}, {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=lambda v: round(v, 3))
            fh.write("\n")


if __name__ == "__main__":
    main()
