"""`iommud` entry point: run in the foreground, or detach with --background
and return only once the daemon is serving (or has failed to start).

SIGHUP re-reads the same flags, environment and file and applies what can
change while serving (Daemon.reload); with --background it also reopens the
log file, so that logrotate can move it."""
from __future__ import annotations

import asyncio
import os
import pathlib
import sys
from typing import TYPE_CHECKING, TextIO

from iommud import config as config_mod, logsetup
from iommud.journal import JournalError
from iommud.server import Daemon, check_private_dir

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence


def _run(cfg: config_mod.Config, args: argparse.Namespace, ready_fd: int | None = None,
         log_stream: TextIO | None = None) -> int:
    def on_ready(endpoints: list[str]) -> None:
        if ready_fd is not None:
            os.write(ready_fd, (" ".join([str(os.getpid()), *endpoints]) + "\n").encode())
            os.close(ready_fd)

    try:
        daemon = Daemon(cfg)
        daemon.reload_source = lambda: config_mod.resolve(args)
        daemon.log_stream = log_stream
        if log_stream is not None:
            daemon.reopen_log = _reopen_log
        asyncio.run(daemon.run(on_ready))
    except (OSError, ValueError, JournalError) as exc:
        # One line for whoever started the daemon; the log file (when the
        # log is not stderr itself) gets the event as well.
        if log_stream is not None:
            logsetup.get_logger().error("startup.failed", error=str(exc))
        print(f"iommud: {exc}", file=sys.stderr)
        return 1
    return 0


def _log_path(cfg: config_mod.Config) -> pathlib.Path:
    return pathlib.Path(cfg.log_file or pathlib.Path(cfg.socket or "/tmp/iommud.sock")
                        .with_name("iommud.log"))


def _open_log(path: pathlib.Path) -> int:
    """The log file, appended to, created 0640, never through a symlink, in
    a directory only the daemon's uid may write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_private_dir(path.parent)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   0o640)


def _reopen_log(cfg: config_mod.Config) -> None:
    """Point fds 1 and 2 at the (possibly rotated or renamed) log file."""
    fd = _open_log(_log_path(cfg))
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def _background(cfg: config_mod.Config, args: argparse.Namespace) -> int:
    """Fork a detached daemon; print its pid and endpoints once it serves."""
    log_path = _log_path(cfg)
    log_fd = _open_log(log_path)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)  # the grandchild is reparented; no zombie is left behind
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        stream = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115  fd 1 until exit
        logsetup.configure("json" if cfg.log_format == "auto" else cfg.log_format,
                           cfg.log_level, stream)
        os._exit(_run(cfg, args, wfd, stream))
    os.close(wfd)
    os.close(log_fd)
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
    try:
        cfg, args = config_mod.parse(argv)
    except config_mod.ConfigError as exc:
        # A bad setting: one line naming it, its value and what is accepted.
        print(f"iommud: {exc}", file=sys.stderr)
        return config_mod.EXIT_USAGE
    if args.print_config:
        print(config_mod.to_toml(cfg), end="")
        return 0
    if args.background:
        return _background(cfg, args)
    logsetup.configure(cfg.log_format, cfg.log_level)
    return _run(cfg, args)


if __name__ == "__main__":
    sys.exit(main())
