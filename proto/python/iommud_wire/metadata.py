"""Request metadata keys and the error domain of the iommud gRPC API."""
from __future__ import annotations

#: Request metadata carrying the session token (a 256-bit secret).
SESSION = "iommud-session"
#: Debug only: fail the N-th fault-injection step of the call (the kernel's fail-nth).
FAIL_NTH = "iommud-fail-nth"
#: The google.rpc.ErrorInfo domain of every iommud error.
ERROR_DOMAIN = "iommud.v1"
#: Trailing metadata key in which gRPC carries a serialized google.rpc.Status.
STATUS_DETAILS = "grpc-status-details-bin"
