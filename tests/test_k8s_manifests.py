"""The Kubernetes manifests under deploy/kubernetes/ and the Dockerfile they run.

Offline: every manifest is validated against the Kubernetes API schema that the
``kubernetes-validate`` package bundles (strict: unknown fields fail), the relay
configs in the ConfigMaps load without problems, and the rules the README promises
are checked on the parsed objects: secrets only by reference, a locked-down security
context, probes on the health_check port, memory limits that fit memory_limiter,
and a Dockerfile that agrees with the manifests. Without ``kubernetes-validate`` the
schema tests skip, except when ``CI`` is set, where they fail.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from relay.config.load import load
from relay.net.endpoints import split_endpoint
from relay.pipeline.registry import default_registry
from relay.signals import Signal

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

# The newest Kubernetes release kubernetes-validate 1.37 bundles schemas for.
K8S_VERSION = "1.37"

CONFIG_PATH = "/etc/genops-relay/relay.yaml"
STATE_PATH = "/var/lib/genops-relay"
RUN_ARGS = ["run", "--config", CONFIG_PATH]
UID = GID = 10001
HEALTH_PORT = 13133
# memory_limiter measures resident memory; the container limit must leave room above its
# hard limit for growth between checks and for memory the kernel charges beside it.
MIN_HEADROOM = 0.20
SECRET_LOOKING = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
ENV_REF = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)")
# Kinds the bundled schemas do not cover: checked structurally below.
NOT_IN_SCHEMA = {"Kustomization", "PodMonitor"}


@functools.cache
def documents() -> tuple[tuple[str, int, dict], ...]:
    """Every document of every manifest, parsed once: tests copy before they change one."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                found.append((path.name, index, doc))
    return tuple(found)


def the(kind: str, file: str | None = None, name: str | None = None) -> dict:
    (found,) = [doc for f, _, doc in documents() if doc["kind"] == kind and (file is None or f == file)
                and (name is None or doc["metadata"]["name"] == name)]
    return found


def kubernetes_validate():
    try:
        import kubernetes_validate as module
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kubernetes-validate is not installed (pip install kubernetes-validate)")
        pytest.skip("kubernetes-validate is not installed")
    return module


def schema_check(doc: dict) -> None:
    kv = kubernetes_validate()
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
        return
    except kv.ValidationError as error:
        problem = f'{"/".join(map(str, error.absolute_path))}: {error.message}'
    pytest.fail(f'{doc["kind"]} {doc["metadata"].get("name")}: {problem}')


# --- strategic merge, enough for the sidecar patch ------------------------------------------


def strategic_merge(base, patch):
    """Maps merge key by key; lists of named maps (containers, volumes, ports) merge by name;
    anything else is replaced, as the API server's strategic merge does for these fields."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base.get(key), value)
        return merged
    if (isinstance(base, list) and isinstance(patch, list)
            and all(isinstance(item, dict) and "name" in item for item in base + patch)):
        merged = {item["name"]: item for item in base}
        for item in patch:
            merged[item["name"]] = strategic_merge(merged.get(item["name"]), item)
        return list(merged.values())
    return copy.deepcopy(patch)


def is_relay(container: dict) -> bool:
    return "/genops-relay:" in container["image"] and container.get("args", [])[:1] == ["run"]


def plain_app() -> dict:
    """sidecar-deployment.yaml's Deployment as it was before the relay was added."""
    app = copy.deepcopy(the("Deployment", "sidecar-deployment.yaml"))
    app["metadata"]["name"] = "my-app"
    pod = app["spec"]["template"]
    del pod["metadata"]["annotations"]
    pod["spec"]["initContainers"] = [c for c in pod["spec"]["initContainers"] if not is_relay(c)]
    if not pod["spec"]["initContainers"]:
        del pod["spec"]["initContainers"]
    pod["spec"]["volumes"] = [v for v in pod["spec"]["volumes"] if not v["name"].startswith("genops-relay")]
    return app


def patched_app() -> dict:
    return strategic_merge(plain_app(), the("Deployment", "sidecar-patch.yaml"))


# --- the workloads that run the relay -------------------------------------------------------


def workloads() -> dict[str, dict]:
    return {"daemonset": the("DaemonSet"), "sidecar": the("Deployment", "sidecar-deployment.yaml"),
            "patched": patched_app()}


WORKLOADS = ["daemonset", "sidecar", "patched"]


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def relay_container(workload: dict) -> dict:
    (found,) = [c for c in containers(workload) if is_relay(c)]
    return found


def mounts(workload: dict) -> dict[str, tuple[dict, dict]]:
    """mountPath -> (mount, volume) of the relay container."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in relay_container(workload)["volumeMounts"]}


def relay_config_text(workload: dict) -> str:
    """The relay.yaml of the ConfigMap mounted at the config path."""
    directory, file = CONFIG_PATH.rsplit("/", 1)
    _, volume = mounts(workload)[directory]
    (item,) = [i for i in volume["configMap"]["items"] if i["path"] == file]
    return the("ConfigMap", name=volume["configMap"]["name"])["data"][item["key"]]


def relay_config(workload: dict):
    return loaded(relay_config_text(workload))


# What the containers give the configs: placeholders for the Secret and the downward API.
CONFIG_ENV = {"BACKEND_API_KEY": "x", "RELAY_REPLICA": "node-a",
              "RELAY_REMOTE_WRITE_ENDPOINT": "http://prometheus.monitoring.svc:9090/api/v1/write"}


@functools.cache
def loaded(text: str):
    return load(text, default_registry(), env=CONFIG_ENV)


def component(config, kind: str, type_: str):
    (found,) = [c for id_, c in config.components[kind].items() if id_.type == type_]
    return found


def effective_security(workload: dict, container: dict) -> dict:
    """The container's security context over the pod's, for the fields both can set."""
    pod = pod_spec(workload).get("securityContext", {})
    merged = {key: pod[key] for key in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile") if key in pod}
    merged.update(container.get("securityContext", {}))
    return merged


def mebibytes(quantity: str) -> float:
    units = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "k": 1e3, "M": 1e6, "G": 1e9, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity)).groups()
    return float(number) * units[unit] / 2 ** 20


# --- schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("file, index", [(f, i) for f, i, doc in documents()
                                         if doc["kind"] not in NOT_IN_SCHEMA and f != "sidecar-patch.yaml"])
def test_manifest_is_valid_for_current_kubernetes(file, index):
    (doc,) = [d for f, i, d in documents() if (f, i) == (file, index)]
    schema_check(doc)


def test_sidecar_patch_on_a_plain_deployment_gives_a_valid_one_with_the_same_relay():
    # A patch is partial, so it is validated as what it produces.
    before = plain_app()
    schema_check(before)
    after = patched_app()
    schema_check(after)
    example = the("Deployment", "sidecar-deployment.yaml")
    assert relay_container(after) == relay_container(example)
    relay_volumes = [v for v in pod_spec(example)["volumes"] if v["name"].startswith("genops-relay")]
    assert [v for v in pod_spec(after)["volumes"] if v["name"].startswith("genops-relay")] == relay_volumes
    # The app's own containers are untouched.
    assert pod_spec(after)["containers"] == pod_spec(before)["containers"]


def test_podmonitor_selects_the_relay_pods_and_keeps_the_prometheus_job_names():
    # prometheus-operator's CRDs are not among the bundled schemas: the PodMonitor's
    # structure is checked here against what it must say.
    monitor = the("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["namespace"] == the("DaemonSet")["metadata"]["namespace"]
    assert set(monitor["spec"]) <= {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
    pod_labels = the("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    ports = {p["name"]: p["containerPort"] for p in relay_container(the("DaemonSet"))["ports"]}
    scrape_jobs = {}
    for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))["scrape_configs"]:
        for target in (t for static in job.get("static_configs", []) for t in static["targets"]):
            scrape_jobs[int(target.rsplit(":", 1)[1])] = job["job_name"]
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    for endpoint in endpoints:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings"}
        assert endpoint["path"] == "/metrics"
        (job,) = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
        # The job name deploy/prometheus/prometheus.yml gives the same port, which the rules watch.
        assert job == scrape_jobs[ports[endpoint["port"]]]
    assert {ports[e["port"]] for e in endpoints} == {8889, 8888}


def test_kustomization_deploys_the_daemonset_set():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["resources"] == ["namespace.yaml", "configmap.yaml", "daemonset.yaml", "service.yaml"]
    namespace = the("Namespace")["metadata"]["name"]
    for file in kustomization["resources"]:
        for _, _, doc in [d for d in documents() if d[0] == file]:
            assert doc["metadata"].get("namespace", namespace) == namespace, file


# --- the relay configs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["genops-relay-config", "genops-relay-sidecar-config"])
def test_relay_config_in_configmap_loads_without_problems(name):
    text = the("ConfigMap", name=name)["data"]["relay.yaml"]
    config = load(text, default_registry(), env=CONFIG_ENV)
    assert [p.processors[0].type for p in config.pipelines] == ["memory_limiter"] * len(config.pipelines)
    otlp = component(config, "exporters", "otlp")
    assert otlp.sending_queue.storage == "file_storage"
    assert component(config, "extensions", "file_storage").directory.startswith(STATE_PATH + "/")
    prometheus = component(config, "exporters", "prometheus")
    assert (prometheus.namespace, prometheus.const_labels) == ("genops_openrouter", {"service": "openrouter"})
    # The key only ever arrives through the environment: no literal value in the config.
    assert "${env:BACKEND_API_KEY}" in text
    assert otlp.headers == {"authorization": "Bearer x"}


@pytest.mark.parametrize("which", WORKLOADS)
def test_every_variable_the_config_reads_is_set_on_the_container(which):
    workload = workloads()[which]
    names = {e["name"] for e in relay_container(workload).get("env", [])}
    assert set(ENV_REF.findall(relay_config_text(workload))) <= names


# --- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", WORKLOADS)
def test_no_secret_value_inline_in_workloads(which):
    workload = workloads()[which]
    secret = the("Secret")
    for container in containers(workload):
        for env in container.get("env", []):
            if SECRET_LOOKING.search(env["name"]):
                assert "value" not in env, (container["name"], env["name"])
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret["stringData"]


def test_secrets_exist_only_as_the_marked_example():
    secrets = [(f, doc) for f, _, doc in documents() if doc["kind"] == "Secret"]
    assert [f for f, _ in secrets] == ["secret.example.yaml"]
    ((_, secret),) = secrets
    assert "data" not in secret
    assert all(value.startswith("REPLACE-") for value in secret["stringData"].values())
    assert (K8S / "secret.example.yaml").read_text(encoding="utf-8").startswith("# EXAMPLE ONLY")


# --- security ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", WORKLOADS)
def test_relay_runs_non_root_read_only_without_capabilities(which):
    workload = workloads()[which]
    context = effective_security(workload, relay_container(workload))
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (UID, GID)
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not context.get("privileged")


@pytest.mark.parametrize("which", ["daemonset", "sidecar"])
def test_every_other_container_is_locked_down_too(which):
    workload = workloads()[which]
    assert pod_spec(workload)["automountServiceAccountToken"] is False
    for container in containers(workload):
        context = effective_security(workload, container)
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        if container["name"] != "state-owner":
            assert context["runAsNonRoot"] is True and "add" not in context["capabilities"], container["name"]


def test_the_one_root_step_only_hands_the_state_directory_to_the_relay_user():
    daemonset = the("DaemonSet")
    (owner,) = [c for c in pod_spec(daemonset)["initContainers"] if c["name"] == "state-owner"]
    assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert owner["command"][:2] == ["/bin/sh", "-c"]
    assert owner["command"][2] == (f"chown {UID}:{GID} {STATE_PATH} && chmod 0700 {STATE_PATH}")
    assert [m["mountPath"] for m in owner["volumeMounts"]] == [STATE_PATH]
    assert "restartPolicy" not in owner  # a plain init container: it runs before the relay


@pytest.mark.parametrize("which", WORKLOADS)
def test_writable_only_where_the_relay_keeps_state_and_tmp(which):
    workload = workloads()[which]
    by_path = mounts(workload)
    assert {path for path, (mount, _) in by_path.items() if not mount.get("readOnly")} == {STATE_PATH, "/tmp"}
    assert "emptyDir" in by_path["/tmp"][1]
    state = by_path[STATE_PATH][1]
    if which == "daemonset":
        assert state["hostPath"] == {"path": STATE_PATH, "type": "DirectoryOrCreate"}
    else:
        assert "emptyDir" in state  # one queue per pod: replicas on a node never share one


# --- probes, ports, resources --------------------------------------------------------------


@pytest.mark.parametrize("which", WORKLOADS)
def test_probes_ask_health_check(which):
    workload = workloads()[which]
    health = component(relay_config(workload), "extensions", "health_check")
    host, port = split_endpoint(health.endpoint)
    assert (host, port) == ("0.0.0.0", HEALTH_PORT)  # the kubelet probes the pod's IP
    container = relay_container(workload)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": health.path, "port": HEALTH_PORT}, probe


@pytest.mark.parametrize("which", WORKLOADS)
def test_memory_limit_leaves_headroom_above_memory_limiter(which):
    workload = workloads()[which]
    limiter = component(relay_config(workload), "processors", "memory_limiter")
    resources = relay_container(workload)["resources"]
    limit = mebibytes(resources["limits"]["memory"])
    assert limiter.limit_mib and not limiter.limit_percentage
    assert limiter.limit_mib <= limit * (1 - MIN_HEADROOM), (limiter.limit_mib, limit)
    assert 0 < limiter.spike_limit_mib < limiter.limit_mib
    # The node reserves all the memory memory_limiter counts on.
    assert mebibytes(resources["requests"]["memory"]) == limit


@pytest.mark.parametrize("which", WORKLOADS)
def test_container_ports_are_the_configured_listeners(which):
    workload = workloads()[which]
    config = relay_config(workload)
    container = relay_container(workload)
    ports = {p["containerPort"]: p for p in container["ports"]}
    otlp = component(config, "receivers", "otlp").protocols
    receivers = [split_endpoint(otlp.grpc.endpoint), split_endpoint(otlp.http.endpoint)]
    listeners = {split_endpoint(component(config, "exporters", "prometheus").endpoint)[1],
                 split_endpoint(config.telemetry.metrics.address)[1], HEALTH_PORT}
    assert listeners <= set(ports)
    if which == "daemonset":
        # Reached on the node's IP: listening on the pod's IP, published on the node.
        assert [host for host, _ in receivers] == ["0.0.0.0", "0.0.0.0"]
        assert [ports[port]["hostPort"] for _, port in receivers] == [4317, 4318]
        assert [p for p in ports.values() if "hostPort" in p] == [ports[4317], ports[4318]]
    else:
        # Only the app in the same pod sends: nothing published, loopback only.
        assert [host for host, _ in receivers] == ["127.0.0.1", "127.0.0.1"]
        assert not any("hostPort" in p for p in ports.values())
        (app,) = workload["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in app["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://localhost:{receivers[0][1]}"


@pytest.mark.parametrize("which", WORKLOADS)
def test_pod_is_annotated_for_scraping_the_cost_counters(which):
    workload = workloads()[which]
    port = split_endpoint(component(relay_config(workload), "exporters", "prometheus").endpoint)[1]
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("which", WORKLOADS)
def test_relay_runs_the_mounted_config(which):
    workload = workloads()[which]
    assert relay_container(workload)["args"] == RUN_ARGS
    assert mounts(workload)[CONFIG_PATH.rsplit("/", 1)[0]][0]["readOnly"] is True


def test_daemonset_never_runs_two_relays_on_one_node_at_once():
    strategy = the("DaemonSet")["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_daemonset_names_each_relay_by_its_node_from_the_downward_api():
    replica = env_of(relay_container(the("DaemonSet")))["RELAY_REPLICA"]
    # The node's name: unique among the relays running at once only because a DaemonSet
    # never runs two on one node, which the update strategy guarantees during a rollout.
    assert replica == {"name": "RELAY_REPLICA", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    assert the("DaemonSet")["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0


def test_daemonset_remote_writes_every_series_with_its_replica_label():
    daemonset = the("DaemonSet")
    text = relay_config_text(daemonset)
    config = relay_config(daemonset)
    remote_write = component(config, "exporters", "prometheusremotewrite")
    # A plain label that keeps the replicas' series apart, not Mimir's HA pair
    # (cluster, __replica__), which would keep one replica's samples and drop the others'.
    assert remote_write.external_labels == {"service": "openrouter", "relay_replica": CONFIG_ENV["RELAY_REPLICA"]}
    assert "relay_replica: ${env:RELAY_REPLICA}" in text
    assert remote_write.namespace == component(config, "exporters", "prometheus").namespace
    assert remote_write.target_info.enabled
    (metrics,) = [p for p in config.pipelines if p.signal == Signal.METRICS]
    assert "prometheusremotewrite" in {e.type for e in metrics.exporters}
    assert "genops_metrics" in {r.type for r in metrics.receivers}
    endpoint = env_of(relay_container(daemonset))["RELAY_REMOTE_WRITE_ENDPOINT"]
    assert "${env:RELAY_REMOTE_WRITE_ENDPOINT}" in text
    assert endpoint["value"].startswith("http://") and endpoint["value"].endswith("/api/v1/write")


def test_services_select_the_relay_pods_by_named_ports():
    daemonset = the("DaemonSet")
    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    names = {p["name"] for p in relay_container(daemonset)["ports"]}
    otlp, metrics = the("Service", name="genops-relay"), the("Service", name="genops-relay-metrics")
    for service in (otlp, metrics):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    # OTLP through the Service stays on the sender's node, as through the hostPort.
    assert otlp["spec"]["internalTrafficPolicy"] == "Local"
    assert {p["port"] for p in otlp["spec"]["ports"]} == {4317, 4318}
    # Every relay holds its own node's counters: discovery must list each pod.
    assert metrics["spec"]["clusterIP"] == "None"
    assert {p["port"] for p in metrics["spec"]["ports"]} == {8889, 8888}


# --- the Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        instruction, _, arguments = current.strip().partition(" ")
        lines.append((instruction.upper(), arguments.strip()))
        current = ""
    return lines


def instruction(name: str) -> list[str]:
    return [arguments for found, arguments in dockerfile() if found == name]


@pytest.mark.parametrize("which", WORKLOADS)
def test_dockerfile_agrees_with_the_manifests(which):
    workload = workloads()[which]
    container = relay_container(workload)
    context = effective_security(workload, container)

    (user,) = instruction("USER")
    assert user == f'{context["runAsUser"]}:{context["runAsGroup"]}'
    exposed = {int(port.split("/")[0]) for line in instruction("EXPOSE") for port in line.split()}
    assert {p["containerPort"] for p in container["ports"]} <= exposed
    (volume,) = instruction("VOLUME")
    assert volume == STATE_PATH and STATE_PATH in mounts(workload)
    (healthcheck,) = instruction("HEALTHCHECK")
    assert re.findall(r"127\.0\.0\.1:(\d+)/", healthcheck) == [str(container["livenessProbe"]["httpGet"]["port"])]
    (entrypoint,), (cmd,) = instruction("ENTRYPOINT"), instruction("CMD")
    assert json.loads(entrypoint) == ["genops-relay"]
    # Without args the image runs what the manifests run, and finds the config where they put it.
    assert json.loads(cmd) == container["args"]


def test_dockerfile_prepares_the_user_the_state_directory_and_the_default_config():
    runs = instruction("RUN")
    (accounts,) = [shlex.split(r) for r in runs if "useradd" in r]
    assert accounts[accounts.index("groupadd") + 1:][:3] == ["--system", "--gid", str(GID)]
    useradd = accounts[accounts.index("useradd"):]
    assert useradd[useradd.index("--uid") + 1] == str(UID) and useradd[useradd.index("--gid") + 1] == str(GID)
    (owner,) = [r for r in runs if f"chown {UID}:{GID} {STATE_PATH}" in r]
    assert f"chmod 0700 {STATE_PATH}" in owner
    # Docker discards what a later RUN changes in a volume's directory.
    order = [name for name, _ in dockerfile() if name in ("RUN", "VOLUME")]
    assert order[-1] == "VOLUME"
    (default,) = [r for r in runs if CONFIG_PATH in r]
    assert "DEFAULT_CONFIG" in default


@pytest.mark.parametrize("which", WORKLOADS)
def test_the_images_data_directory_is_the_state_volume(which):
    """The built-in config keeps its cost ledger in $GENOPS_RELAY_DATA: the image points it at the
    volume every workload mounts, and no workload points it elsewhere."""
    settings = dict(pair.split("=", 1) for line in instruction("ENV") for pair in shlex.split(line))
    assert settings["GENOPS_RELAY_DATA"] == STATE_PATH
    workload = workloads()[which]
    assert STATE_PATH in mounts(workload)
    assert "GENOPS_RELAY_DATA" not in {item["name"] for item in relay_container(workload).get("env", [])}
