"""The ways to run it (docs/deploy.md, deploy/): the Kubernetes manifest against Kubernetes' own
schemas (kubernetes-validate, strict: a misspelt field fails), the compose file against the
Compose Specification's schema, its two shards and Prometheus, the example accounts file as the
daemon reads it, and the image built and run where a Docker engine answers (skipped, saying why,
where none does)."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import orjson
import pytest
import yaml

from settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if doc]


def test_the_kubernetes_manifest_is_valid_against_kubernetes_schemas():
    docs = manifests()
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "StatefulSet"]
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    broken = manifests()[2]
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}  # a typo must fail
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_statefulset_runs_one_shard_per_pod_with_its_own_state_keys_from_a_secret_and_probes():
    config_map, _, stateful = manifests()
    spec = stateful["spec"]
    pod = spec["template"]
    container = pod["spec"]["containers"][0]
    assert f'/{spec["replicas"]}"' in container["command"][-1] and "--shard" in container["command"][-1]
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "state"
    assert {"name": "state", "mountPath": "/var/lib/tpsl-guardian"} in container["volumeMounts"]
    assert container["envFrom"] == [{"secretRef": {"name": "tpsl-guardian-keys"}}]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9464"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    accounts = tomllib.loads(config_map["data"]["accounts.toml"])["accounts"]
    env = {"ACCOUNTS_FILE": "x"} | {t[k]: "v-" + t[k] for t in accounts.values() for k in t if k.endswith("_env")}
    assert len(set(env.values())) == len(env)  # every variable the ConfigMap names is distinct


def test_the_compose_file_is_valid_against_the_compose_specification():
    """tests/fixtures/compose_spec.json: the Compose Specification's JSON schema (Apache-2.0), as
    shipped in docker-compose 1.29.2 (compose/config/compose_spec.json); no Compose runs here."""
    schema = orjson.loads((ROOT / "tests" / "fixtures" / "compose_spec.json").read_bytes())
    validator = jsonschema.Draft201909Validator(schema)  # its $schema, spelt without https
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert [error.message for error in validator.iter_errors(compose)] == []
    compose["services"]["shard0"]["comand"] = ["--shard", "0/2"]  # a typo must fail
    assert not validator.is_valid(compose)


def test_the_compose_example_runs_two_shards_each_with_its_own_state_and_prometheus_scrapes_both():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    shards = {name: s for name, s in services.items() if name.startswith("shard")}
    assert [s["command"] for s in shards.values()] == [["--shard", "0/2"], ["--shard", "1/2"]]
    states = [next(v for v in s["volumes"] if v.endswith(":/var/lib/tpsl-guardian")) for s in shards.values()]
    assert len(set(states)) == 2
    assert all(s["environment"]["IP_BUDGET_SHARE"] == "0.5" for s in shards.values())
    assert all(s["build"]["dockerfile"] == "deploy/Dockerfile" for s in shards.values())
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == [f"{name}:9464" for name in shards]


def test_the_example_accounts_file_is_what_the_daemon_reads(tmp_path):
    text = (DEPLOY / "accounts.example.toml").read_text()
    secret = tmp_path / "follower_b_api_secret"
    secret.write_text("a secret")
    secret.chmod(0o600)
    path = tmp_path / "accounts.toml"
    path.write_text(text.replace("/run/secrets/follower_b_api_secret", str(secret)))
    names = tomllib.loads(text)["accounts"]
    env = {t[k]: f"{k}-{name}" for name, t in names.items() for k in t if k.endswith("_env")}
    settings = load_settings({"ACCOUNTS_FILE": str(path), **env})
    assert [(a.name, a.leader) for a in settings.accounts()] == [
        ("lead", None),
        ("follower-a", "lead"),
        ("follower-b", "lead"),
        ("desk2", None),
        ("desk2-copy", "desk2"),
    ]
    assert [[a.name for a in settings.shard(i, 2).accounts()] for i in (0, 1)] == [
        ["lead", "follower-a", "follower-b"],
        ["desk2", "desk2-copy"],
    ]


def test_the_dockerfile_runs_as_a_user_of_its_own_with_a_healthcheck_and_a_state_volume():
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.splitlines()[3] == "FROM python:3.11-slim"
    assert "USER guardian" in text and "/healthz" in text.split("HEALTHCHECK", 1)[1]
    assert 'VOLUME ["/var/lib/tpsl-guardian"]' in text and 'ENTRYPOINT ["tpsl-guardian"]' in text


def docker_engine() -> str | None:
    """Why the image cannot be built here, or None when a Docker engine answers."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 20 s"
    return None if done.returncode == 0 else "no Docker engine answers (`docker info` failed: only the client is here)"


@pytest.mark.slow
def test_the_image_builds_and_its_demo_runs_healthy():
    reason = docker_engine()
    if reason is not None:
        pytest.skip(reason)
    tag = "tpsl-guardian:test"
    build = subprocess.run(
        ["docker", "build", "-f", "deploy/Dockerfile", "-t", tag, "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run(
        ["docker", "run", "--rm", tag, "--duration", "8", "--positions", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Guarding" in run.stderr and "Stopped cleanly" in run.stderr
