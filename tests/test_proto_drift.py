"""The generated stubs are exactly what scripts/gen_protos.py makes, and the
proto passes buf lint."""
from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
GEN = ROOT / "proto" / "python" / "iommud_wire" / "_gen"


def _tree(base: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def test_generated_stubs_do_not_drift(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "_gen"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(out)],
                   check=True, capture_output=True)
    fresh, committed = _tree(out), _tree(GEN)
    assert sorted(fresh) == sorted(committed), "stub file set drifted; run scripts/gen_protos.py"
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert changed == [], f"stale stubs {changed}; run scripts/gen_protos.py"


def test_buf_lint_passes() -> None:
    buf = shutil.which("buf")
    assert buf is not None, "buf (the buf-bin wheel, a test dependency) is not installed"
    result = subprocess.run([buf, "lint"], cwd=ROOT / "proto", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_enum_zero_values_are_unspecified() -> None:
    from iommud_wire import pb

    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.name


def test_one_request_and_response_message_per_rpc() -> None:
    from iommud_wire import pb

    service = pb.DESCRIPTOR.services_by_name["IommuService"]
    inputs = [m.input_type.name for m in service.methods]
    outputs = [m.output_type.name for m in service.methods]
    for method in service.methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
    assert len(set(inputs)) == len(inputs) and len(set(outputs)) == len(outputs)
    assert pb.DESCRIPTOR.package == "iommud.v1"
