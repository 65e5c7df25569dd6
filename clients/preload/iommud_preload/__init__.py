"""iommud's preload shim: `libiommud-preload.so` and the `iommud-preload` launcher.

The library serves the opens and ioctls of `/dev/iommu` and `/dev/vfio/*`
from the daemon's raw uAPI socket (docs/uapi-transport.md); the launcher runs
a program with it preloaded.
"""
from iommud_preload.launcher import LIBRARY_NAME, library_path, preload_env

__all__ = ["LIBRARY_NAME", "library_path", "preload_env"]
