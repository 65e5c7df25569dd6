"""iommud's wire contract, shared by the daemon and every Python client.

- `pb`, `pb_grpc`: the generated messages and stubs of proto/iommud/v1
  (regenerated only by scripts/gen_protos.py).
- `metadata`: the request metadata keys and the ErrorInfo domain.
- `errnos`: errno names as the kernel spells them.
- `uapi`: the kernel uAPI constants (include/uapi/linux/iommufd.h, vfio.h)
  that requests carry, one definition each.
- `endpoint`: where the daemon listens by default.

Installable without Rust: it needs only grpcio and protobuf.
"""
from iommud_wire._gen.iommud.v1 import iommu_pb2 as pb, iommu_pb2_grpc as pb_grpc

__version__ = "0.1.0"

#: The gRPC service every iommud serves.
SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["IommuService"].full_name

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]
