"""Configuration: precedence (flags > environment > file > defaults), and
what a user sees through the executable: every bad setting is one line on
stderr naming it, its value and the accepted forms, with exit status 2."""
from __future__ import annotations

import dataclasses
import re
import signal
import stat
import time
from typing import TYPE_CHECKING

import pytest
from support import run_daemon

from iommud import config

if TYPE_CHECKING:
    import pathlib
    import subprocess


def _write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "iommud.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_source() -> None:
    cfg, _ = config.parse([], env={})
    assert cfg.lease_seconds == 30 and cfg.tcp == "" and cfg.log_format == "auto"
    assert cfg.socket.endswith("iommud.sock")


def test_file_then_env_then_flags(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, '[iommud]\nlease_seconds = 11\ntcp = "127.0.0.1:7000"\n'
                            'log_level = "debug"\nmax_sessions = 5\n')
    env = {"IOMMUD_LEASE_SECONDS": "22", "IOMMUD_TCP": "127.0.0.1:7001"}
    cfg, _ = config.parse(["--config", str(path), "--lease-seconds", "33"], env=env)
    assert cfg.lease_seconds == 33          # flag beats env and file
    assert cfg.tcp == "127.0.0.1:7001"      # env beats file
    assert cfg.log_level == "debug"         # file beats default
    assert cfg.max_sessions == 5


def test_config_path_from_environment(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, "lease_seconds = 7\n")
    cfg, _ = config.parse([], env={"IOMMUD_CONFIG": str(path)})
    assert cfg.lease_seconds == 7


def test_hex_numbers_accepted(tmp_path: pathlib.Path) -> None:
    cfg, _ = config.parse(["--socket-mode", "0o600", "--max-translate-batch", "0x1000"], env={})
    assert cfg.socket_mode == 0o600 and cfg.max_translate_batch == 0x1000


def test_unknown_file_setting_is_refused(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path, "[iommud]\nlease_secs = 1\n")
    with pytest.raises(ValueError, match="lease_secs"):
        config.parse(["--config", str(path)], env={})


def test_print_config_round_trips(tmp_path: pathlib.Path) -> None:
    cfg, _ = config.parse(["--lease-seconds", "9", "--tcp", "127.0.0.1:1"], env={})
    path = _write(tmp_path, config.to_toml(cfg))
    again, _ = config.parse(["--config", str(path)], env={})
    assert again == cfg


# -- through the executable: what a user sees ----------------------------------------------

def test_socket_mode_accepts_chmod_style_octal(tmp_path: pathlib.Path, daemon_factory) -> None:
    for text in ("0660", "660", "0o660"):
        out = run_daemon("--socket-mode", text, "--print-config")
        assert out.returncode == 0 and "socket_mode = 0o660\n" in out.stdout, out.stderr
    out = run_daemon("--print-config", env={"IOMMUD_SOCKET_MODE": "0600"})
    assert "socket_mode = 0o600\n" in out.stdout
    d = daemon_factory("--socket-mode", "0640")
    assert stat.S_IMODE(d.socket_path.stat().st_mode) == 0o640


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and out.stderr.endswith("\n"), out.stderr
    return lines[0]


@pytest.mark.parametrize("args,env,line", [
    (["--log-level", "verbose"], {},
     "iommud: --log-level: invalid value 'verbose'; expected one of debug, info, warning, error, "
     "critical"),
    (["--lease-seconds", "abc"], {},
     "iommud: --lease-seconds: invalid value 'abc'; expected an integer (decimal, or 0x hex, "
     "0o octal, 0b binary) from 1 to 4294967295"),
    ([], {"IOMMUD_LEASE_SECONDS": "abc"},
     "iommud: IOMMUD_LEASE_SECONDS: invalid value 'abc'; expected an integer (decimal, or 0x hex, "
     "0o octal, 0b binary) from 1 to 4294967295"),
    (["--lease-seconds", "0"], {},
     "iommud: --lease-seconds: out of range '0'; expected an integer (decimal, or 0x hex, "
     "0o octal, 0b binary) from 1 to 4294967295"),
    # Past 2^18 the request size limit refuses the batch first (EMSGSIZE):
    # a larger setting could never take effect, so it is not accepted.
    (["--max-translate-batch", "0x40001"], {},
     "iommud: --max-translate-batch: out of range '0x40001'; expected an integer (decimal, or 0x "
     "hex, 0o octal, 0b binary) from 1 to 262144"),
    (["--socket-mode", "0999"], {},
     "iommud: --socket-mode: invalid value '0999'; expected an octal file mode up to 0777, such "
     "as 0660, 660 or 0o660"),
    (["--socket-mode", "7777"], {},
     "iommud: --socket-mode: out of range '7777'; expected an octal file mode up to 0777, such "
     "as 0660, 660 or 0o660"),
    (["--log-format", "xml"], {},
     "iommud: --log-format: invalid value 'xml'; expected one of auto, console, json"),
    (["--journal-sync", "always"], {},
     "iommud: --journal-sync: invalid value 'always'; expected one of normal, full"),
    (["--vfio-mode", "type2"], {},
     "iommud: --vfio-mode: invalid value 'type2'; expected one of type1, iommufd"),
    (["--group-stage", "4"], {},
     "iommud: --group-stage: invalid value '4'; expected one of 1, 2, 3"),
    (["--debug-clock", "maybe"], {},
     "iommud: --debug-clock: invalid value 'maybe'; expected 0 or 1 (false or true)"),
    (["--allow-uids", "alice"], {},
     "iommud: --allow-uids: invalid value 'alice'; expected comma-separated numeric ids such as "
     "1000,1001"),
    (["--tcp", "localhost"], {},
     "iommud: --tcp: invalid value 'localhost'; expected HOST:PORT such as 127.0.0.1:50051 or "
     "[::1]:50051 (port 0-65535), or empty"),
    (["--tcp", "127.0.0.1:70000"], {},
     "iommud: --tcp: invalid value '127.0.0.1:70000'; expected HOST:PORT such as 127.0.0.1:50051 "
     "or [::1]:50051 (port 0-65535), or empty"),
    (["--reap-interval", "nan"], {},
     "iommud: --reap-interval: invalid value 'nan'; expected a positive number of seconds such "
     "as 1 or 0.1"),
    (["--lease-secs", "1"], {},
     "iommud: unrecognized arguments: --lease-secs 1 (see iommud --help)"),
    (["--lease-seconds"], {},
     "iommud: argument --lease-seconds: expected one argument (see iommud --help)"),
])
def test_a_bad_setting_is_one_line_and_exit_2(args, env, line) -> None:
    # --print-config: should a bad value ever pass, nothing starts serving.
    assert _one_line(run_daemon(*args, "--print-config", env=env)) == line


def test_a_long_bad_value_is_cut() -> None:
    line = _one_line(run_daemon("--print-config", env={"IOMMUD_MAX_SESSIONS": "9" * 500 + "x"}))
    assert line.startswith("iommud: IOMMUD_MAX_SESSIONS: invalid value '99999")
    assert f"'{'9' * (config.SHOWN_VALUE_MAX - 4)}...; expected" in line
    assert "...; expected an integer" in line
    line = _one_line(run_daemon("--print-config", env={"IOMMUD_MAX_SESSIONS": "9" * 500}))
    assert line.startswith("iommud: IOMMUD_MAX_SESSIONS: out of range '99999")
    assert line.endswith("...; expected an integer (decimal, or 0x hex, 0o octal, 0b binary) "
                         "from 1 to 4294967295")


def test_an_unknown_file_setting_is_one_line_with_the_nearest_name(tmp_path) -> None:
    path = _write(tmp_path, "[iommud]\nlease_secs = 1\n")
    line = _one_line(run_daemon("--config", str(path)))
    assert line == (f"iommud: {path}: unknown setting 'lease_secs'; expected lease_seconds, or "
                    f"another setting that iommud --help lists")
    path.write_text("[iommud]\nzzz = 1\n")
    line = _one_line(run_daemon(env={"IOMMUD_CONFIG": str(path)}))
    assert line == (f"iommud: {path}: unknown setting 'zzz'; expected one of the settings that "
                    f"iommud --help lists")


@pytest.mark.parametrize("text,want", [
    ('lease_seconds = "x"\n', "lease_seconds in {path}: invalid value 'x'; expected an integer"),
    ("lease_seconds = true\n", "lease_seconds in {path}: invalid value True; expected an integer"),
    ("tcp = 5\n", "tcp in {path}: invalid value 5; expected HOST:PORT"),
    ('socket_mode = "0660"\nlog_level = "loud"\n',
     "log_level in {path}: invalid value 'loud'; expected one of debug,"),
    ("lease_seconds = \n", "--config: cannot parse '{path}' (Invalid value (at line 1, column 17));"
                           " expected a readable TOML file of settings"),
    ("iommud = 3\n", "--config: cannot use '{path}' (its iommud key is not a table); expected"),
])
def test_a_bad_file_value_names_the_key_and_the_file(tmp_path, text, want) -> None:
    path = _write(tmp_path, text)
    line = _one_line(run_daemon("--config", str(path)))
    assert line.startswith("iommud: " + want.format(path=path)), line


def test_a_missing_or_unreadable_config_file_is_one_line(tmp_path) -> None:
    missing = tmp_path / "nope.toml"
    assert _one_line(run_daemon("--config", str(missing))) == (
        f"iommud: --config: cannot read '{missing}' (No such file or directory); expected a "
        f"readable TOML file of settings")
    assert _one_line(run_daemon(env={"IOMMUD_CONFIG": str(tmp_path)})) == (
        f"iommud: IOMMUD_CONFIG: cannot read '{tmp_path}' (Is a directory); expected a readable "
        f"TOML file of settings")
    binary = _write(tmp_path, "")
    binary.write_bytes(b"\xff\xfe")
    assert _one_line(run_daemon("--config", str(binary))).startswith(
        f"iommud: --config: cannot parse '{binary}' (")


def test_a_bad_setting_on_sighup_keeps_the_old_ones(tmp_path, daemon_factory) -> None:
    """Reload resolves the same sources: a bad value there is logged, not fatal."""
    path = _write(tmp_path, '[iommud]\nlog_level = "info"\n')
    d = daemon_factory("--config", str(path))
    path.write_text('[iommud]\nlog_level = "verbose"\n')
    d.proc.send_signal(signal.SIGHUP)
    with d.client() as c:
        # The reload runs on the daemon's loop; calls go round it until it has.
        deadline = time.monotonic() + 10
        while not d.events("reload.failed") and time.monotonic() < deadline:
            assert c.echo(b"x") == b"x"
    failed = d.events("reload.failed")
    assert failed and failed[-1]["error"].startswith(
        f"log_level in {path}: invalid value 'verbose'; expected one of debug,")
    assert d.proc.poll() is None


def test_version() -> None:
    out = run_daemon("--version")
    assert out.returncode == 0
    assert re.fullmatch(r"iommud \S+ \(core \S+\)\n", out.stdout), out.stdout


def test_help_describes_every_setting() -> None:
    out = run_daemon("--help")
    assert out.returncode == 0
    text = "".join(out.stdout.split())     # argparse wraps lines, at hyphens too
    for f in dataclasses.fields(config.Config):
        flag = "--" + f.name.replace("_", "-")
        description = "".join(str(f.metadata["help"]).split())
        assert f.metadata["help"] and flag in text, f.name
        assert description in text, f"{f.name}: {f.metadata['help']!r} is not in --help"
        assert f"envIOMMUD_{f.name.upper()}]" in text, f.name


def test_unknown_iommud_variables_are_ignored() -> None:
    """Kubernetes adds IOMMUD_PORT and friends for a Service named iommud, and
    IOMMUD_ENDPOINT is the client library's: none of them is a daemon setting."""
    env = {"IOMMUD_PORT": "tcp://10.0.0.1:50051", "IOMMUD_SERVICE_HOST": "10.0.0.1",
           "IOMMUD_ENDPOINT": "unix:/elsewhere.sock"}
    out = run_daemon("--print-config", env=env)
    assert out.returncode == 0 and out.stderr == ""
    assert {"port", "service_host", "endpoint"}.isdisjoint(f.name for f in
                                                           dataclasses.fields(config.Config))
