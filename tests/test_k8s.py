"""The k8s/ manifests render, are valid Kubernetes, and keep their production properties.

Every overlay under k8s/overlays (found by listing the directory, so a new overlay is tested
without editing this file) and the base are rendered with the locked ``kubectl kustomize`` and
each object is validated in strict mode (unknown fields fail) against the Kubernetes JSON
schemas bundled with kubernetes-validate. No cluster is involved: rendering and schemas only.

Overlay names carry their expectations: a ``gpu`` part (``gpu``, ``gpu-gcs``) means the -gpu
image and an ``nvidia.com/gpu`` limit; a ``gcs`` part means a ``gs://`` model path and no PVC; a
``web`` part means the page for people (``vocalsep web``, k8s/components/web) beside the serving
stack. The serving checks look at the serving objects (``app.kubernetes.io/name:
vocalsep-serving``); the page's objects have checks of their own.
"""

from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from vocalsep import cli
from vocalsep.beam_worker import POOL_COMMAND
from vocalsep.pipeline import kubeflow_runner
from vocalsep.pipeline.config import DEFAULT_IMAGE
from vocalsep.web import server as web_server

REPO_ROOT = Path(__file__).resolve().parents[1]
K8S = REPO_ROOT / "k8s"
KUBECTL = Path(sys.executable).with_name("kubectl")
# A recent release still widely run; the manifests use nothing newer (preStop sleep is 1.30).
KUBERNETES_VERSION = "1.33.0"
IMAGE = "tensorflow/serving:2.16.1"
MODEL_NAME = "vocalsep"
CLIENT_LABEL = ("vocalsep.io/client", "true")
SERVING_PORTS = {"grpc": 8500, "http": 8501}
MIN_STARTUP_SECONDS = 300
SERVING = "vocalsep-serving"
WEB = "vocalsep-web"
WEB_PORT = 8080

Obj = dict[str, Any]


def _targets() -> list[str]:
    """The base and every overlay directory holding a kustomization.yaml."""
    overlays = sorted(
        path.name
        for path in (K8S / "overlays").iterdir()
        if (path / "kustomization.yaml").is_file()
    )
    return ["base", *(f"overlays/{name}" for name in overlays)]


TARGETS = _targets()


def _flavours(target: str) -> set[str]:
    """The dash-separated parts of an overlay's name (``gpu-gcs`` -> {gpu, gcs})."""
    return set(PurePosixPath(target).name.split("-"))


WEB_TARGETS = [target for target in TARGETS if "web" in _flavours(target)]


@functools.cache
def _render(target: str) -> tuple[Obj, ...]:
    """The objects ``kubectl kustomize`` renders for a target, rendered once per session."""
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _part(objects: tuple[Obj, ...], name: str) -> tuple[Obj, ...]:
    """The objects of one application (``app.kubernetes.io/name``): serving, or the page."""
    return tuple(obj for obj in objects if _labels(obj).get("app.kubernetes.io/name") == name)


def _labels(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("labels", {})


def _of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def _one(objects: tuple[Obj, ...], kind: str) -> Obj:
    found = _of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container: the model server"
    return containers[0]


def _flags(container: Obj) -> dict[str, str]:
    """``--name=value`` arguments as a dict (a bare ``--flag`` maps to "")."""
    flags = {}
    for arg in container.get("args", []):
        name, _, value = arg.partition("=")
        flags[name] = value
    return flags


def _port_number(container: Obj, port: int | str) -> int:
    """A probe's or Service's port (number or container port name) as a number."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in by_name, f"port {port!r} names no container port"
    return by_name[port]


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIX = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def _quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number, for comparing requests with limits."""
    match = _QUANTITY.match(str(value))
    assert match, f"unparsable quantity {value!r}"
    return float(match[1]) * _SUFFIX[match[2]]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objects(target: str) -> tuple[Obj, ...]:
    """The serving stack's objects."""
    return _part(_render(target), SERVING)


def test_overlays_are_discovered() -> None:
    """The overlays the README documents exist, so discovery cannot silently test nothing."""
    assert {"overlays/cpu", "overlays/gpu", "overlays/gcs", "overlays/web"} <= set(TARGETS)
    assert WEB_TARGETS == ["overlays/web"]


def test_objects_validate_in_strict_mode(target: str) -> None:
    """Every rendered object matches its schema; a typo'd or misplaced field fails here."""
    _validate_strictly(_render(target))


def _validate_strictly(objects: tuple[Obj, ...]) -> None:
    assert objects
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
    assert not errors, "\n".join(errors)


def test_validator_rejects_a_misspelled_field() -> None:
    """Strict validation is real: a Deployment with ``readinesProbe`` passes loosely, fails here."""
    deployment = copy.deepcopy(_one(_render("base"), "Deployment"))
    container = _container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=False)
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_expected_objects(target: str, objects: tuple[Obj, ...]) -> None:
    """Each target renders the whole serving stack (and the page where its name says so),
    labelled and in a single namespace."""
    for kind in (
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ConfigMap",
        "ServiceAccount",
    ):
        _one(objects, kind)
    assert _of_kind(objects, "Service")
    claims = _of_kind(objects, "PersistentVolumeClaim")
    assert len(claims) == (0 if "gcs" in _flavours(target) else 1)
    rendered = _render(target)
    assert len(objects) + len(_part(rendered, WEB)) == len(rendered), "an object of no part"
    assert bool(_part(rendered, WEB)) == (target in WEB_TARGETS)
    for obj in rendered:
        assert _labels(obj).get("app.kubernetes.io/part-of") == "vocalsep", obj["metadata"]["name"]
    namespaces = {obj["metadata"].get("namespace") for obj in rendered}
    assert len(namespaces) == 1, f"objects spread over namespaces {namespaces}"
    if target != "base":
        assert namespaces != {None}, "an overlay must set the namespace"


def test_image_and_ports(target: str, objects: tuple[Obj, ...]) -> None:
    """The pinned TF Serving image (-gpu on GPU overlays) with named gRPC and REST ports."""
    container = _container(_one(objects, "Deployment"))
    expected = f"{IMAGE}-gpu" if "gpu" in _flavours(target) else IMAGE
    assert container["image"] == expected
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == SERVING_PORTS
    flags = _flags(container)
    assert flags["--port"] == "8500"
    assert flags["--rest_api_port"] == "8501"


def test_server_side_batching_is_off(objects: tuple[Obj, ...]) -> None:
    """The signature takes one unbatched waveform ``[samples, 2]``: TF Serving's batching
    concatenates requests along dimension 0, which would splice songs into one waveform."""
    flags = _flags(_container(_one(objects, "Deployment")))
    assert "--enable_batching" not in flags
    assert "--batching_parameters_file" not in flags


def test_probes(objects: tuple[Obj, ...]) -> None:
    """Ready when the model status answers; alive on gRPC; a long startup allowance first."""
    container = _container(_one(objects, "Deployment"))
    readiness = container["readinessProbe"]["httpGet"]
    assert readiness["path"] == f"/v1/models/{MODEL_NAME}"
    assert _port_number(container, readiness["port"]) == SERVING_PORTS["http"]
    liveness = container["livenessProbe"]
    assert "tcpSocket" in liveness or "grpc" in liveness or "httpGet" in liveness
    startup = container["startupProbe"]
    allowance = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    assert allowance >= MIN_STARTUP_SECONDS, "big models load slowly: startup must be generous"


def test_resources(target: str, objects: tuple[Obj, ...]) -> None:
    """CPU and memory requested and capped (limit >= request); a GPU exactly where intended."""
    resources = _container(_one(objects, "Deployment"))["resources"]
    for name in ("cpu", "memory"):
        request = _quantity(resources["requests"][name])
        limit = _quantity(resources["limits"][name])
        assert 0 < request <= limit, f"{name}: request {request} limit {limit}"
    gpus = resources["limits"].get("nvidia.com/gpu")
    if "gpu" in _flavours(target):
        assert gpus is not None and int(gpus) >= 1
    else:
        assert gpus is None, "a CPU overlay must not hold a GPU"


def test_security_context(objects: tuple[Obj, ...]) -> None:
    """Non-root, read-only root filesystem, no privilege escalation or capabilities, /tmp kept."""
    _assert_hardened(_one(objects, "Deployment"))


def _assert_hardened(deployment: Obj) -> None:
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    pod_context = pod["securityContext"]
    context = container["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert context.get("runAsNonRoot", True) is True
    assert context.get("runAsUser", pod_context.get("runAsUser", 0)) != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile"))
    assert seccomp == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]


def test_model_config(target: str, objects: tuple[Obj, ...]) -> None:
    """Every ``--*_file`` flag names a key of the mounted, hash-named config ConfigMap; the
    model config parses as TF Serving's ModelServerConfig and serves vocalsep from where the
    overlay stores it (a read-only PVC mount, or gs://)."""
    deployment = _one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_maps = {c["metadata"]["name"]: c["data"] for c in _of_kind(objects, "ConfigMap")}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}

    def file_content(path: str) -> str:
        directory, key = str(PurePosixPath(path).parent), PurePosixPath(path).name
        assert directory in mounts, f"{path}: nothing mounted at {directory}"
        volume = volumes[mounts[directory]["name"]]
        assert "configMap" in volume, f"{path}: not from a ConfigMap"
        name = volume["configMap"]["name"]
        assert name in config_maps, f"{path}: ConfigMap {name} is not rendered"
        assert re.fullmatch(r"vocalsep-serving-config-[a-z0-9]{10}", name), "no content hash"
        assert key in config_maps[name], f"{path}: ConfigMap {name} has no key {key}"
        return config_maps[name][key]

    flags = _flags(container)
    for flag, value in flags.items():
        if flag.endswith("_file"):
            file_content(value)
    server_config = text_format.Parse(
        file_content(flags["--model_config_file"]), model_server_config_pb2.ModelServerConfig()
    )
    (model,) = server_config.model_config_list.config
    assert model.name == MODEL_NAME
    assert model.model_platform == "tensorflow"
    base_path = model.base_path
    assert PurePosixPath(base_path).name == MODEL_NAME, "the Pusher writes <base>/vocalsep/<v>/"

    claims = {c["metadata"]["name"] for c in _of_kind(objects, "PersistentVolumeClaim")}
    claim_volumes = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
    if "gcs" in _flavours(target):
        assert base_path.startswith("gs://")
        assert not claims and not claim_volumes
        annotations = _one(objects, "ServiceAccount")["metadata"].get("annotations", {})
        assert "iam.gke.io/gcp-service-account" in annotations
        return
    assert base_path.startswith("/")
    model_mounts = [
        m
        for m in container["volumeMounts"]
        if PurePosixPath(base_path).is_relative_to(m["mountPath"])
        and "persistentVolumeClaim" in volumes[m["name"]]
    ]
    assert len(model_mounts) == 1, f"{base_path} is not on a PVC mount"
    assert model_mounts[0].get("readOnly") is True, "serving must not write the model store"
    claim = volumes[model_mounts[0]["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim in claims, f"claim {claim} is not rendered"


def test_services_select_the_pods(objects: tuple[Obj, ...]) -> None:
    """Each Service selects the Deployment's pods and forwards to its serving ports."""
    deployment = _one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = _container(deployment)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    served: set[int] = set()
    for service in _of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        assert selector and selector.items() <= pod_labels.items(), service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            target_port = _port_number(container, port.get("targetPort", port["port"]))
            assert target_port in SERVING_PORTS.values()
            served.add(target_port)
    assert served == set(SERVING_PORTS.values())


def test_autoscaler_and_disruption_budget(objects: tuple[Obj, ...]) -> None:
    """The HPA scales this Deployment on CPU (and owns the replica count); the PDB covers it."""
    deployment = _one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    hpa = _one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["metrics"])
    assert "replicas" not in deployment["spec"], "a fixed count would fight the HPA on apply"
    pdb = _one(objects, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()


def test_network_policy_admits_only_labelled_clients(objects: tuple[Obj, ...]) -> None:
    """Ingress to the serving pods only from pods carrying the client label, only on 8500/8501."""
    pod_labels = _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    policy = _one(objects, "NetworkPolicy")["spec"]
    selector = policy["podSelector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    assert "Ingress" in policy["policyTypes"]
    assert policy["ingress"], "no rule would deny all traffic, including clients"
    key, value = CLIENT_LABEL
    for rule in policy["ingress"]:
        assert rule.get("from"), "a rule without `from` admits every source"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            assert peer.get("podSelector", {}).get("matchLabels", {}).get(key) == value, peer
            if "namespaceSelector" in peer:
                assert peer["namespaceSelector"].get("matchLabels"), "{} matches every namespace"
        assert rule.get("ports"), "a rule without ports admits every port"
        assert {(p.get("protocol", "TCP"), p["port"]) for p in rule["ports"]} <= {
            ("TCP", port) for port in SERVING_PORTS.values()
        }


@pytest.fixture(params=WEB_TARGETS)
def web_target(request: pytest.FixtureRequest) -> str:
    return request.param


def test_the_page_separates_through_the_model_servers_grpc_service(web_target: str) -> None:
    """`vocalsep web` in the project's image, its flags ones the CLI accepts, its --server the
    serving Service's gRPC port; its pods carry the label the serving NetworkPolicy admits."""
    rendered = _render(web_target)
    deployment = _one(_part(rendered, WEB), "Deployment")
    container = _container(deployment)
    assert container["image"] == DEFAULT_IMAGE
    assert container["command"][0] == "vocalsep"
    args = cli.build_parser().parse_args([*container["command"][1:], *container["args"]])
    assert args.handler is cli._cmd_web
    assert (args.host, args.port, args.model) == ("0.0.0.0", WEB_PORT, None)
    assert _port_number(container, "http") == WEB_PORT
    host, port = args.server.rsplit(":", 1)
    (service,) = [s for s in _of_kind(rendered, "Service") if s["metadata"]["name"] == host]
    assert _part((service,), SERVING), f"{host} is not the model server's Service"
    assert {"name": "grpc", "port": int(port)}.items() <= service["spec"]["ports"][0].items()
    assert int(port) == SERVING_PORTS["grpc"]
    key, value = CLIENT_LABEL
    assert deployment["spec"]["template"]["metadata"]["labels"][key] == value


def test_the_page_runs_hardened_with_a_work_dir_that_outlives_the_pod_and_drains(
    web_target: str,
) -> None:
    """The work dir (uploads, stems, the job database) on the web part's own claim, so a
    rollout keeps the songs accepted; the pod has time to drain, and is not ready meanwhile."""
    web = _part(_render(web_target), WEB)
    deployment = _one(web, "Deployment")
    _assert_hardened(deployment)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    args = cli.build_parser().parse_args([*container["command"][1:], *container["args"]])
    volumes = {v["name"]: v for v in pod["volumes"]}
    (work,) = [m for m in container["volumeMounts"] if m["mountPath"] == args.work_dir]
    assert not work.get("readOnly")
    claim = _one(web, "PersistentVolumeClaim")
    assert volumes[work["name"]]["persistentVolumeClaim"] == {
        "claimName": claim["metadata"]["name"]
    }
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # The disk budget fits the claim, so finished songs make room before the volume fills.
    assert args.max_disk_gb * 2**30 < _quantity(claim["spec"]["resources"]["requests"]["storage"])
    # Songs' jobs live in one pod: one replica, never two at once on the claim.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    # The per-client share counts people behind the Ingress, not the Ingress itself.
    environment = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert environment["FORWARDED_ALLOW_IPS"] == "*"
    # SIGTERM: the running songs get --drain-seconds, open connections 5 s more, before the
    # kubelet's SIGKILL at the end of the grace period.
    grace = pod["terminationGracePeriodSeconds"]
    assert args.drain_seconds + web_server.GRACEFUL_SHUTDOWN_S < grace
    for probe, path in (
        ("startupProbe", "/api"),
        ("readinessProbe", "/api/ready"),
        ("livenessProbe", "/api"),
    ):
        check = container[probe]["httpGet"]
        assert check["path"] == path and _port_number(container, check["port"]) == WEB_PORT
    for name in ("cpu", "memory"):
        request = _quantity(container["resources"]["requests"][name])
        assert 0 < request <= _quantity(container["resources"]["limits"][name])


def test_the_pages_service_and_network_policy_reach_only_its_port(web_target: str) -> None:
    web = _part(_render(web_target), WEB)
    deployment = _one(web, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = _container(deployment)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = _one(web, "Service")["spec"]
    assert service["selector"].items() <= pod_labels.items()
    assert [_port_number(container, port["targetPort"]) for port in service["ports"]] == [WEB_PORT]
    policy = _one(web, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    ports = {
        (port["protocol"], port["port"]) for rule in policy["ingress"] for port in rule["ports"]
    }
    assert ports == {("TCP", WEB_PORT)}
    assert _one(web, "ServiceAccount")["automountServiceAccountToken"] is False


# ---- k8s/flink: the Beam stages on a Flink session cluster --------------------------------


def test_flink_cluster_validates_in_strict_mode() -> None:
    _validate_strictly(_render("flink"))


def test_flink_task_managers_run_our_dofns_in_a_worker_pool_sidecar_of_the_image() -> None:
    """What `--beam-runner flink` (EXTERNAL environment) asks each task manager for exists
    there: the pool at localhost:50000, in the image that has vocalsep, one worker per slot."""
    objects = _render("flink")
    deployments = {obj["metadata"]["name"]: obj for obj in _of_kind(objects, "Deployment")}
    taskmanager = deployments["flink-taskmanager"]
    containers = {c["name"]: c for c in taskmanager["spec"]["template"]["spec"]["containers"]}
    sidecar = containers["beam-worker-pool"]
    assert sidecar["image"] == DEFAULT_IMAGE
    assert sidecar["command"] == [POOL_COMMAND]
    pool_port = kubeflow_runner.FLINK_SIDECAR_POOL.rpartition(":")[2]
    assert sidecar["args"] == [f"--address=127.0.0.1:{pool_port}"]  # the pod's loopback only
    assert sidecar["securityContext"]["runAsUser"] == 1000
    config_map = _one(objects, "ConfigMap")
    flink_conf = yaml.safe_load(config_map["data"]["flink-conf.yaml"])
    assert flink_conf["jobmanager.rpc.address"] == "flink-jobmanager"
    slots = flink_conf["taskmanager.numberOfTaskSlots"]
    assert _quantity(sidecar["resources"]["limits"]["cpu"]) >= slots  # a core per SDK worker
    service = _one(objects, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]}["webui"] == 8081
    flink_images = [
        container["image"]
        for deployment in deployments.values()
        for container in deployment["spec"]["template"]["spec"]["containers"]
        if container["name"] != "beam-worker-pool"
    ]
    assert len(flink_images) == 2
    assert all(i.startswith(f"flink:{kubeflow_runner.FLINK_VERSION}.") for i in flink_images)
    args = kubeflow_runner.beam_args("flink", flink_master="flink-jobmanager:8081")
    assert "--flink_master=flink-jobmanager:8081" in args
    assert f"--flink_version={kubeflow_runner.FLINK_VERSION}" in args
