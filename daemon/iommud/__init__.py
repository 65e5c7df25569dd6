"""iommud: a userspace model of the Linux /dev/iommu (iommufd) control plane,
served over gRPC. The translation core is the native module `iommud._core`."""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("iommud")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
