"""The wire package is the one place for uAPI constants, metadata keys and
errno names: its constants agree with the proto's enums, and the daemon
depends on it, never on the client library."""
from __future__ import annotations

import ast
import pathlib

from iommud_wire import errnos, metadata, pb, uapi

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_uapi_map_flags_match_the_proto_enum() -> None:
    enum = pb.DESCRIPTOR.enum_types_by_name["IoasMapFlag"]
    assert enum.values_by_name["IOAS_MAP_FLAG_FIXED_IOVA"].number == uapi.IOMMU_IOAS_MAP_FIXED_IOVA
    assert enum.values_by_name["IOAS_MAP_FLAG_WRITEABLE"].number == uapi.IOMMU_IOAS_MAP_WRITEABLE
    assert enum.values_by_name["IOAS_MAP_FLAG_READABLE"].number == uapi.IOMMU_IOAS_MAP_READABLE


def test_uapi_object_types_match_the_proto_enum() -> None:
    enum = pb.DESCRIPTOR.enum_types_by_name["ObjectType"]
    for value in enum.values:
        if value.number == 0:
            continue
        kernel_name = "IOMMUFD_OBJ_" + value.name.removeprefix("OBJECT_TYPE_")
        assert getattr(uapi, kernel_name) == value.number, kernel_name


def test_errno_names_follow_the_kernel_spelling() -> None:
    assert errnos.name_of(95) == "EOPNOTSUPP"
    assert errnos.name_of(35) == "EDEADLK"
    assert errnos.name_of(17) == "EEXIST"
    assert errnos.number_of("EEXIST") == 17
    assert errnos.number_of("ENOTANERRNO") is None


def test_metadata_keys_are_grpc_legal() -> None:
    for key in (metadata.SESSION, metadata.FAIL_NTH):
        assert key == key.lower() and not key.startswith("grpc-")


def test_daemon_never_imports_the_client_library() -> None:
    offenders = []
    for path in sorted((ROOT / "daemon" / "iommud").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "iommud_client"]
    assert offenders == []
