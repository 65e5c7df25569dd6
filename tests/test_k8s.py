"""Kubernetes: the Helm chart (deploy/helm/iommud) and the kustomize tree
(deploy/kubernetes: base, overlays, components), rendered with default and
other values by the real tools and validated offline against the Kubernetes
schemas (k8s_support says which tools). Then the fields that matter are
checked, and the chart's pod is run as rendered: its iommud.toml and
environment start a real daemon, and its probes, metrics port, TLS wiring and
admin view work against it."""
from __future__ import annotations

import copy
import os
import pathlib
import re
import subprocess
import urllib.request
from typing import Any

import pytest
from k8s_support import (
    K8S,
    container,
    env_of,
    helm_lint,
    helm_render,
    kind,
    kustomize_build,
    kustomize_with,
    pod_spec,
    validate,
)

from iommud.config import load_file

SOCKET = "/run/iommud/iommud.sock"
PROBE = ["iommuctl", "--endpoint", f"unix:{SOCKET}", "--timeout", "2", "health"]
#: README, recovery_bench: 1M mappings kept as journal rows only take ~28 s to
#: replay on the 2-core machine. The startup probe must allow ten times that.
SLOWEST_MEASURED_REPLAY = 28
#: Taints the default tolerations name: a device node's own, nothing broader.
DEVICE_TAINTS = {"iommud.io/vfio-host", "nvidia.com/gpu", "CriticalAddonsOnly"}

NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "registry.example.invalid/iommud", "tag": "0.1.1",
              "pullPolicy": "Always"},
    "socket": {"hostPath": "/var/run/vfio-control", "mode": "0600"},
    "journal": {"hostPath": "/data/iommud", "sync": "full"},
    "tls": {"enabled": True, "port": 50443, "secretName": "iommud-server-tls",
            "clientCASecretName": "vmm-client-ca", "clientCAKey": "bundle.pem"},
    "access": {"allowUids": [1000, 1001], "allowGids": [993], "adminUids": [0, 10001],
               "adminIdentities": ["ops", "oncall"]},
    "metrics": {"enabled": True, "port": 9500,
                "serviceMonitor": {"enabled": True, "interval": "15s",
                                   "labels": {"release": "prometheus"}}},
    "settings": {"max_sessions": 4096, "lease_seconds": 60, "cap_sys_resource": True,
                 "log_level": "warning", "shutdown_grace": 2.5},
    "startupProbe": {"periodSeconds": 10, "failureThreshold": 120, "timeoutSeconds": 8},
    "resources": {"requests": {"cpu": "200m", "memory": "256Mi"},
                  "limits": {"cpu": "2", "memory": "2Gi"}},
    "nodeSelector": {"node-role.example.invalid/vmm": "true"},
    "affinity": None,              # null drops the default (an empty map would merge)
    "tolerations": [{"key": "vmm-only", "operator": "Equal", "value": "yes",
                     "effect": "NoExecute"}],
    "podLabels": {"team": "virt"},
}


def iommud_toml(docs: list[dict], tmp: pathlib.Path) -> dict[str, Any]:
    """The ConfigMap's iommud.toml, as the daemon's own loader reads it."""
    f = tmp / "iommud.toml"
    f.write_text(kind(docs, "ConfigMap")["data"]["iommud.toml"])
    return load_file(str(f))


def volume(docs: list[dict], name: str) -> dict[str, Any]:
    (v,) = [v for v in pod_spec(docs)["volumes"] if v["name"] == name]
    return v


def mount_path(docs: list[dict], name: str) -> str:
    (m,) = [m["mountPath"] for m in container(docs)["volumeMounts"] if m["name"] == name]
    return m


def ports(docs: list[dict]) -> dict[str, dict]:
    return {p["name"]: p for p in container(docs).get("ports", [])}


def startup_budget(c: dict[str, Any]) -> int:
    return c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]


def assert_device_daemon_placement(pod: dict[str, Any]) -> None:
    """Nodes labelled for VFIO/IOMMU work, on Linux; only device-node taints tolerated."""
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    labels = []
    for term in terms:
        req = {e["key"]: e["values"] for e in term["matchExpressions"] if e["operator"] == "In"}
        assert req.pop("kubernetes.io/os") == ["linux"]
        ((label, values),) = req.items()
        assert values == ["true"]
        labels.append(label)
    assert labels == ["iommud.io/vfio-host", "feature.node.kubernetes.io/iommu-enabled"]
    tolerations = pod["tolerations"]
    assert all(t.get("key") for t in tolerations), "a toleration without a key tolerates every taint"
    assert {t["key"] for t in tolerations} == DEVICE_TAINTS
    assert all(t["operator"] == "Exists" for t in tolerations)
    # The daemon follows its node's conditions as the DaemonSet controller sets them.
    assert not any(t["key"].startswith("node.kubernetes.io/") for t in tolerations)


def assert_probes_wait_for_replay(c: dict[str, Any], budget: int) -> None:
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"] == PROBE, probe
        # The startup probe gates the other two: no guessed initial delays.
        assert "initialDelaySeconds" not in c[probe], probe
    assert startup_budget(c) == budget >= 10 * SLOWEST_MEASURED_REPLAY
    assert c["startupProbe"]["timeoutSeconds"] >= 2 + 1     # iommuctl's own --timeout, and start


# -- the Helm chart ------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [{}, NON_DEFAULT], ids=["defaults", "non-default"])
def test_chart_lints_clean(values: dict) -> None:
    """`helm lint --strict`: no error and no warning (icon is only a recommendation)."""
    report = helm_lint(values)
    assert report["errors"] == [] and report["total_charts_linted"] == 1
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


def test_chart_defaults_render_and_validate(tmp_path: pathlib.Path) -> None:
    docs = helm_render()
    validate(docs, tmp_path)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "DaemonSet", "ServiceAccount"]
    assert {d["metadata"]["namespace"] for d in docs} == {"iommud"}
    pod, c = pod_spec(docs), container(docs)

    assert_device_daemon_placement(pod)
    assert "nodeSelector" not in pod and pod["priorityClassName"] == "system-node-critical"
    assert_probes_wait_for_replay(c, budget=300)
    # The host directories, mounted at the paths the probes and the image use.
    assert volume(docs, "socket-dir")["hostPath"] == {"path": "/run/iommud",
                                                     "type": "DirectoryOrCreate"}
    assert volume(docs, "state-dir")["hostPath"] == {"path": "/var/lib/iommud",
                                                    "type": "DirectoryOrCreate"}
    assert mount_path(docs, "socket-dir") == "/run/iommud"
    assert mount_path(docs, "state-dir") == "/var/lib/iommud"
    # Nothing listens beyond the socket: no metrics, no TLS, no Secret.
    assert "ports" not in c
    assert env_of(c) == {"IOMMUCTL_STATE_DIR": "/tmp/iommuctl"}
    assert not [v for v in pod["volumes"] if "secret" in v]
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    assert c["image"] == "iommud:0.1.0"

    config = iommud_toml(docs, tmp_path)
    assert config["socket"] == SOCKET and config["socket_mode"] == 0o660
    assert config["journal"] == "/var/lib/iommud/journal" and config["journal_sync"] == "normal"
    assert config["topology"] == "/etc/iommud/topology.toml"
    assert "metrics_address" not in config and "allow_uids" not in config
    assert "[[device]]" in kind(docs, "ConfigMap")["data"]["topology.toml"]


def test_chart_other_values_render_and_validate(tmp_path: pathlib.Path) -> None:
    docs = helm_render(NON_DEFAULT, release="edge", namespace="virt")
    validate(docs, tmp_path)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "DaemonSet", "Service",
                                               "ServiceAccount", "ServiceMonitor"]
    assert {d["metadata"]["namespace"] for d in docs} == {"virt"}
    pod, c = pod_spec(docs), container(docs)

    # Placement as given, in place of the defaults.
    assert pod["nodeSelector"] == NON_DEFAULT["nodeSelector"] and "affinity" not in pod
    assert pod["tolerations"] == NON_DEFAULT["tolerations"]
    assert c["resources"] == NON_DEFAULT["resources"]
    assert c["image"] == "registry.example.invalid/iommud:0.1.1"
    assert c["imagePullPolicy"] == "Always"
    assert {i["image"] for i in pod["initContainers"]} == {c["image"]}
    assert kind(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]["team"] == "virt"

    # Other host directories, the same paths inside the pod.
    assert volume(docs, "socket-dir")["hostPath"]["path"] == "/var/run/vfio-control"
    assert volume(docs, "state-dir")["hostPath"]["path"] == "/data/iommud"
    assert mount_path(docs, "socket-dir") == "/run/iommud"
    assert_probes_wait_for_replay(c, budget=1200)
    assert c["startupProbe"]["timeoutSeconds"] == 8

    # TLS: the TCP listener on the declared port, its certificate, key and
    # client CA read from where the named Secrets are mounted, under the keys
    # those Secrets hold (a kubernetes.io/tls Secret's tls.crt and tls.key).
    env = env_of(c)
    assert env["IOMMUD_TCP"] == "0.0.0.0:50443"
    assert ports(docs)["grpc-tls"] == {"name": "grpc-tls", "containerPort": 50443,
                                       "protocol": "TCP"}
    secret_mounts = {m["mountPath"]: volume(docs, m["name"])["secret"]
                     for m in c["volumeMounts"] if "secret" in volume(docs, m["name"])}
    assert all(m.get("readOnly") for m in c["volumeMounts"]
               if "secret" in volume(docs, m["name"]))

    def secret_of(path: str) -> tuple[str, str]:
        directory, key = os.path.split(path)
        return secret_mounts[directory]["secretName"], key

    assert secret_of(env["IOMMUD_TLS_CERT"]) == ("iommud-server-tls", "tls.crt")
    assert secret_of(env["IOMMUD_TLS_KEY"]) == ("iommud-server-tls", "tls.key")
    assert secret_of(env["IOMMUD_TLS_CLIENT_CA"]) == ("vmm-client-ca", "bundle.pem")
    assert {s["defaultMode"] for s in secret_mounts.values()} == {0o440}
    # ...and the probes stay on the socket.
    assert not any(k.startswith("IOMMUCTL_TLS") for k in env)

    # Metrics: the port, the Service in front of it, the ServiceMonitor on the Service.
    assert env["IOMMUD_METRICS_ADDRESS"] == "0.0.0.0:9500"
    assert ports(docs)["metrics"]["containerPort"] == 9500
    svc, sm = kind(docs, "Service"), kind(docs, "ServiceMonitor")
    pod_labels = kind(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["clusterIP"] == "None"
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["targetPort"] == "metrics" and svc_port["port"] == 9500
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"]["matchNames"] == ["virt"]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == svc_port["name"] and endpoint["interval"] == "15s"
    assert sm["metadata"]["labels"]["release"] == "prometheus"

    config = iommud_toml(docs, tmp_path)
    assert config["socket"] == SOCKET and config["socket_mode"] == 0o600
    assert config["journal_sync"] == "full"
    assert (config["allow_uids"], config["allow_gids"], config["admin_uids"]) == \
        ("1000,1001", "993", "0,10001")
    assert config["admin_identities"] == "ops,oncall"
    # Whole numbers stay integers (values files hand them over as floats).
    assert config["max_sessions"] == 4096 and config["lease_seconds"] == 60
    assert config["cap_sys_resource"] == 1 and config["shutdown_grace"] == 2.5
    assert config["log_level"] == "warning"


@pytest.mark.parametrize(("metrics", "monitor"), [(False, False), (True, False), (True, True)])
def test_chart_metrics_port_only_when_enabled(tmp_path: pathlib.Path, metrics: bool,
                                              monitor: bool) -> None:
    docs = helm_render({"metrics": {"enabled": metrics, "serviceMonitor": {"enabled": monitor}}})
    validate(docs, tmp_path)
    kinds = {d["kind"] for d in docs}
    assert ("metrics" in ports(docs)) is metrics
    assert ("IOMMUD_METRICS_ADDRESS" in env_of(container(docs))) is metrics
    assert ("Service" in kinds) is metrics
    assert ("ServiceMonitor" in kinds) is monitor
    if metrics:
        assert ports(docs)["metrics"]["containerPort"] == 9464
        assert env_of(container(docs))["IOMMUD_METRICS_ADDRESS"] == "0.0.0.0:9464"


def test_chart_without_journal(tmp_path: pathlib.Path) -> None:
    docs = helm_render({"journal": {"enabled": False}})
    validate(docs, tmp_path)
    assert [v["name"] for v in pod_spec(docs)["volumes"] if "hostPath" in v] == ["socket-dir"]
    assert "journal" not in iommud_toml(docs, tmp_path)
    (init,) = pod_spec(docs)["initContainers"]
    assert init["command"][-1] == "chown 10001:10001 /run/iommud"
    assert [m["name"] for m in init["volumeMounts"]] == ["socket-dir"]


def test_chart_sysfs_topology(tmp_path: pathlib.Path) -> None:
    docs = helm_render({"topology": {"source": "sysfs"}})
    validate(docs, tmp_path)
    assert iommud_toml(docs, tmp_path)["topology"] == "sysfs:/host"
    assert "topology.toml" not in kind(docs, "ConfigMap")["data"]
    assert volume(docs, "host-sys")["hostPath"] == {"path": "/sys", "type": "Directory"}
    (m,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "host-sys"]
    assert m == {"name": "host-sys", "mountPath": "/host/sys", "readOnly": True}


@pytest.mark.parametrize(("values", "error", "message"), [
    ({"startupProbe": {"failureThreshold": "lots"}}, "HelmValuesError",
     "/startupProbe/failureThreshold"),
    ({"tolerance": []}, "HelmValuesError", "'tolerance' not allowed"),
    ({"socket": {"hostPath": "run/iommud"}}, "HelmValuesError", "/socket/hostPath"),
    ({"journal": {"sync": "always"}}, "HelmValuesError", "/journal/sync"),
    ({"access": {"allowUids": ["alice"]}}, "HelmValuesError", "/access/allowUids/0"),
    ({"tls": {"enabled": True}}, "HelmRenderError", "tls.enabled needs tls.secretName"),
    ({"metrics": {"serviceMonitor": {"enabled": True}}}, "HelmRenderError",
     "needs metrics.enabled"),
    ({"settings": {"journal": "/tmp/j"}}, "HelmRenderError", "settings.journal"),
])
def test_chart_refuses_bad_values(values: dict, error: str, message: str) -> None:
    """values.schema.json and the templates' checks refuse a mistake by name,
    before anything reaches a cluster."""
    import helm_python

    with pytest.raises(getattr(helm_python, error), match=message.replace("(", r"\(")):
        helm_render(values)


def test_chart_pod_runs_as_rendered(daemon_factory, tmp_path: pathlib.Path) -> None:
    """The DaemonSet's pod, as far as one machine can be it: the rendered
    iommud.toml and topology.toml, and the container's environment, start a
    real daemon; the Secrets are files under their keys where the pod mounts
    them; its three probes report SERVING; the metrics port serves /metrics;
    mutual TLS takes the client certificate; `iommuctl admin sessions` (the
    README's admin view) answers for the configured admin uid. Only addresses
    change: 0.0.0.0 becomes 127.0.0.1 with port 0, and every pod path a
    directory under tmp_path."""
    from test_deploy import _make_pki

    uid = os.getuid()
    values = copy.deepcopy(NON_DEFAULT)
    values["access"] = {"allowUids": [uid], "adminUids": [uid]}
    values["settings"] = {"log_format": "json", "lease_seconds": 30}
    docs = helm_render(values)
    pod, c = pod_spec(docs), container(docs)

    # Every mount of the pod, as a directory here.
    pki = _make_pki(tmp_path)
    secret_files = {"iommud-server-tls": {"tls.crt": pki["server"], "tls.key": pki["server_key"]},
                    "vmm-client-ca": {"bundle.pem": pki["ca"]}}
    where: dict[str, pathlib.Path] = {}
    for m in c["volumeMounts"]:
        d = tmp_path / "pod" / m["mountPath"].strip("/")
        d.mkdir(parents=True)
        where[m["mountPath"]] = d
        source = next(v for v in pod["volumes"] if v["name"] == m["name"])
        if "configMap" in source:
            for key, text in kind(docs, "ConfigMap")["data"].items():
                (d / key).write_text(text)
        elif "secret" in source:
            for key, path in secret_files[source["secret"]["secretName"]].items():
                (d / key).write_bytes(pathlib.Path(path).read_bytes())

    pod_paths = re.compile("|".join(re.escape(p) for p in sorted(where, key=len, reverse=True)))

    def here(text: str) -> str:
        return pod_paths.sub(lambda m: str(where[m.group(0)]), text)

    config = where["/etc/iommud"] / "iommud.toml"
    config.write_text(here(config.read_text()))
    env = {k: here(v) for k, v in env_of(c).items()}
    assert env.pop("IOMMUD_METRICS_ADDRESS") == "0.0.0.0:9500"
    assert env.pop("IOMMUD_TCP") == "0.0.0.0:50443"
    env.update(IOMMUD_METRICS_ADDRESS="127.0.0.1:0", IOMMUD_TCP="127.0.0.1:0")
    assert c["args"] == ["--config", "/etc/iommud/iommud.toml"]

    sock = where["/run/iommud"] / "iommud.sock"
    d = daemon_factory("--config", str(config), env=env, name="chart",
                       workdir=where["/run/iommud"])
    assert d.socket_path == sock
    assert (where["/var/lib/iommud"] / "journal").exists()      # the journal's hostPath

    host = {k: v for k, v in os.environ.items() if not k.startswith(("IOMMUD_", "IOMMUCTL_"))}
    ctl_env = {**host, **env}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        out = subprocess.run([here(a) for a in c[probe]["exec"]["command"]], capture_output=True,
                             text=True, timeout=60, env=ctl_env)
        assert out.returncode == 0 and out.stdout == "SERVING\n", (probe, out.stderr)

    address = d.events("metrics.serving")[0]["address"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as r:
        assert r.status == 200 and b"iommud_sessions " in r.read()

    port = d.tcp_endpoint.rsplit(":", 1)[1]
    tls = {"IOMMUCTL_TLS_CA": pki["ca"], "IOMMUCTL_TLS_CERT": pki["vmm"],
           "IOMMUCTL_TLS_KEY": pki["vmm_key"]}
    out = subprocess.run(["iommuctl", "--endpoint", f"localhost:{port}", "health"],
                         capture_output=True, text=True, timeout=60, env={**ctl_env, **tls})
    assert out.returncode == 0 and out.stdout == "SERVING\n", out.stderr

    out = subprocess.run(["iommuctl", "--endpoint", f"unix:{sock}", "admin", "sessions",
                          "-o", "json"], capture_output=True, text=True, timeout=60, env=ctl_env)
    assert out.returncode == 0, out.stderr


# -- kustomize ----------------------------------------------------------------------------------

BASE_KINDS = ["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"]


@pytest.mark.parametrize(("target", "extra"), [
    ("base", []), ("overlays/production", []), ("overlays/sysfs-topology", []),
    ("overlays/monitoring", ["Service", "ServiceMonitor"])])
def test_kustomize_targets_render_and_validate(tmp_path: pathlib.Path, target: str,
                                               extra: list[str]) -> None:
    docs = kustomize_build(K8S / target)
    validate(docs, tmp_path)
    assert sorted(d["kind"] for d in docs) == sorted(BASE_KINDS + extra)
    pod = pod_spec(docs)
    assert_device_daemon_placement(pod)
    assert_probes_wait_for_replay(container(docs), budget=300)


def test_kustomize_base_places_and_probes_as_the_chart_does() -> None:
    """One daemon, two ways to deploy it: the base and the chart's defaults
    agree on placement, probes, host directories and security."""
    base, chart = kustomize_build(K8S / "base"), helm_render()
    for field in ("affinity", "tolerations", "securityContext", "priorityClassName",
                  "terminationGracePeriodSeconds"):
        assert pod_spec(base)[field] == pod_spec(chart)[field], field
    for field in ("startupProbe", "readinessProbe", "livenessProbe", "securityContext",
                  "resources", "args"):
        assert container(base)[field] == container(chart)[field], field

    def by_name(items: list[dict]) -> dict[str, dict]:
        return {i["name"]: i for i in items}

    assert by_name(container(base)["volumeMounts"]) == by_name(container(chart)["volumeMounts"])
    assert by_name(pod_spec(base)["volumes"]) == by_name(pod_spec(chart)["volumes"])
    assert iommud_settings(base) == iommud_settings(chart)


def iommud_settings(docs: list[dict]) -> dict[str, Any]:
    import tomllib
    return tomllib.loads(kind(docs, "ConfigMap")["data"]["iommud.toml"])["iommud"]


def test_metrics_component_without_servicemonitor(tmp_path: pathlib.Path) -> None:
    """components/metrics alone (a cluster without the prometheus-operator):
    the port, the environment and the Service, wired to each other."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    docs = kustomize_with(overlay, [K8S / "base"], [K8S / "components" / "metrics"])
    validate(docs, tmp_path)
    assert sorted(d["kind"] for d in docs) == sorted([*BASE_KINDS, "Service"])
    c = container(docs)
    assert env_of(c)["IOMMUD_METRICS_ADDRESS"] == "0.0.0.0:9464"
    assert env_of(c)["IOMMUCTL_STATE_DIR"] == "/tmp/iommuctl"        # merged, not replaced
    assert ports(docs)["metrics"]["containerPort"] == 9464
    svc = kind(docs, "Service")
    pod_labels = kind(docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"

    sm_docs = kustomize_build(K8S / "overlays" / "monitoring")
    sm, svc = kind(sm_docs, "ServiceMonitor"), kind(sm_docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"] == "iommud"

