"""deploy/kubernetes/ agrees with the code. Nothing here can run Kubernetes (no cluster on this
machine): these checks keep the files honest, they do not prove that they deploy."""
from __future__ import annotations

import re

import pytest
import yaml

from online_ml.config import Settings
from online_ml.harness.paths import ROOT
from online_ml.harness.processes import granian_command

DEPLOY = ROOT / "deploy" / "kubernetes"
SETTINGS_ENV = {Settings.env_name(name) for name in Settings.__dataclass_fields__}


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


@pytest.fixture(scope="module")
def deployment() -> dict:
    (doc,) = _docs("flink-deployment.yaml")
    assert doc["kind"] == "FlinkDeployment" and doc["apiVersion"] == "flink.apache.org/v1beta1"
    return doc


def _env_var(name: str) -> str:
    m = re.search(rf"^{name}=(\S+)", (ROOT / "stack" / "env.sh").read_text(), re.M)
    assert m, name
    return m.group(1)




def test_the_job_is_the_image_built_from_docker_with_the_same_entry(deployment):
    flink_version = _env_var("FLINK_VERSION")
    major, minor, _ = flink_version.split(".")
    assert deployment["spec"]["flinkVersion"] == f"v{major}_{minor}"
    assert deployment["spec"]["image"] == f"online-ml-flink:{flink_version}"
    dockerfile = (ROOT / "docker" / "flink.Dockerfile").read_text()
    assert f"ARG FLINK_VERSION={flink_version}" in dockerfile
    job = deployment["spec"]["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert job["jarURI"] == f"local:///opt/flink/opt/flink-python-{flink_version}.jar"
    args = job["args"]
    script = args[args.index("-py") + 1]
    # the script the image copies, run by the venv's Python that the image creates
    assert f"COPY stream.py {script}" in dockerfile
    assert args[args.index("-pyclientexec") + 1] == "/opt/venv/bin/python"
    conf = deployment["spec"]["flinkConfiguration"]
    assert conf["python.executable"] == conf["python.client.executable"] == "/opt/venv/bin/python"


def test_parallelism_fits_the_partitions_and_state_survives_upgrades(deployment):
    env = {e["name"]: e for e in
           deployment["spec"]["podTemplate"]["spec"]["containers"][0]["env"]}
    job = deployment["spec"]["job"]
    assert int(env["SOURCE_PARTITIONS"]["value"]) >= job["parallelism"] > 1
    assert job["upgradeMode"] == "savepoint"
    conf = deployment["spec"]["flinkConfiguration"]
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir",
                "high-availability.storageDir"):
        assert conf[key].startswith("file:///flink-data/"), key
    assert conf["high-availability.type"] == "kubernetes"
    mounts = deployment["spec"]["podTemplate"]["spec"]["containers"][0]["volumeMounts"]
    assert {"mountPath": "/flink-data", "name": "flink-data"} in mounts


@pytest.mark.parametrize("name", ["flink-deployment.yaml", "server.yaml"])
def test_every_environment_variable_is_a_setting(name):
    for doc in _docs(name):
        spec = doc["spec"].get("podTemplate", doc["spec"].get("template"))
        if spec is None:  # a Service
            continue
        for container in spec["spec"]["containers"]:
            for var in container.get("env", []):
                assert var["name"] in SETTINGS_ENV, f"{name}: {var['name']} is not a setting"


def test_several_servers_fed_by_the_store():
    deployment, service = _docs("server.yaml")
    assert deployment["kind"] == "Deployment" and deployment["spec"]["replicas"] >= 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # the command make demo runs (online_ml/harness/processes.py), listening on all interfaces
    command = container["command"]
    assert command == granian_command(
        "online_ml.server:create_app", "0.0.0.0", container["ports"][0]["containerPort"],
        int(command[command.index("--workers") + 1]), program="granian")
    assert container["ports"][0]["containerPort"] == service["spec"]["ports"][0]["targetPort"]
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in DEPLOY.glob("*.yaml")
                                    if p.name != "kustomization.yaml")


def test_the_demo_runs_the_same_server_command():
    """``make demo`` (stack/demo.sh, a shell script) starts the server with granian_command's
    options, on loopback."""
    demo = " ".join((ROOT / "stack" / "demo.sh").read_text().replace("\\\n", " ").split())
    options = granian_command("online_ml.server:create_app", "127.0.0.1", 0, 1)[1:]
    for flag in ("--interface", "--host", "--blocking-threads", "--respawn-interval",
                 "--workers-kill-timeout", "--factory"):
        value = options[options.index(flag) + 1]
        assert f"{flag} {value}" in demo, flag
    assert "--respawn-failed-workers" in options and "--respawn-failed-workers" in demo
    assert '"$VENV/bin/granian"' in demo
