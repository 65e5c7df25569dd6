"""`iommud` entry point: run in the foreground, or detach with --background
and return only once the daemon is serving (or has failed to start)."""
from __future__ import annotations

import asyncio
import os
import pathlib
import sys
from typing import TYPE_CHECKING

from iommud import config as config_mod, logsetup
from iommud.server import Daemon

if TYPE_CHECKING:
    from collections.abc import Sequence


def _run(cfg: config_mod.Config, ready_fd: int | None = None) -> int:
    def on_ready(endpoints: list[str]) -> None:
        if ready_fd is not None:
            os.write(ready_fd, (" ".join([str(os.getpid()), *endpoints]) + "\n").encode())
            os.close(ready_fd)

    try:
        asyncio.run(Daemon(cfg).run(on_ready))
    except (OSError, ValueError) as exc:
        logsetup.get_logger().error("startup.failed", error=str(exc))
        print(f"iommud: {exc}", file=sys.stderr)
        return 1
    return 0


def _background(cfg: config_mod.Config) -> int:
    """Fork a detached daemon; print its pid and endpoints once it serves."""
    log_path = pathlib.Path(cfg.log_file or pathlib.Path(cfg.socket or "/tmp/iommud.sock")
                            .with_name("iommud.log"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)  # the grandchild is reparented; no zombie is left behind
        logfile = open(log_path, "a", buffering=1)  # noqa: SIM115  becomes fds 1 and 2 until exit
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(logfile.fileno(), 1)
        os.dup2(logfile.fileno(), 2)
        logsetup.configure("json" if cfg.log_format == "auto" else cfg.log_format,
                           cfg.log_level, logfile)
        os._exit(_run(cfg, wfd))
    os.close(wfd)
    os.waitpid(pid, 0)
    with os.fdopen(rfd) as ready:
        line = ready.read().strip()
    if not line:
        print(f"iommud: the daemon failed to start; see {log_path}", file=sys.stderr)
        return 1
    child, _, endpoints = line.partition(" ")
    print(f"iommud (pid {child}) serving on {endpoints}; log: {log_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = config_mod.parse(argv)
    if args.print_config:
        print(config_mod.to_toml(cfg), end="")
        return 0
    if args.background:
        return _background(cfg)
    logsetup.configure(cfg.log_format, cfg.log_level)
    return _run(cfg)


if __name__ == "__main__":
    sys.exit(main())
