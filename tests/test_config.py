"""Configuration precedence: flags > environment > file > defaults."""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from iommud import config

if TYPE_CHECKING:
    import pathlib


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
