#!/usr/bin/env python3
"""The kernel's own iommufd selftest, run against iommud through the preload shim.

    python scripts/upstream_selftest.py [--cache DIR] [--results FILE] [--only NAME]

1. Fetch: Debian's `linux-source-7.3` package (7.3.x from trixie-backports) is
   downloaded with `apt-get download` and a temporary source list (nothing is
   installed, the machine's apt sources are left alone), and only what the
   test needs is extracted into the cache: tools/testing/selftests/iommu, the
   kselftest headers, the selftest's iommufd_test.h, and the uapi headers.
   The .deb is deleted afterwards; the extracted tree (about 10 MB) stays.
2. Build: `iommufd` and `iommufd_fail_nth` with gcc, as the selftest's
   Makefile does (`-D__user=`, the extracted include dirs, `-lcap`); libcap-dev
   is installed with apt-get when it is missing. Rebuilt only when a source
   or the flags change.
3. Run: a daemon with `--debug-selftest 1 --debug-fail-nth 1` on a UNIX socket
   in a temporary directory, and each binary under `iommud-preload` with a
   time limit (the harness kills a case after 30 s on its own); the kselftest
   TAP output is parsed into one line per case. iommufd_fail_nth runs with the
   shim's fault-injection emulation (a stand-in debugfs, and the tasks'
   fail-nth files driving the daemon's fail-nth walk).

The cache defaults to $XDG_CACHE_HOME/iommud/selftest (~/.cache/iommud/selftest),
outside the repository: nothing from the kernel tree is ever committed. The
results (one line per case: "PASS|FAIL|SKIP|TIMEOUT binary case") go to
--results, default <cache>/results/latest.txt, with the raw TAP output beside
it. tests/test_upstream_selftest.py runs this and holds the passing counts to
a floor.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

#: The pinned kernel series: Debian's linux-source-7.3, from trixie-backports.
PACKAGE = "linux-source-7.3"
SUITE = "trixie-backports"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
TOP = "linux-source-7.3"
#: What is extracted from the source tarball (tar wildcards under TOP/).
EXTRACT = (
    "tools/testing/selftests/iommu/*",
    "tools/testing/selftests/kselftest*",
    "drivers/iommu/iommufd/iommufd_test.h",
    "include/uapi/*",
    "arch/x86/include/uapi/*",
)
SELFTEST_DIR = "tools/testing/selftests/iommu"
BINARIES = ("iommufd", "iommufd_fail_nth")
#: The selftest Makefile's flags (CFLAGS, LDLIBS) and lib.mk's (_GNU_SOURCE, the
#: selftests dir, the kernel's uapi headers); -D__user= for the raw uapi headers.
CFLAGS = ("-Wall", "-O2", "-Wno-unused-function", "-D_GNU_SOURCE=", "-D__user=")
LDLIBS = ("-lcap",)
#: Wall-clock limits per binary, in seconds: the whole run stays bounded even
#: if a case hangs past the harness's own 30 s per case.
TIMEOUTS = {"iommufd": 900.0, "iommufd_fail_nth": 600.0}
#: How long the daemon may take to stop once asked.
STOP_TIMEOUT = 20.0
#: 2 MiB huge pages the hugetlb cases need at once: the largest is the 128 MiB
#: MAP_HUGETLB buffer of iommufd_dirty_tracking.domain_dirty128M_huge (24 cases
#: map MAP_HUGETLB memory; each case runs alone). Reserved for the run with
#: /proc/sys/vm/nr_hugepages when fewer are free, and given back after.
HUGEPAGES = 72
NR_HUGEPAGES = pathlib.Path("/proc/sys/vm/nr_hugepages")


def log(msg: str) -> None:
    print(f"upstream_selftest: {msg}", file=sys.stderr, flush=True)


def default_cache() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(pathlib.Path.home() / ".cache")
    return pathlib.Path(base) / "iommud" / "selftest"


# -- fetch -----------------------------------------------------------------------------

def debian_mirror() -> str:
    """The machine's own Debian mirror (deb822 .sources, else sources.list)."""
    for path in sorted(pathlib.Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "URIs:" and "security" not in parts[1]:
                return parts[1]
    sources = pathlib.Path("/etc/apt/sources.list")
    if sources.exists():
        for line in sources.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in line:
                return next(p for p in parts[1:] if "://" in p)
    return "http://deb.debian.org/debian"


def _run(cmd: list[str], cwd: pathlib.Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n"
                           f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return proc


def fetch(cache: pathlib.Path) -> pathlib.Path:
    """The extracted source tree in the cache, fetched when it is missing."""
    src = cache / "src"
    stamp = src / ".iommud-extracted.json"
    if stamp.exists():
        return src
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apt-", dir=cache) as tmp:
        scratch = pathlib.Path(tmp)
        for d in ("lists/partial", "cache/archives/partial"):
            (scratch / d).mkdir(parents=True)
        mirror = debian_mirror()
        (scratch / "sources.list").write_text(f"deb [signed-by={KEYRING}] {mirror} {SUITE} main\n")
        opts = [f"-oDir::Etc::SourceList={scratch / 'sources.list'}",
                "-oDir::Etc::SourceParts=/dev/null", f"-oDir::State::Lists={scratch / 'lists'}",
                f"-oDir::Cache={scratch / 'cache'}", "-oDebug::NoLocking=1", "-qq"]
        if os.geteuid() == 0:
            opts.append("-oAPT::Sandbox::User=root")  # _apt cannot write the scratch dir
        log(f"apt-get update ({mirror} {SUITE})")
        _run(["apt-get", *opts, "update"])
        log(f"apt-get download {PACKAGE} (about 170 MB)")
        _run(["apt-get", *opts, "download", PACKAGE], cwd=scratch)
        debs = sorted(scratch.glob(f"{PACKAGE}_*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download left {debs}")
        deb = debs[0]
        version = deb.name.split("_")[1]
        if not version.startswith("7.3."):
            raise RuntimeError(f"{deb.name} is not a 7.3.x source")
        sha256 = hashlib.sha256(deb.read_bytes()).hexdigest()
        partial = cache / "src.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        log(f"extracting {len(EXTRACT)} paths of {deb.name}")
        deb_tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                   stdout=subprocess.PIPE)
        inner = subprocess.Popen(["tar", "-xO", f"./usr/src/{PACKAGE}.tar.xz"],
                                 stdin=deb_tar.stdout, stdout=subprocess.PIPE)
        assert deb_tar.stdout is not None and inner.stdout is not None
        deb_tar.stdout.close()
        out = subprocess.run(["tar", "-xJ", "-C", str(partial), "--strip-components=1",
                              "--wildcards", *(f"{TOP}/{p}" for p in EXTRACT)],
                             stdin=inner.stdout, capture_output=True, text=True)
        inner.stdout.close()
        if inner.wait() or deb_tar.wait() or out.returncode:
            raise RuntimeError(f"extracting {deb.name} failed: {out.stderr[-2000:]}")
        (partial / stamp.name).write_text(json.dumps(
            {"package": PACKAGE, "version": version, "deb": deb.name, "sha256": sha256,
             "mirror": mirror, "suite": SUITE, "paths": list(EXTRACT)}, indent=1) + "\n")
        shutil.rmtree(src, ignore_errors=True)
        partial.rename(src)
    return src


def source_version(src: pathlib.Path) -> str:
    data = json.loads((src / ".iommud-extracted.json").read_text())
    return str(data["version"])


# -- build -----------------------------------------------------------------------------

def ensure_libcap() -> None:
    """libcap-dev (sys/capability.h), installed with apt-get when missing."""
    if subprocess.run(["dpkg", "-s", "libcap-dev"], capture_output=True).returncode == 0:
        return
    if os.geteuid() != 0:
        raise RuntimeError("libcap-dev is missing and installing it needs root (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log("apt-get install libcap-dev")
    _run(["apt-get", "update", "-qq"], env=env)
    _run(["apt-get", "install", "-y", "-qq", "libcap-dev"], env=env)


def build(cache: pathlib.Path, src: pathlib.Path) -> dict[str, pathlib.Path]:
    """gcc the selftest binaries into <cache>/bin; rebuilt when a source or the
    flags change."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build the selftest")
    ensure_libcap()
    out = cache / "bin"
    out.mkdir(parents=True, exist_ok=True)
    includes = ["-isystem", str(src / "include/uapi"), "-isystem",
                str(src / "arch/x86/include/uapi"), "-I", str(src / "tools/testing/selftests")]
    headers = [*sorted((src / "tools/testing/selftests").glob("kselftest*.h")),
               src / SELFTEST_DIR / "iommufd_utils.h",
               src / "drivers/iommu/iommufd/iommufd_test.h"]
    built: dict[str, pathlib.Path] = {}
    for name in BINARIES:
        source = src / SELFTEST_DIR / f"{name}.c"
        cmd = [gcc, *CFLAGS, *includes, str(source), "-o", str(out / name), *LDLIBS]
        digest = hashlib.sha256("\0".join(cmd).encode())
        for path in [source, *headers]:
            digest.update(path.read_bytes())
        stamp = out / f"{name}.sha256"
        if not (out / name).exists() or not stamp.exists() \
                or stamp.read_text() != digest.hexdigest():
            log(f"building {name}")
            _run(cmd)
            stamp.write_text(digest.hexdigest())
        built[name] = out / name
    return built


# -- run -------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    binary: str
    name: str
    status: str          # PASS, FAIL, SKIP, TIMEOUT
    number: int = 0
    note: str = ""


TAP_RESULT = re.compile(r"^(not ok|ok) (\d+) (\S+)(?:\s*#\s*(\S+)\s*(.*))?$")
TAP_PLAN = re.compile(r"^1\.\.(\d+)$")
TAP_RUN = re.compile(r"^#\s+RUN\s+(\S+) \.\.\.$")


def parse_tap(binary: str, text: str, timed_out: bool = False) -> tuple[int, list[Case]]:
    """The plan and the cases of kselftest TAP output. A case that started
    (`#  RUN`) and never reported is TIMEOUT when the run was cut short, else
    FAIL; cases of the plan that never started are not listed."""
    plan = 0
    cases: list[Case] = []
    running: str | None = None
    for line in text.splitlines():
        m = TAP_PLAN.match(line)
        if m:
            plan = int(m.group(1))
            continue
        m = TAP_RUN.match(line)
        if m:
            running = m.group(1)
            continue
        m = TAP_RESULT.match(line)
        if m:
            verdict, number, name, directive, reason = m.groups()
            if directive and directive.upper() == "SKIP":
                status = "SKIP"
            elif verdict == "ok":
                status = "PASS"
            else:
                status = "FAIL"
            cases.append(Case(binary, name, status, int(number), (reason or "").strip()))
            running = None
    if running is not None and not any(c.name == running for c in cases):
        cases.append(Case(binary, running, "TIMEOUT" if timed_out else "FAIL", 0,
                          "no result line"))
    return plan, cases


def failure_notes(text: str, src: pathlib.Path | None = None) -> dict[str, str]:
    """The first assertion message of each failing case, keyed by its name
    (file paths shortened to the source file's name)."""
    notes: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        m = TAP_RUN.match(line)
        if m:
            current = m.group(1)
            continue
        if current and current not in notes and (
                "Expected" in line or "Assertion" in line or "failed" in line.lower()):
            note = line[2:] if line.startswith("# ") else line
            if src is not None:
                note = note.replace(f"{src / SELFTEST_DIR}/", "")
            notes[current] = note.strip()[:200]
    return notes


def free_hugepages() -> int:
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


class Hugepages:
    """Enough free 2 MiB huge pages for the run: nr_hugepages is raised by
    what is missing (root only) and put back afterwards. `reserved` says
    whether HUGEPAGES are free for the run."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.restore: int | None = None
        self.reserved = False

    def __enter__(self) -> Hugepages:
        missing = self.wanted - free_hugepages()
        if missing > 0 and os.geteuid() == 0:
            try:
                before = int(NR_HUGEPAGES.read_text())
                NR_HUGEPAGES.write_text(f"{before + missing}\n")
                self.restore = before
            except OSError as exc:
                log(f"could not reserve {missing} huge pages: {exc}")
        self.reserved = free_hugepages() >= self.wanted
        if not self.reserved:
            log(f"only {free_hugepages()} of {self.wanted} huge pages are free: the "
                f"MAP_HUGETLB cases will fail")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.restore is not None:
            try:
                NR_HUGEPAGES.write_text(f"{self.restore}\n")
            except OSError as err:
                log(f"could not give back the huge pages: {err}")


class Daemon:
    """An iommud started with --background for one run; stopped by its pid."""

    def __init__(self, workdir: pathlib.Path, extra: list[str]) -> None:
        self.workdir = workdir
        self.socket = workdir / "iommud.sock"
        self.uapi_socket = workdir / "iommud.uapi.sock"
        self.log = workdir / "iommud.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOMMUD_")}
        proc = subprocess.run(
            [sys.executable, "-m", "iommud", "--socket", str(self.socket), "--log-file",
             str(self.log), "--log-format", "json", "--log-level", "warning",
             "--debug-selftest", "1", "--debug-fail-nth", "1", *extra, "--background"],
            capture_output=True, text=True, env=env, timeout=120, cwd=workdir)
        m = re.search(r"\(pid (\d+)\)", proc.stdout)
        if proc.returncode or not m:
            raise RuntimeError(f"the daemon did not start: {proc.stdout}{proc.stderr}")
        self.pid = int(m.group(1))
        self.pidfd = os.pidfd_open(self.pid)

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; waits on its pidfd."""
        import select

        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGTERM)
            ready, _, _ = select.select([self.pidfd], [], [], STOP_TIMEOUT)
            if not ready:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
                select.select([self.pidfd], [], [], STOP_TIMEOUT)
        except ProcessLookupError:
            pass
        finally:
            os.close(self.pidfd)


#: The fault-injection knobs iommufd_fail_nth writes in debugfs before it runs
#: (it skips every case when it finds none): a stand-in directory, which the
#: shim opens for /sys/kernel/debug (IOMMUD_PRELOAD_DEBUGFS). Writing them has
#: no effect; what arms a failure is the task's fail-nth file, which the shim
#: emulates against the daemon's fail-nth walk (IOMMUD_PRELOAD_FAIL_NTH=1).
FAKE_DEBUGFS = ("failslab/ignore-gfp-wait", "failslab/verbose", "fail_page_alloc/ignore-gfp-wait",
                "fail_page_alloc/ignore-gfp-highmem", "fail_page_alloc/verbose",
                "fail_iommufd/verbose")


def fake_debugfs(workdir: pathlib.Path) -> pathlib.Path:
    root = workdir / "debugfs"
    for name in FAKE_DEBUGFS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("Y\n")
    return root


def run_binary(binary: pathlib.Path, endpoint: pathlib.Path, timeout: float,
               workdir: pathlib.Path, extra_env: dict[str, str] | None = None
               ) -> tuple[str, bool, float]:
    """The binary's TAP output under iommud-preload; whether it was cut off by
    `timeout`, and how long it ran. Its whole process group goes at the end."""
    launcher = shutil.which("iommud-preload")
    if launcher is None:
        raise RuntimeError("iommud-preload is not installed (pip install ./clients/preload)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "IOMMUD_PRELOAD_SOCKET", "IOMMUD_PRELOAD_TIMEOUT",
                        "IOMMUD_PRELOAD_DEBUGFS", "IOMMUD_PRELOAD_FAIL_NTH",
                        "IOMMUD_PRELOAD_PROC_STATUS")}
    env.update(extra_env or {})
    started = time.monotonic()
    proc = subprocess.Popen([launcher, "--endpoint", str(endpoint), "--", str(binary)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=workdir, start_new_session=True)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # forked cases left behind, if any
        except ProcessLookupError:
            pass
    return out, timed_out, time.monotonic() - started


@dataclasses.dataclass
class Outcome:
    binary: str
    plan: int
    cases: list[Case]
    seconds: float
    timed_out: bool
    tap: str

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)


def run_all(binaries: dict[str, pathlib.Path], src: pathlib.Path,
            only: list[str] | None = None,
            timeouts: dict[str, float] | None = None) -> tuple[list[Outcome], bool]:
    """Run the binaries against one daemon; the outcomes, and whether the
    huge pages were there."""
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="iommud-selftest-") as tmp, \
            Hugepages(HUGEPAGES) as huge:
        workdir = pathlib.Path(tmp)
        os.chmod(workdir, 0o700)
        # The harness runs as root, which holds CAP_SYS_RESOURCE (global_options
        # and change_process set RLIMIT_MODE): tell the daemon so.
        daemon = Daemon(workdir, ["--cap-sys-resource", "1"] if os.geteuid() == 0 else [])
        try:
            for name, path in binaries.items():
                if only and name not in only:
                    continue
                limit = (timeouts or TIMEOUTS)[name]
                log(f"running {name} (at most {limit:.0f} s)")
                # change_process reads VmPin and VmLck of /proc/<pid>/status:
                # the shim adds what the daemon charges each process.
                extra = {"IOMMUD_PRELOAD_PROC_STATUS": "1"}
                if name == "iommufd_fail_nth":
                    extra |= {"IOMMUD_PRELOAD_DEBUGFS": str(fake_debugfs(workdir)),
                              "IOMMUD_PRELOAD_FAIL_NTH": "1"}
                tap, timed_out, seconds = run_binary(path, daemon.uapi_socket, limit, workdir,
                                                     extra)
                plan, cases = parse_tap(name, tap, timed_out)
                notes = failure_notes(tap, src)
                for case in cases:
                    if case.status in ("FAIL", "TIMEOUT") and case.name in notes:
                        case.note = notes[case.name]
                outcome = Outcome(name, plan, cases, seconds, timed_out, tap)
                outcomes.append(outcome)
                log(f"{name}: {outcome.count('PASS')} passed, {outcome.count('FAIL')} failed, "
                    f"{outcome.count('SKIP')} skipped, {outcome.count('TIMEOUT')} timed out "
                    f"of {plan} in {seconds:.0f} s")
                if not daemon.alive():
                    raise RuntimeError(f"the daemon died during {name}; log: "
                                       f"{daemon.log.read_text()[-3000:]}")
        finally:
            daemon.stop()
    return outcomes, huge.reserved


#: Why a case does not pass, by its name: what iommud does not model yet. The
#: first pattern that matches a case that did not pass names its cause in the
#: results ("unexplained" when none does: a regression, or a new gap).
CAUSES: tuple[tuple[str, str], ...] = (
    (r"^iommufd_viommu\.no_viommu\.(viommu_alloc_nested_iopf|viommu_alloc_with_data|"
     r"vdevice_cache|hw_queue|vdevice_tombstone)$",
     "the selftest skips it for the no_viommu variant, on a kernel too"),
)


def cause_of(case: Case) -> str:
    for pattern, cause in CAUSES:
        if re.search(pattern, case.name):
            return cause
    return "unexplained"


def write_results(path: pathlib.Path, outcomes: list[Outcome], version: str,
                  notes: bool = True) -> None:
    """One line per case: its status, binary and name, and for a case that
    did not pass its cause (CAUSES); with `notes`, the selftest's own first
    assertion message too, and the raw TAP output beside it (<path>.tap).
    A results file meant for the repository takes notes=False: the selftest's
    messages quote the kernel tree, which is never committed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# iommud against the upstream iommufd selftest ({PACKAGE} {version}), "
             f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"]
    for o in outcomes:
        lines.append(f"# {o.binary}: {o.count('PASS')}/{o.plan} passed, {o.count('FAIL')} failed, "
                     f"{o.count('SKIP')} skipped, {o.count('TIMEOUT')} timed out, "
                     f"{o.seconds:.0f} s{' (cut off)' if o.timed_out else ''}")
    for o in outcomes:
        for c in o.cases:
            extra = ""
            if c.status != "PASS":
                extra = f"  # {cause_of(c)}"
                if notes and c.note:
                    extra += f"; {c.note}"
            lines.append(f"{c.status:7} {o.binary} {c.name}{extra}")
    path.write_text("\n".join(lines) + "\n")
    if notes:
        path.with_suffix(".tap").write_text("".join(
            f"### {o.binary}\n{o.tap}\n" for o in outcomes))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=pathlib.Path, default=default_cache(),
                    help="where the source and binaries are kept (default: %(default)s)")
    ap.add_argument("--results", type=pathlib.Path, default=None,
                    help="the per-case results file (default: <cache>/results/latest.txt)")
    ap.add_argument("--record", action="store_true",
                    help="write a results file for the repository: causes only, no selftest "
                         "messages and no TAP output (they quote the kernel tree)")
    ap.add_argument("--only", action="append", choices=BINARIES,
                    help="run only this binary (may be repeated)")
    ap.add_argument("--build-only", action="store_true", help="fetch and build, run nothing")
    ap.add_argument("--json", action="store_true", help="print the counts as JSON on stdout")
    args = ap.parse_args(argv)
    src = fetch(args.cache)
    binaries = build(args.cache, src)
    if args.build_only:
        return 0
    outcomes, hugepages = run_all(binaries, src, args.only)
    results = args.results or args.cache / "results" / "latest.txt"
    write_results(results, outcomes, source_version(src), notes=not args.record)
    log(f"results: {results}")
    if args.json:
        counts: dict[str, object] = {
            o.binary: {"plan": o.plan, "pass": o.count("PASS"), "fail": o.count("FAIL"),
                       "skip": o.count("SKIP"), "timeout": o.count("TIMEOUT"),
                       "seconds": round(o.seconds)} for o in outcomes}
        print(json.dumps({**counts, "hugepages": hugepages, "results": str(results)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
