#!/usr/bin/env python3
"""Check the v1 API against the last released one, or record a release.

proto/released/iommud-v1.binpb is the API as last released: a buf image
(a FileDescriptorSet) of proto/ without comments, so that only what reaches
the wire and the generated code is compared. `buf breaking` (the buf CLI
from the buf-bin wheel, a test dependency) compares the current proto/
against it with the FILE rules of proto/buf.yaml: no message, field, enum
value, RPC or service removed, no field renumbered, retyped, renamed or
moved in or out of a oneof, no label (optional/repeated) changed, no file
option (go_package, java_package, ...) changed. Adding is always fine.

    python scripts/api_baseline.py            # check (exit 1 on a breaking change)
    python scripts/api_baseline.py --release  # at a release: record proto/ as released

tests/test_proto_breaking.py runs the check in CI and proves that it fails
on breaking edits.
"""
from __future__ import annotations

import argparse
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
BASELINE = PROTO_ROOT / "released" / "iommud-v1.binpb"


def buf() -> str:
    path = shutil.which("buf")
    if path is None:
        raise SystemExit("buf is not installed: pip install '.[test]' (the buf-bin wheel)")
    return path


def breaking(proto_root: pathlib.Path = PROTO_ROOT,
             baseline: pathlib.Path = BASELINE) -> subprocess.CompletedProcess[str]:
    """Run `buf breaking` on `proto_root` against `baseline`; one JSON object
    per breaking change on stdout, exit status 100 when there is any."""
    return subprocess.run([buf(), "breaking", "--against", str(baseline), "--error-format", "json"],
                          cwd=proto_root, capture_output=True, text=True, check=False)


def release(proto_root: pathlib.Path = PROTO_ROOT, baseline: pathlib.Path = BASELINE) -> None:
    """Record the current API as the released one."""
    baseline.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([buf(), "build", "--exclude-source-info", "-o", str(baseline)],
                   cwd=proto_root, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", action="store_true",
                        help="record the current proto/ as the released API")
    parser.add_argument("--proto", type=pathlib.Path, default=PROTO_ROOT,
                        help="the buf module to check (default: proto/)")
    args = parser.parse_args(argv)
    if args.release:
        release(args.proto)
        print(f"recorded {BASELINE.relative_to(ROOT)}")
        return 0
    result = breaking(args.proto)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
