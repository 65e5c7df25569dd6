"""TCP with TLS and mutual TLS, using certificates the test makes: the
loopback-only rule is lifted only with TLS, clients without a trusted
certificate are refused, and a session belongs to the identity that opened it."""
from __future__ import annotations

import datetime
import ipaddress
import os
import subprocess
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import raises_errno, run_daemon

from iommud_client import Client
from iommud_wire import pb

if TYPE_CHECKING:
    import pathlib


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject: str, issuer_key, issuer_name, *, ca: bool = False, san=None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(issuer_name or _name(subject))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def _write(path: pathlib.Path, key, cert) -> tuple[str, str]:
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path.with_suffix(".crt")), str(path.with_suffix(".key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _issue("iommud test CA", None, None, ca=True)
    _write(d / "ca", ca_key, ca_cert)
    server = _issue("iommud", ca_key, ca_cert.subject,
                    san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    rogue_ca_key, rogue_ca = _issue("rogue CA", None, None, ca=True)
    out = {"ca": str(d / "ca.crt"), "server": _write(d / "server", *server)}
    for who in ("vmm-a", "vmm-b"):
        out[who] = _write(d / who, *_issue(who, ca_key, ca_cert.subject))
    out["rogue"] = _write(d / "rogue", *_issue("vmm-a", rogue_ca_key, rogue_ca.subject))
    return out


@pytest.fixture(scope="module")
def tls_daemon(module_daemon_factory, pki):
    cert, key = pki["server"]
    d = module_daemon_factory("--tcp", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key,
                              "--tls-client-ca", pki["ca"], "--admin-identities", "vmm-b",
                              name="tls")
    port = d.tcp_endpoint.rsplit(":", 1)[1]
    d.tcp = f"localhost:{port}"          # the name the server certificate is for
    return d


def client(tls_daemon, pki, who: str) -> Client:
    cert, key = pki[who]
    return Client(tls_daemon.tcp, tls_ca=pki["ca"], tls_cert=cert, tls_key=key, timeout=10)


def test_mutual_tls_serves_trusted_clients(tls_daemon, pki) -> None:
    with client(tls_daemon, pki, "vmm-a") as c, c.open_session("a") as s:
        ctx = s.open_context()
        ioas = ctx.ioas_alloc()
        assert ctx.ioas_map(ioas, 0x1000, 0x1000, 0x1000) == 0x1000
    opened = tls_daemon.events("session.open")
    assert opened[-1]["identity"] == "vmm-a"


@pytest.mark.parametrize("who", [None, "rogue"])
def test_untrusted_or_missing_client_certificate_is_refused(tls_daemon, pki, who) -> None:
    kw = {"tls_ca": pki["ca"]}
    if who:
        kw.update(tls_cert=pki[who][0], tls_key=pki[who][1])
    with Client(tls_daemon.tcp, timeout=5, **kw) as c:
        raises_errno(c.open_session, "EIO")          # the handshake fails: no iommud reply


def test_plaintext_client_cannot_talk_to_the_tls_port(tls_daemon) -> None:
    with Client(tls_daemon.tcp, timeout=5) as c:
        raises_errno(c.open_session, "EIO")


def test_a_session_belongs_to_its_identity(tls_daemon, pki) -> None:
    with client(tls_daemon, pki, "vmm-a") as a, client(tls_daemon, pki, "vmm-b") as b:
        sa = a.open_session("a")
        sa.open_context()
        raises_errno(lambda: b.call("KeepAlive", pb.KeepAliveRequest(), sa.token), "ESRCH")
        # The UNIX socket carries no identity, so it cannot use vmm-a's token either.
        with tls_daemon.client() as local:
            raises_errno(lambda: local.attach_session(sa.token), "ESRCH")
        assert sa.keepalive() > 0
        sa.close()


def test_tls_needs_both_cert_and_key(tmp_path, pki) -> None:
    out = run_daemon("--socket", str(tmp_path / "s"), "--tcp", "127.0.0.1:0",
                     "--tls-cert", pki["server"][0])
    assert out.returncode == 1 and "tls_cert and tls_key" in out.stderr


def test_iommuctl_over_mutual_tls(tls_daemon, pki, tmp_path) -> None:
    cert, key = pki["vmm-b"]
    out = subprocess.run(["iommuctl", "--endpoint", tls_daemon.tcp, "--tls-ca", pki["ca"],
                          "--tls-cert", cert, "--tls-key", key, "ioas", "create"],
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"],
                              "IOMMUCTL_STATE_DIR": str(tmp_path)})
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr


def test_admin_rpcs_need_an_admin_identity(tls_daemon, pki) -> None:
    device = "0000:0a:00.1"      # on snd_hda_intel in the default topology
    with client(tls_daemon, pki, "vmm-a") as a, client(tls_daemon, pki, "vmm-b") as b:
        sa, sb = a.open_session("a"), b.open_session("b")
        driver = {d.name: d.driver for d in sa.list_devices()}[device]
        err = raises_errno(lambda: sa.unbind_host_driver(device), "EPERM")
        assert err.metadata["identity"] == "vmm-a"
        assert {d.name: d.driver for d in sa.list_devices()}[device] == driver
        sb.unbind_host_driver(device)           # vmm-b is listed in admin_identities
        sb.bind_host_driver(device, driver)
        assert {d.name: d.driver for d in sa.list_devices()}[device] == driver
        sa.close()
        sb.close()
