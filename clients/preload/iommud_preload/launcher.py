"""`iommud-preload [--endpoint PATH] [--timeout SECONDS] -- PROGRAM [ARGS...]`

Runs PROGRAM with libiommud-preload.so preloaded (added at the end of an
existing LD_PRELOAD) and, with --endpoint, IOMMUD_PRELOAD_SOCKET set to the
daemon's raw uAPI socket. Without it the library looks in
/run/iommud/iommud.uapi.sock, then $XDG_RUNTIME_DIR/iommud/iommud.uapi.sock.
The launcher execs PROGRAM: its pid, exit status and signals are PROGRAM's.
"""
from __future__ import annotations

import argparse
import importlib.resources
import os
import pathlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

LIBRARY_NAME = "libiommud-preload.so"
SOCKET_ENV = "IOMMUD_PRELOAD_SOCKET"
TIMEOUT_ENV = "IOMMUD_PRELOAD_TIMEOUT"


def library_path() -> pathlib.Path:
    """The installed library, as a real file that the dynamic loader can map."""
    ref = importlib.resources.files("iommud_preload") / LIBRARY_NAME
    path = pathlib.Path(str(ref))
    if not path.is_file():
        raise FileNotFoundError(f"{LIBRARY_NAME} is not installed beside {__name__} "
                                f"(looked for {path}); reinstall iommud-preload")
    return path


def socket_path(endpoint: str) -> str:
    """`unix:PATH`, `unix://PATH` or PATH, made absolute (PROGRAM may chdir)."""
    for prefix in ("unix://", "unix:"):
        if endpoint.startswith(prefix):
            endpoint = endpoint[len(prefix):]
            break
    if not endpoint:
        raise ValueError("empty endpoint")
    return os.path.abspath(endpoint)


def preload_env(env: Mapping[str, str], endpoint: str | None = None,
                timeout: float | None = None) -> dict[str, str]:
    """`env` with the library appended to LD_PRELOAD (once) and the shim's settings."""
    out = dict(env)
    lib = str(library_path())
    current = [p for p in out.get("LD_PRELOAD", "").replace(" ", ":").split(":") if p]
    if lib not in current:
        current.append(lib)
    out["LD_PRELOAD"] = ":".join(current)
    if endpoint is not None:
        out[SOCKET_ENV] = socket_path(endpoint)
    if timeout is not None:
        out[TIMEOUT_ENV] = f"{timeout:g}"
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iommud-preload",
        usage="%(prog)s [--endpoint PATH] [--timeout SECONDS] -- PROGRAM [ARGS...]",
        description="Run PROGRAM with its /dev/iommu and /dev/vfio opens and ioctls served by iommud.")
    p.add_argument("--endpoint", metavar="PATH",
                   help=f"the daemon's raw uAPI socket (sets {SOCKET_ENV}); default: "
                        "/run/iommud/iommud.uapi.sock, else $XDG_RUNTIME_DIR/iommud/iommud.uapi.sock")
    p.add_argument("--timeout", metavar="SECONDS", type=float,
                   help=f"how long an ioctl waits for the daemon before ETIMEDOUT (sets {TIMEOUT_ENV}; "
                        "default 25)")
    p.add_argument("--print-library", action="store_true",
                   help="print the library's path and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        cut = args.index("--")
        options, command = args[:cut], args[cut + 1:]
    else:
        options, command = args, []
    parser = _parser()
    ns = parser.parse_args(options)
    if ns.timeout is not None and not ns.timeout > 0:
        parser.error("--timeout must be positive")
    if ns.print_library:
        print(library_path())
        return 0
    if not command:
        parser.error("no PROGRAM (put it after --)")
    try:
        env = preload_env(os.environ, ns.endpoint, ns.timeout)
    except (FileNotFoundError, ValueError) as exc:
        print(f"iommud-preload: {exc}", file=sys.stderr)
        return 2
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"iommud-preload: {command[0]}: command not found", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"iommud-preload: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 126
    return 0  # not reached: exec replaced this process
