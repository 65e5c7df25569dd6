"""Who may call: the UNIX socket's peer credentials (SO_PEERCRED through the
peer gate), the uid/gid allow lists, and the admin identity that host-changing
RPCs need. Callers with other credentials are made as child processes that
keep uid 0 but take another primary or supplementary group, which is what
the allow lists match on."""
from __future__ import annotations

import os
import subprocess
import sys

from support import raises_errno, run_daemon

from iommud_client import Client

# A caller in a child process: prints the errno name of OpenSession's failure, or OK.
PROBE = """
import sys
from iommud_client import Client, IommudError
with Client(sys.argv[1]) as c:
    try:
        c.open_session("probe").close()
        print("OK")
    except IommudError as e:
        print(e.errno_name)
"""

KERNEL_DRIVER_DEVICE = "0000:0a:00.1"     # snd_hda_intel in the default topology


def probe(endpoint: str, **child: object) -> str:
    assert os.geteuid() == 0, "changing a child's groups needs root"
    out = subprocess.run([sys.executable, "-c", PROBE, endpoint], capture_output=True,
                         text=True, timeout=60, **child)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_unix_callers_are_known_by_their_kernel_credentials(daemon) -> None:
    with daemon.client() as c:
        s = c.open_session("whoami")
        event = next(e for e in daemon.events("session.open") if e["session"] == s.session_id)
        s.close()
    # The gate read this very process's credentials at accept.
    assert event["identity"] == f"uid:{os.getuid()}"
    assert event["pid"] == os.getpid()


def test_allow_lists_refuse_other_uids_and_gids_with_eacces(daemon_factory) -> None:
    d = daemon_factory("--allow-uids", "4242", "--allow-gids", "4321")
    with d.client() as c:
        err = raises_errno(lambda: c.open_session("outsider"), "EACCES")
        assert err.metadata["uid"] == str(os.getuid())
        assert err.metadata["pid"] == str(os.getpid())
        raises_errno(c.info, "EACCES")
        assert c.health() == "SERVING"      # health is not restricted
    assert d.events("session.open") == []
    # Primary group 4321, or 4321 among the supplementary groups: allowed.
    assert probe(d.endpoint, group=4321) == "OK"
    assert probe(d.endpoint, extra_groups=[4321]) == "OK"
    assert probe(d.endpoint, extra_groups=[4322]) == "EACCES"


def test_allow_list_naming_the_caller_admits_it(daemon_factory) -> None:
    d = daemon_factory("--allow-uids", f"4242,{os.getuid()}")
    with d.client() as c:
        s = c.open_session("insider")
        assert s.open_context().iommufd == 3
        s.close()


def test_allow_lists_with_plaintext_tcp_refuse_to_start(tmp_path) -> None:
    out = run_daemon("--socket", str(tmp_path / "s"), "--allow-uids", "4242",
                     "--tcp", "127.0.0.1:0")
    assert out.returncode != 0
    assert "would bypass them" in out.stdout + out.stderr


def test_admin_rpcs_need_an_admin_uid(daemon_factory) -> None:
    d = daemon_factory("--admin-uids", "4242")
    with d.client() as c:
        s = c.open_session("not-admin")
        driver = {x.name: x.driver for x in s.list_devices()}[KERNEL_DRIVER_DEVICE]
        for call in (lambda: s.unbind_host_driver(KERNEL_DRIVER_DEVICE),
                     lambda: s.bind_host_driver(KERNEL_DRIVER_DEVICE, "vfio-pci"),
                     lambda: s.hot_remove_device(KERNEL_DRIVER_DEVICE)):
            err = raises_errno(call, "EPERM")
            assert err.metadata["uid"] == str(os.getuid())
        # Nothing changed on the host.
        assert {x.name: x.driver for x in s.list_devices()}[KERNEL_DRIVER_DEVICE] == driver
        s.close()


def test_root_and_the_daemons_uid_are_admins_by_default(daemon) -> None:
    with daemon.client() as c:
        s = c.open_session("admin")
        driver = {x.name: x.driver for x in s.list_devices()}[KERNEL_DRIVER_DEVICE]
        s.unbind_host_driver(KERNEL_DRIVER_DEVICE)
        assert {x.name: x.driver for x in s.list_devices()}[KERNEL_DRIVER_DEVICE] == ""
        s.bind_host_driver(KERNEL_DRIVER_DEVICE, driver)
        assert {x.name: x.driver for x in s.list_devices()}[KERNEL_DRIVER_DEVICE] == driver
        s.close()


def test_a_uid_bound_token_is_refused_from_another_identity(daemon_factory) -> None:
    """A token is honoured only from the uid that opened it: the same token
    presented on a TCP loopback connection (anonymous) is ESRCH."""
    d = daemon_factory("--tcp", "127.0.0.1:0")
    with d.client() as c, Client(d.tcp_endpoint) as anon:
        s = c.open_session("mine")
        raises_errno(lambda: anon.attach_session(s.token), "ESRCH")
        assert s.keepalive() > 0
        s.close()
