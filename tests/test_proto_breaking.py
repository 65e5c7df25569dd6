"""The v1 API breaks nothing that was released.

proto/released/iommud-v1.binpb is the API as last released (a buf image,
recorded by `python scripts/api_baseline.py --release`); `buf breaking` with
proto/buf.yaml's FILE rules compares proto/ against it. The check runs here on
the real proto, and on synthetic edits of a copy of it: each breaking edit
must be caught with its buf rule, and edits that only add or document must
pass.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import re
import shutil
import sys
from typing import TYPE_CHECKING

import pytest
from google.protobuf import descriptor_pb2

if TYPE_CHECKING:
    from types import ModuleType

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO = "iommud/v1/iommu.proto"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_baseline", ROOT / "scripts" / "api_baseline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


api_baseline = _load_script()


def breaking_rules(proto_root: pathlib.Path) -> list[str]:
    """The buf rule of every breaking change of `proto_root` against the release."""
    result = api_baseline.breaking(proto_root)
    changes = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == (100 if changes else 0), result.stdout + result.stderr
    return sorted({change["type"] for change in changes})


@pytest.fixture
def proto_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """proto/'s buf module (buf.yaml and the .proto files) in a scratch folder."""
    root = tmp_path / "proto"
    shutil.copytree(ROOT / "proto" / "iommud", root / "iommud")
    shutil.copy(ROOT / "proto" / "buf.yaml", root / "buf.yaml")
    return root


def edit(root: pathlib.Path, edits: list[tuple[str, str]]) -> None:
    """Apply (regex, replacement) edits to the copy; each regex must match once."""
    path = root / PROTO
    text = path.read_text()
    for pattern, replacement in edits:
        text, n = re.subn(pattern, replacement, text, flags=re.M | re.S)
        assert n == 1, f"{pattern!r} matched {n} times in {PROTO}"
    path.write_text(text)


def lit(old: str, new: str) -> tuple[str, str]:
    """A literal edit."""
    return re.escape(old), new.replace("\\", "\\\\")


def drop_message(name: str) -> tuple[str, str]:
    """Remove a message and the comment above it."""
    return rf"^(?://[^\n]*\n)*message {name} \{{.*?^\}}\n", ""


def test_the_api_breaks_nothing_that_was_released() -> None:
    assert breaking_rules(ROOT / "proto") == []


def test_the_release_is_the_v1_api_without_its_comments() -> None:
    image = descriptor_pb2.FileDescriptorSet.FromString(api_baseline.BASELINE.read_bytes())
    assert [f.name for f in image.file] == [PROTO]
    released = image.file[0]
    assert released.package == "iommud.v1"
    assert not released.HasField("source_code_info")   # comments may change freely
    assert released.options.go_package == "iommud/gen/go/iommud/v1;iommudv1"
    methods = {m.name for m in released.service[0].method}
    assert {"OpenSession", "WatchSession", "IoasMap", "TranslateBatch"} <= methods


# Each case: (what it does, the edits, the buf rules it breaks).
BREAKING = [
    ("a field removed", [lit("  uint64 mapped_count = 3;\n", "")], ["FIELD_NO_DELETE"]),
    ("a field retyped", [lit("  uint64 mapped_count = 3;", "  int64 mapped_count = 3;")],
     ["FIELD_SAME_TYPE"]),
    ("a field renumbered", [lit("  uint64 mapped_count = 3;", "  uint64 mapped_count = 4;")],
     ["FIELD_NO_DELETE"]),
    ("a field renamed", [lit("  uint64 mapped_count = 3;", "  uint64 mapped = 3;")],
     ["FIELD_SAME_JSON_NAME", "FIELD_SAME_NAME"]),
    ("a field made repeated",
     [lit("  uint64 mapped_count = 3;", "  repeated uint64 mapped_count = 3;")],
     ["FIELD_SAME_CARDINALITY"]),
    ("an optional field made plain",
     [lit("  optional uint32 num_iovas = 3;", "  uint32 num_iovas = 3;")],
     ["FIELD_SAME_CARDINALITY"]),
    ("an enum value removed", [lit("  GROUP_OWNER_CONTAINER = 3;\n", "")],
     ["ENUM_VALUE_NO_DELETE"]),
    ("an enum value renumbered",
     [lit("  GROUP_OWNER_CONTAINER = 3;", "  GROUP_OWNER_CONTAINER = 4;")],
     ["ENUM_VALUE_NO_DELETE"]),
    ("an RPC removed", [lit("  rpc Echo(EchoRequest) returns (EchoResponse);\n", "")],
     ["RPC_NO_DELETE"]),
    ("an RPC and its messages removed",
     [lit("  rpc Echo(EchoRequest) returns (EchoResponse);\n", ""),
      drop_message("EchoRequest"), drop_message("EchoResponse")],
     ["MESSAGE_NO_DELETE", "RPC_NO_DELETE"]),
    ("a stream made unary",
     [lit("returns (stream WatchSessionResponse);", "returns (WatchSessionResponse);")],
     ["RPC_SAME_SERVER_STREAMING"]),
    ("an RPC's request changed", [lit("rpc Echo(EchoRequest)", "rpc Echo(GetInfoRequest)")],
     ["RPC_SAME_REQUEST_TYPE"]),
    ("go_package changed",
     [lit('option go_package = "iommud/gen/go/iommud/v1;iommudv1";',
          'option go_package = "example/iommud/v1;iommudv1";')], ["FILE_SAME_GO_PACKAGE"]),
    ("java_package changed",
     [lit('option java_package = "com.iommud.v1";', 'option java_package = "org.iommud.v1";')],
     ["FILE_SAME_JAVA_PACKAGE"]),
]


@pytest.mark.parametrize(("edits", "rules"), [pytest.param(e, r, id=i) for i, e, r in BREAKING])
def test_a_breaking_edit_is_caught(proto_copy: pathlib.Path, edits: list[tuple[str, str]],
                                   rules: list[str]) -> None:
    edit(proto_copy, edits)
    assert breaking_rules(proto_copy) == rules


def test_the_check_script_exits_1_on_a_breaking_edit(proto_copy: pathlib.Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert api_baseline.main(["--proto", str(proto_copy)]) == 0
    edit(proto_copy, [lit("  uint64 mapped_count = 3;\n", "")])
    assert api_baseline.main(["--proto", str(proto_copy)]) == 1
    assert '"FIELD_NO_DELETE"' in capsys.readouterr().out


NOT_BREAKING = [
    ("a comment rewritten",
     [lit("  // Number of input IOVAs that were mapped.\n",
          "  // How many of the input IOVAs were mapped (at most their count).\n")]),
    ("a field added",
     [lit("  uint64 mapped_count = 3;\n",
          "  uint64 mapped_count = 3;\n  // A new field.\n  uint64 unmapped_count = 99;\n")]),
    ("an enum value added",
     [lit("  GROUP_OWNER_CONTAINER = 3;\n",
          "  GROUP_OWNER_CONTAINER = 3;\n  // A new owner.\n  GROUP_OWNER_OTHER = 4;\n")]),
    ("an RPC and its messages added",
     [lit("  rpc Echo(EchoRequest) returns (EchoResponse);\n",
          "  rpc Echo(EchoRequest) returns (EchoResponse);\n  // A new call.\n"
          "  rpc Ping(PingRequest) returns (PingResponse);\n"),
      (r"\Z", "\n// PingRequest is new.\nmessage PingRequest {}\n"
               "\n// PingResponse is new.\nmessage PingResponse {}\n")]),
]


@pytest.mark.parametrize("edits", [pytest.param(e, id=i) for i, e in NOT_BREAKING])
def test_adding_or_documenting_is_not_breaking(proto_copy: pathlib.Path,
                                               edits: list[tuple[str, str]]) -> None:
    edit(proto_copy, edits)
    assert breaking_rules(proto_copy) == []
