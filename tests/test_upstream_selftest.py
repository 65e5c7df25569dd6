"""The kernel's own iommufd selftest (v7.3) as a conformance test.

scripts/upstream_selftest.py downloads Debian's linux-source-7.3 into a cache
outside the repository (once), builds `iommufd` and `iommufd_fail_nth`, and
runs them under iommud-preload against a daemon with the selftest mock. This
test runs it, parses the kselftest TAP output, writes one line per case to a
results file in the cache (its path is printed), and fails when fewer cases
pass than the floor recorded here, naming the cases that passed in the
recorded run (bench/results/) and fail now.

The floor moves up when iommud passes more; it never moves down to make a
regression pass.
"""
from __future__ import annotations

import datetime
import importlib.util
import os
import pathlib
import shutil
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "upstream_selftest.py"
#: The recorded run: one line per case, as the script writes them.
RECORDED = REPO / "bench" / "results" / "selftest-2026-12-02.txt"
#: Cases in the pinned kernel's selftest (linux-source-7.3).
PLANS = {"iommufd": 246, "iommufd_fail_nth": 8}
#: The least number of passing cases: iommufd passes 241 of 246 (the other 5
#: skip themselves for the no_viommu variant, as on a kernel); iommufd_fail_nth
#: 8 of 8 through the shim's fail-nth emulation.
FLOORS = {"iommufd": 241, "iommufd_fail_nth": 8}
#: Results kept in the cache besides latest.txt.
KEEP_RESULTS = 10


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("upstream_selftest", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module    # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def recorded_passes() -> set[tuple[str, str]]:
    out = set()
    for line in RECORDED.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "PASS":
            out.add((parts[1], parts[2]))
    return out


def test_tap_parsing() -> None:
    st = load_script()
    tap = "\n".join([
        "TAP version 13", "1..4", "#  RUN           a.b.one ...", "#            OK  a.b.one",
        "ok 1 a.b.one", "#  RUN           a.b.two ...",
        "# two: a.c:12:two:Expected 0 (0) == x (-1)", "not ok 2 a.b.two",
        "#  RUN           a.b.three ...", "ok 3 a.b.three # SKIP no viommu",
        "#  RUN           a.b.four ..."])
    plan, cases = st.parse_tap("bin", tap, timed_out=True)
    assert plan == 4
    assert [(c.name, c.status) for c in cases] == [
        ("a.b.one", "PASS"), ("a.b.two", "FAIL"), ("a.b.three", "SKIP"), ("a.b.four", "TIMEOUT")]
    assert cases[2].note == "no viommu"
    assert st.failure_notes(tap)["a.b.two"] == "two: a.c:12:two:Expected 0 (0) == x (-1)"
    _, cases = st.parse_tap("bin", tap, timed_out=False)
    assert cases[-1].status == "FAIL"


@pytest.mark.timeout(3600)
def test_upstream_selftest_passes_at_least_the_floor(capsys: pytest.CaptureFixture[str]) -> None:
    assert shutil.which("iommud-preload"), "iommud-preload is not installed (README Quickstart)"
    st = load_script()
    cache = st.default_cache()
    src = st.fetch(cache)
    binaries = st.build(cache, src)
    outcomes, hugepages = st.run_all(binaries, src)
    results_dir = cache / "results"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    results = results_dir / f"selftest-{stamp}.txt"
    st.write_results(results, outcomes, st.source_version(src))
    shutil.copyfile(results, results_dir / "latest.txt")
    for old in sorted(results_dir.glob("selftest-*.txt"))[:-KEEP_RESULTS]:
        old.unlink()
        old.with_suffix(".tap").unlink(missing_ok=True)
    summary = ", ".join(f"{o.binary} {o.count('PASS')}/{o.plan} in {o.seconds:.0f} s"
                        for o in outcomes)
    with capsys.disabled():
        print(f"\nupstream selftest: {summary}; per-case results: {results}", file=sys.stderr)

    by_name = {o.binary: o for o in outcomes}
    assert set(by_name) == set(PLANS), f"ran {sorted(by_name)}"
    assert hugepages, ("the MAP_HUGETLB cases need 2 MiB huge pages; the script reserves them "
                       "through /proc/sys/vm/nr_hugepages, which needs root")
    recorded = recorded_passes()
    problems = []
    for name, outcome in by_name.items():
        assert outcome.plan == PLANS[name], f"{name}: a plan of {outcome.plan} cases"
        assert not outcome.timed_out, f"{name} was cut off after {outcome.seconds:.0f} s"
        passed = outcome.count("PASS")
        if passed < FLOORS[name]:
            lost = sorted(c.name for c in outcome.cases
                          if c.status != "PASS" and (name, c.name) in recorded)
            problems.append(f"{name}: {passed} passed, below the floor of {FLOORS[name]}; "
                            f"passing in {RECORDED.name} and not now: {lost}")
    assert not problems, "\n".join(problems) + f"\nsee {results} and {results.with_suffix('.tap')}"


def test_the_recorded_run_meets_the_floor() -> None:
    """The recorded results and the floors agree (a floor is raised with a new record)."""
    passes = recorded_passes()
    for name, floor in FLOORS.items():
        assert sum(1 for b, _ in passes if b == name) >= floor, name
    assert os.path.getsize(RECORDED) > 0
