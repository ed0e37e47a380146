"""infra/: every manifest parses and has what its tool needs; Dockerfiles install torch before the project; no secrets."""

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flows.config import load_config

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
YAML_FILES = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
JSON_FILES = sorted(INFRA.rglob("*.json"))
DOCKERFILES = sorted(p for p in (INFRA / "docker").glob("Dockerfile.*") if p.suffix != ".dockerignore")
# the one place secrets belong (docker compose reads it, infra/.env.example documents it): never scanned, never committed
SECRETS_FILE = INFRA / ".env"


def load_yaml(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def one_doc(name: str) -> dict:
    (doc,) = load_yaml(INFRA / name)
    return doc


@pytest.mark.parametrize("path", YAML_FILES + JSON_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_manifest_parses(path):
    docs = [json.loads(path.read_text())] if path.suffix == ".json" else load_yaml(path)
    assert docs and all(isinstance(doc, dict) for doc in docs)


def test_the_expected_manifests_exist():
    names = {str(p.relative_to(INFRA)) for p in YAML_FILES + JSON_FILES + DOCKERFILES}
    assert {"compose.yaml", "ray/cluster.yaml", "k8s/raycluster.yaml", "k8s/rayjob.yaml", "k8s/pvc.yaml",
            "k8s/ray-auth-secret.yaml", "k8s/networkpolicy.yaml", "k8s/prefect-work-pool-job-template.json",
            "docker/Dockerfile.cpu", "docker/Dockerfile.cuda"} <= names


# --- compose -------------------------------------------------------------------------------------------------------

def test_compose_has_server_postgres_and_worker():
    services = one_doc("compose.yaml")["services"]
    assert {"server", "postgres", "worker"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
    assert services["postgres"]["healthcheck"]["test"]
    assert services["server"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["server"]["condition"] == "service_healthy"


def test_compose_server_uses_postgres_auth_and_loopback():
    server = one_doc("compose.yaml")["services"]["server"]
    env = server["environment"]
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in env["PREFECT_API_DATABASE_CONNECTION_URL"]
    # a missing secret stops `docker compose` with a message instead of starting without auth
    assert re.fullmatch(r"\$\{PREFECT_SERVER_API_AUTH_STRING:\?.+\}", env["PREFECT_SERVER_API_AUTH_STRING"])
    (port,) = server["ports"]
    assert port.startswith("${PREFECT_BIND:-127.0.0.1}:")


def compose_cli() -> list[str]:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine: `docker compose config` not run")
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker client here has no compose plugin: `docker compose config` not run")
    return ["docker", "compose", "-f", str(INFRA / "compose.yaml")]


def test_docker_compose_config_accepts_compose_yaml(tmp_path):
    cli = compose_cli()
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "PREFECT_SERVER_API_AUTH_STRING")}
    env_file = tmp_path / "test.env"
    env_file.write_text("POSTGRES_PASSWORD=test0nly\nPREFECT_SERVER_API_AUTH_STRING=test:test0nly\n")
    ok = subprocess.run([*cli, "--env-file", str(env_file), "config", "--quiet"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    env_file.write_text("")
    missing = subprocess.run([*cli, "--env-file", str(env_file), "config", "--quiet"], capture_output=True, text=True,
                             env=env)
    assert missing.returncode != 0 and "infra/.env" in missing.stderr


# --- KubeRay, Prefect work pool --------------------------------------------------------------------------------------

def test_raycluster_has_head_and_worker_groups():
    cluster = one_doc("k8s/raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert_ray_cluster_spec(cluster["spec"])


def assert_ray_cluster_spec(spec: dict) -> None:
    assert spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and group["template"]["spec"]["containers"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # stage outputs are written by every node: all of them mount the same ReadWriteMany volume
    for pod in [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]:
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [one_doc("k8s/pvc.yaml")["metadata"]["name"]]


def test_rayjob_entrypoint_is_a_valid_tokenmill_run(repo_cwd):
    job = one_doc("k8s/rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert_ray_cluster_spec(job["spec"]["rayClusterSpec"])
    args = tokenmill_run_args(job["spec"]["entrypoint"])
    options = dict(zip(args[::2], args[1::2]))
    assert options["--until"] == "pack" and "ray.address=auto" in args
    sets = [value for flag, value in zip(args[::2], args[1::2]) if flag == "--set"]
    assert load_config(Path(options["--config"]), sets).ray.address == "auto"


def tokenmill_run_args(entrypoint: str) -> list[str]:
    """The arguments after `tokenmill run` in a shell entrypoint such as `bash -c 'cd /app && tokenmill run ...'`."""
    words = shlex.split(entrypoint)
    if words[:2] == ["bash", "-c"]:
        words = shlex.split(words[2].split("&&")[-1])
    assert words[:2] == ["tokenmill", "run"], entrypoint
    return words[2:]


def work_pool_template() -> dict:
    return json.loads((INFRA / "k8s/prefect-work-pool-job-template.json").read_text())


def test_work_pool_template_is_accepted_by_prefect():
    from prefect.server.schemas.actions import validate_base_job_template

    template = work_pool_template()
    assert set(template) == {"job_configuration", "variables"}
    validate_base_job_template(template)  # every placeholder is a declared variable


def test_work_pool_job_requests_gpus():
    import jsonschema
    from prefect.utilities.templating import apply_values

    template = work_pool_template()
    variables = template["variables"]
    defaults = {name: p["default"] for name, p in variables["properties"].items() if "default" in p}
    jsonschema.validate(defaults, variables)
    job = apply_values(template["job_configuration"], defaults | {"name": "run", "command": "prefect flow-run execute"},
                       remove_notset=True)["job_manifest"]
    pod = job["spec"]["template"]["spec"]
    # the shape the prefect-kubernetes worker checks before it creates a job
    assert (job["apiVersion"], job["kind"], pod["restartPolicy"]) == ("batch/v1", "Job", "Never")
    assert (pod["parallelism"], pod["completions"], pod["containers"][0]["name"]) == (1, 1, "prefect-job")
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


# --- KubeRay security: dashboard bind, Ray token from a Secret, NetworkPolicy -------------------------------------
# No kubectl here, so no server-side validation: these read the manifests' structure.

RAY_AUTH_SECRET = "tokenmill-ray-auth"
RAY_AUTH_KEY = "auth_token"  # the key KubeRay's authOptions.secretName reads


def ray_clusters() -> dict[str, tuple[dict, dict[str, str]]]:
    """Each KubeRay manifest's Ray cluster spec, and the labels it is selected by."""
    cluster, job = one_doc("k8s/raycluster.yaml"), one_doc("k8s/rayjob.yaml")
    # KubeRay labels a RayCluster's Pods ray.io/cluster=<its name>; a RayJob's cluster gets a generated name
    return {"raycluster": (cluster["spec"], {"ray.io/cluster": cluster["metadata"]["name"]}),
            "rayjob": (job["spec"]["rayClusterSpec"], {"app.kubernetes.io/instance": job["metadata"]["name"]})}


def ray_pod_templates(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]] + [group["template"] for group in spec["workerGroupSpecs"]]


def network_policies() -> dict[str, dict]:
    policies = {doc["metadata"]["name"]: doc for doc in load_yaml(INFRA / "k8s/networkpolicy.yaml")}
    assert {(p["apiVersion"], p["kind"]) for p in policies.values()} == {("networking.k8s.io/v1", "NetworkPolicy")}
    return policies


def prefect_flow_run_labels() -> dict[str, str]:
    return work_pool_template()["job_configuration"]["job_manifest"]["spec"]["template"]["metadata"]["labels"]


def test_the_ray_auth_secret_holds_no_token():
    secret = one_doc("k8s/ray-auth-secret.yaml")
    assert (secret["apiVersion"], secret["kind"], secret["metadata"]["name"]) == ("v1", "Secret", RAY_AUTH_SECRET)
    assert "data" not in secret and secret["stringData"] == {RAY_AUTH_KEY: ""}  # created with kubectl, never committed
    assert "openssl rand" in (INFRA / "k8s/ray-auth-secret.yaml").read_text()


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_every_ray_container_takes_the_ray_token_from_the_secret(name):
    spec, _ = ray_clusters()[name]
    # the operator gives the token to what it adds (autoscaler, init containers, submitter) and its dashboard client
    assert spec["authOptions"] == {"mode": "token", "secretName": RAY_AUTH_SECRET}
    for template in ray_pod_templates(spec):
        for container in template["spec"]["containers"]:
            env = {var["name"]: var for var in container["env"]}
            assert env["RAY_AUTH_MODE"] == {"name": "RAY_AUTH_MODE", "value": "token"}, container["name"]
            assert env["RAY_AUTH_TOKEN"] == {"name": "RAY_AUTH_TOKEN", "valueFrom": {
                "secretKeyRef": {"name": RAY_AUTH_SECRET, "key": RAY_AUTH_KEY}}}, container["name"]
            assert "RAY_AUTH_TOKEN_PATH" not in env


def test_the_raycluster_dashboard_listens_on_loopback_only():
    spec, _ = ray_clusters()["raycluster"]
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"


def test_the_rayjob_dashboard_is_reachable_only_by_its_submitter_and_the_operator():
    """KubeRay's operator and the RayJob's submitter Pod reach the dashboard at the head Service: not loopback."""
    spec, _ = ray_clusters()["rayjob"]
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    job_name = one_doc("k8s/rayjob.yaml")["metadata"]["name"]
    dashboard_rules = [rule for rule in network_policies()["tokenmill-data-rayjob"]["spec"]["ingress"]
                       if rule.get("ports") == [{"protocol": "TCP", "port": 8265}]]
    assert [rule["from"] for rule in dashboard_rules] == [[
        {"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": job_name}}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}},
    ]]


def test_the_prefect_flow_run_pods_carry_the_label_the_network_policy_allows():
    labels = prefect_flow_run_labels()
    assert labels == {"app.kubernetes.io/name": "tokenmill", "app.kubernetes.io/component": "prefect-flow-run"}
    assert not any("{{" in key or "{{" in value for key, value in labels.items())  # literal, not a deployment's choice


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_a_network_policy_admits_only_the_same_cluster_and_prefect_flow_runs(name):
    spec, cluster_labels = ray_clusters()[name]
    for template in ray_pod_templates(spec):  # KubeRay adds ray.io/cluster itself; other labels come from templates
        pod_labels = template.get("metadata", {}).get("labels", {}) | (
            {"ray.io/cluster": cluster_labels["ray.io/cluster"]} if "ray.io/cluster" in cluster_labels else {})
        assert cluster_labels.items() <= pod_labels.items()
    (policy,) = [p for p in network_policies().values() if p["spec"]["podSelector"] == {"matchLabels": cluster_labels}]
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # Ingress listed: whatever no rule admits is dropped
    same_cluster = {"podSelector": {"matchLabels": cluster_labels}}
    flow_runs = {"podSelector": {"matchLabels": prefect_flow_run_labels()}}
    rules = policy["spec"]["ingress"]
    assert {"from": [same_cluster]} in rules
    assert {"from": [flow_runs], "ports": [{"protocol": "TCP", "port": 10001}]} in rules  # Ray Client only
    for rule in rules:
        assert rule.get("from"), "a rule without peers admits every source"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            if peer in (same_cluster, flow_runs):
                continue
            # the only other peers: a RayJob's submitter and KubeRay's operator, on the dashboard port alone
            assert name == "rayjob" and rule["ports"] == [{"protocol": "TCP", "port": 8265}], peer


# --- Ray cluster launcher, DeepSpeed hostfile ---------------------------------------------------------------------

def test_ray_cluster_launcher_config_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = one_doc("ray/cluster.yaml")
    assert config["cluster_name"] and config["provider"]["type"]
    assert config["head_node_type"] in config["available_node_types"]
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs before it starts anything
    assert any("constraints.txt" in command for command in config["setup_commands"])


def test_hostfile_example_parses_and_the_recipe_accepts_it(repo_cwd):
    from deepspeed.launcher.runner import _parse_hostfile

    hostfile = Path("infra/deepspeed/hostfile.example")
    assert _parse_hostfile(hostfile.read_text().splitlines()) == {"worker-1": 8, "worker-2": 8}
    # 16 slots: the global batch must split over them (a clear config error otherwise)
    cfg = load_config(Path("configs/default.yaml"), [f"pretrain.launch.hostfile={hostfile}",
                                                     "pretrain.train.global_batch_size=256"])
    assert cfg.pretrain.launch.hostfile == hostfile


# --- Dockerfiles ---------------------------------------------------------------------------------------------------

def base_images(dockerfile: str) -> list[str]:
    """FROM images with ARG defaults filled in."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile, re.M))
    images = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    return [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image) for image in images]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_its_base_and_installs_torch_first(path):
    text = path.read_text()
    images = base_images(text)
    assert images
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{path.name}: base image {image} needs a pinned tag"
    install_lines = [line for line in text.splitlines() if "pip install" in line]
    torch_at = next(i for i, line in enumerate(install_lines) if "TORCH_SPEC" in line)
    project_at = next(i for i, line in enumerate(install_lines) if "-c constraints.txt ." in line)
    assert torch_at < project_at
    assert re.findall(r"^USER (\S+)", text, re.M)[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["tokenmill"\]', text, re.M)


# --- secrets ---------------------------------------------------------------------------------------------------------

# KEY: value or KEY=value where a part of KEY (split at _) names a secret; ${KEY...} is a reference, not a value
SECRET_ASSIGNMENT = re.compile(r"(?i)(?<![{\w])((?:[a-z0-9]+_)*(?:password|passwd|secret|token|auth_string|api_key)(?:_[a-z0-9]+)*)"
                               r"\b\s*[:=]\s*['\"]?([^\s'\"]*)")
URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:([^@\s]+)@")
# in Python source (infra/ holds modules too) only a string literal is a value: `token = var.set(x)` is code
PY_SECRET_LITERAL = re.compile(SECRET_ASSIGNMENT.pattern.replace(r"['\"]?([^\s'\"]*)", r"[rbuf]*['\"]([^'\"]*)['\"]"))


def is_placeholder(value: str) -> bool:
    return value == "" or value.startswith(("$", "<", "{{"))


def test_no_secrets_in_infra():
    leaks = []
    for path in sorted(p for p in INFRA.rglob("*") if p.is_file() and p != SECRETS_FILE and "__pycache__" not in p.parts):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            assignment = PY_SECRET_LITERAL if path.suffix == ".py" else SECRET_ASSIGNMENT
            values = [m.group(2) for m in assignment.finditer(line)] + URL_CREDENTIALS.findall(line)
            leaks += [f"{path.relative_to(REPO)}:{number}: {line.strip()}" for v in values if not is_placeholder(v)]
    assert leaks == []
