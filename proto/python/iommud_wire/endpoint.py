"""Where the daemon listens by default, shared by the daemon and its clients.

The daemon and iommuctl must agree without configuration, so both resolve the
default here: /run/iommud/iommud.sock when /run/iommud exists or we may create
it (root, or systemd's RuntimeDirectory=iommud), else a per-user directory.
IOMMUD_ENDPOINT overrides it for clients, IOMMUD_SOCKET for the daemon.
"""
from __future__ import annotations

import os
import pathlib

SYSTEM_SOCKET = pathlib.Path("/run/iommud/iommud.sock")


def default_socket_path() -> pathlib.Path:
    """The UNIX socket path used when nothing is configured."""
    if SYSTEM_SOCKET.parent.is_dir() or os.geteuid() == 0:
        return SYSTEM_SOCKET
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/iommud-{os.geteuid()}"
    return pathlib.Path(base) / "iommud" / "iommud.sock"


def default_endpoint() -> str:
    """The client's endpoint: IOMMUD_ENDPOINT, or the default UNIX socket."""
    env = os.environ.get("IOMMUD_ENDPOINT")
    if env:
        return normalize_endpoint(env)
    return f"unix:{default_socket_path()}"


def normalize_endpoint(endpoint: str) -> str:
    """Accept a gRPC target, a bare socket path, or host:port.

    '/run/x.sock' and './x.sock' become 'unix:/run/x.sock'; 'unix:' and
    'unix://' targets and 'host:port' pass through unchanged.
    """
    if endpoint.startswith(("/", "./", "../")):
        return f"unix:{os.path.abspath(endpoint)}"
    return endpoint
