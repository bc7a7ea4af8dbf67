"""docker-compose.yml must describe the same system as the local stack (no Docker needed).

A user who switches between `make demo` and `docker compose up` expects the same ports, topics,
password and settings names; a drift between the two (a renamed env var the code no longer reads,
a Flink image that does not match the connector jar) would only show when someone runs Docker.
So the compose file is checked against the sources of truth: stack/env.sh (ports, password,
versions), stack/kafka_topics.py (topics), online_ml/config.py (setting names and defaults),
stack/flink/config.yaml (cluster settings). If a compose CLI is installed (`docker compose`, or
Debian's `docker-compose` package), it validates the file too (`config -q`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from online_ml.config import Settings
from online_ml.harness.paths import ROOT
from online_ml.harness.processes import granian_command

COMPOSE_FILE = ROOT / "docker-compose.yml"
FLINK_DOCKERFILE = ROOT / "docker" / "flink.Dockerfile"
APP_DOCKERFILE = ROOT / "docker" / "app.Dockerfile"

# services running our code: their environment is read by online_ml/config.py
OUR_SERVICES = ("jobmanager", "taskmanager", "job-submit", "watcher", "producer", "server")
# variables our services set for the image they run on, not for our code
IMAGE_VARIABLES = {"FLINK_PROPERTIES"}
SETTINGS_ENV = {Settings.env_name(f.name): f for f in dataclasses.fields(Settings)}
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    """The local stack's settings, as stack/env.sh computes them from a clean environment."""
    names = ["REDIS_PORT", "REDIS_PASSWORD", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_PORT",
             "SOURCE_TOPIC", "SINK_TOPIC", "FLINK_REST_PORT", "FLINK_REST_URL", "SERVER_PORT",
             "FLINK_VERSION", "FLINK_KAFKA_CONNECTOR_VERSION", "KAFKA_VERSION", "STATE"]
    script = f'source "{ROOT}/stack/env.sh"; ' + "; ".join(
        f'printf "%s=%s\\n" {n} "${n}"' for n in names)
    clean = {k: os.environ[k] for k in ("PATH", "ONLINE_ML_STATE") if k in os.environ}
    out = subprocess.run(["bash", "-c", script], env=clean,
                         capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    assert all(values[n] for n in names), f"stack/env.sh left a value empty: {values}"
    return values


def resolve(text: str) -> str:
    """Compose interpolation with an empty environment: `${NAME:-default}` -> default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", str(text)).replace("$$", "$")


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each published port, short or long syntax."""
    result = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            result.append((port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            continue
        parts = str(port).split("/")[0].split(":")
        if len(parts) == 3:  # a host port range (for --scale) counts as its first port
            result.append((parts[0], int(parts[1].split("-")[0]), int(parts[2])))
        elif len(parts) == 2:
            result.append(("", int(parts[0]), int(parts[1])))
        else:
            result.append(("", 0, int(parts[0])))  # random host port on all interfaces
    return result


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S+)", path.read_text(), re.M))


def flink_properties(service: dict) -> dict[str, str]:
    lines = [line.strip() for line in environment(service)["FLINK_PROPERTIES"].splitlines()]
    return dict(line.split(":", 1) for line in lines if line)


def strings(node) -> list[str]:
    """Every string value in the parsed file (not the comments): where interpolation happens."""
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in strings(key) + strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def interpolations(compose: dict) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for text in strings(compose)
            for m in INTERPOLATION.finditer(text)]


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


# -- ports, password, settings names ---------------------------------------------------------------
def test_published_ports_are_loopback_only_and_those_of_the_local_stack(services, stack_env):
    ports = {name: published(svc) for name, svc in services.items() if svc.get("ports")}
    for name, mappings in ports.items():
        for host_ip, _, _ in mappings:
            assert host_ip == "127.0.0.1", f"service {name} publishes a port on {host_ip or 'all interfaces'}"
    expected = {
        "kafka": int(stack_env["KAFKA_PORT"]),
        "redis": int(stack_env["REDIS_PORT"]),
        "jobmanager": int(stack_env["FLINK_REST_PORT"]),
        "server": int(stack_env["SERVER_PORT"]),
    }
    assert sorted(expected.values()) == [6379, 8066, 8081, 9092]
    want = {name: [port] for name, port in expected.items()}
    # Flink's Prometheus reporter: the local stack's opt-in range (FLINK_PROMETHEUS=1) 9249-9250
    want["jobmanager"].append(9249)
    want["taskmanager"] = [9250]
    got = {name: [host for _, host, _ in m] for name, m in ports.items()}
    assert got == want
    # the same port inside the container, so URLs and commands read the same in both worlds
    # (but each Flink container's reporter listens on 9249 inside)
    for name, mappings in ports.items():
        assert all(host == target or target == 9249 for _, host, target in mappings), name


def test_server_listens_on_the_published_port(services, stack_env):
    """The production server make demo runs (online_ml/harness/processes.py), on all of the
    container's interfaces, on the published port; the image's default command is the same."""
    command = services["server"]["command"]
    assert command == granian_command("online_ml.server:create_app", "0.0.0.0",
                                      int(stack_env["SERVER_PORT"]), 2, program="granian")
    dockerfile = (ROOT / "docker" / "app.Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*?\])", dockerfile, re.M | re.S)[1].replace("\\\n", ""))
    assert cmd == command


def test_redis_password_default_is_the_local_stacks(compose, services, stack_env):
    defaults = {default for name, default in interpolations(compose) if name == "REDIS_PASSWORD"}
    assert defaults == {stack_env["REDIS_PASSWORD"]} == {Settings().redis_password}
    redis = services["redis"]
    assert "--requirepass" in redis["command"]
    assert resolve(redis["command"][redis["command"].index("--requirepass") + 1]) == \
        stack_env["REDIS_PASSWORD"]
    assert "--appendonly" in redis["command"]
    for name in OUR_SERVICES:
        assert resolve(environment(services[name])["REDIS_PASSWORD"]) == stack_env["REDIS_PASSWORD"]


def test_our_services_set_only_settings_variables(services):
    for name in OUR_SERVICES:
        unknown = set(environment(services[name])) - set(SETTINGS_ENV) - IMAGE_VARIABLES
        assert not unknown, (f"service {name} sets {sorted(unknown)}, which online_ml/config.py "
                             f"does not read (known: {sorted(SETTINGS_ENV)})")


def test_interpolated_variables_are_settings_with_the_same_defaults(compose):
    """`${NAME:-default}` lets a user override NAME from the shell, as with the local stack."""
    found = interpolations(compose)
    assert found
    for name, default in found:
        assert name in SETTINGS_ENV, f"${{{name}}} is not a setting of online_ml/config.py"
        assert default is not None, f"${{{name}}} needs a default (${{{name}:-...}})"
        field = SETTINGS_ENV[name]
        assert type(field.default)(default) == field.default, \
            f"default of ${{{name}}} is {default!r}, online_ml/config.py says {field.default!r}"


def test_services_reach_kafka_and_redis_inside_the_network(services, stack_env):
    kafka_env = environment(services["kafka"])
    advertised = dict(reversed(entry.split("://", 1))
                      for entry in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    # the host reaches the broker at the local stack's address; containers at the internal one
    assert stack_env["KAFKA_BOOTSTRAP_SERVERS"] in advertised
    for name in OUR_SERVICES:
        env = environment(services[name])
        assert env["KAFKA_BOOTSTRAP_SERVERS"] in advertised, name
        assert env["KAFKA_BOOTSTRAP_SERVERS"] != stack_env["KAFKA_BOOTSTRAP_SERVERS"], name
        assert env["REDIS_HOST"] == "redis", name
        assert int(env.get("REDIS_PORT", Settings().redis_port)) == int(stack_env["REDIS_PORT"])
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "broker" in kafka_env["KAFKA_PROCESS_ROLES"] and "controller" in kafka_env["KAFKA_PROCESS_ROLES"]


# -- topics ----------------------------------------------------------------------------------------
def local_stack_topics() -> list[tuple[str, str]]:
    """(env var, default) of each topic stack/kafka_topics.py creates (names from Settings)."""
    names = ("source_topic", "sink_topic", "dead_letter_topic", "alert_topic")
    return [(Settings.env_name(n), getattr(Settings(), n)) for n in names]


def test_kafka_init_creates_the_local_stacks_topics(services):
    init = services["kafka-init"]
    script = init["command"][0] if isinstance(init["command"], list) else init["command"]
    assert "/opt/kafka/bin/kafka-topics.sh" in script and "--create" in script
    assert "--if-not-exists" in script
    topics = local_stack_topics()
    # the source topic, with one partition per parallel learner at most, as locally
    source = re.search(r"--topic\s+(\S+)\s+--partitions\s+(\S+)", script)
    assert source, "kafka-init should create the source topic with --partitions"
    assert source.group(1).startswith("${SOURCE_TOPIC:-") and resolve(source.group(1)) == topics[0][1]
    assert source.group(2).startswith("${SOURCE_PARTITIONS:-")
    assert int(resolve(source.group(2))) == Settings().source_partitions
    loop = re.search(r"for\s+topic\s+in\s+(.+?);\s*do", script)
    assert loop, "kafka-init should create the other topics in a `for topic in ...; do` loop"
    words = loop.group(1).split()
    assert [resolve(w) for w in words] == [default for _, default in topics[1:]]
    # topics that are settings can be renamed from the shell in both worlds, with one name
    for word, (env_name, _) in zip(words, topics[1:]):
        assert word.startswith("${" + env_name + ":-"), word
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"


# -- versions --------------------------------------------------------------------------------------
def test_flink_image_and_connector_match_the_local_stack(services, stack_env):
    args = dockerfile_args(FLINK_DOCKERFILE)
    text = FLINK_DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M).group(1)
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert base == f"flink:{stack_env['FLINK_VERSION']}-scala_2.12-java17"
    assert args["FLINK_KAFKA_CONNECTOR_VERSION"] == stack_env["FLINK_KAFKA_CONNECTOR_VERSION"]
    # the connector's suffix is the Flink minor it was built for (5.0.0-2.2 -> 2.2)
    assert args["FLINK_KAFKA_CONNECTOR_VERSION"].rsplit("-", 1)[1] == \
        ".".join(stack_env["FLINK_VERSION"].split(".")[:2])
    assert "repo1.maven.org/maven2" in args["MAVEN_CENTRAL"]
    for name in ("jobmanager", "taskmanager", "job-submit", "watcher"):
        svc = services[name]
        assert svc["build"]["dockerfile"] == "docker/flink.Dockerfile", name
        assert svc["image"] == f"online-ml-flink:{stack_env['FLINK_VERSION']}", name
    assert services["kafka"]["image"] == f"apache/kafka:{stack_env['KAFKA_VERSION']}"
    assert services["kafka-init"]["image"] == services["kafka"]["image"]


def test_connector_checksum_is_that_of_the_jar_the_local_stack_uses(stack_env):
    jar = (Path(stack_env["STATE"]) / "jars" / "flink"
           / f"flink-sql-connector-kafka-{stack_env['FLINK_KAFKA_CONNECTOR_VERSION']}.jar")
    if not jar.exists():
        pytest.skip(f"{jar} not fetched yet (make install)")
    digest = hashlib.sha256(jar.read_bytes()).hexdigest()
    assert dockerfile_args(FLINK_DOCKERFILE)["FLINK_KAFKA_CONNECTOR_SHA256"] == digest


def test_images_install_the_pinned_requirements():
    flink = FLINK_DOCKERFILE.read_text()
    assert "-r /tmp/requirements/requirements.txt -c /tmp/requirements/constraints.txt" in flink
    assert dockerfile_args(FLINK_DOCKERFILE)["PYTHON_VERSION"] == \
        "{}.{}".format(*sys.version_info[:2]) == "3.11"
    app = APP_DOCKERFILE.read_text()
    assert "-r /tmp/requirements/server_requirements.txt -c /tmp/requirements/constraints.txt" in app
    assert dockerfile_args(APP_DOCKERFILE)["PYTHON_IMAGE"].startswith("python:3.11-")
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".state", "bench/results"} <= set(ignored)


# -- the Flink cluster -----------------------------------------------------------------------------
def test_flink_properties_match_the_local_cluster(services):
    template = (ROOT / "stack" / "flink" / "config.yaml").read_text()
    local = flatten(yaml.safe_load(re.sub(r"@\w+@", "placeholder", template)))
    deployment_specific = {"jobmanager.rpc.address", "python.executable",
                           "python.client.executable", "execution.checkpointing.dir"}
    props = flink_properties(services["jobmanager"])
    for name in ("taskmanager", "job-submit", "watcher"):
        assert flink_properties(services[name]) == props, f"{name} has other FLINK_PROPERTIES"
    # `key:value` without a space: some entrypoint versions keep the space, Flink then reads ''
    for line in environment(services["jobmanager"])["FLINK_PROPERTIES"].splitlines():
        assert not line.strip() or re.fullmatch(r"[\w.-]+:\S.*", line.strip()), line
    assert props["jobmanager.rpc.address"] == "jobmanager"
    assert props["taskmanager.numberOfTaskSlots"] == str(local["taskmanager.numberOfTaskSlots"])
    assert props["execution.checkpointing.interval"] == "10s"
    assert props["restart-strategy.type"] == local["restart-strategy.type"]
    shared = set(props) & set(local) - deployment_specific
    assert {"execution.checkpointing.interval", "restart-strategy.type"} <= shared
    assert {k: props[k] for k in shared} == {k: local[k] for k in shared}
    # checkpoints on a volume that JobManager and TaskManager share
    checkpoint_dir = props["execution.checkpointing.dir"].removeprefix("file://")
    for name in ("jobmanager", "taskmanager"):
        mounts = [v.split(":") for v in services[name]["volumes"]]
        assert any(target == checkpoint_dir for _, target in mounts), name


def test_job_submit_runs_the_tutorials_command_once_the_cluster_is_ready(services):
    submit = services["job-submit"]
    script = submit["command"][-1]
    assert "flink run -m jobmanager:8081 -d -py /opt/online_ml/stream.py" in script
    assert "COPY stream.py /opt/online_ml/stream.py" in FLINK_DOCKERFILE.read_text()
    # it asks Flink through the project's REST client (not a copy of it): the image has the
    # package in its working directory, where `python -m` finds it
    assert "-m online_ml.flink_rest job-running" in script
    assert "-m online_ml.flink_rest ready --free-slots 1" in script
    assert "urllib" not in script and "Classifier Model Train" not in script
    dockerfile = FLINK_DOCKERFILE.read_text()
    assert "COPY online_ml/ /opt/online_ml/online_ml/" in dockerfile
    assert re.findall(r"^WORKDIR\s+(\S+)", dockerfile, re.M)[-1] == "/opt/online_ml"
    assert "working_dir" not in submit
    assert submit["depends_on"]["jobmanager"]["condition"] == "service_healthy"
    assert submit["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert submit.get("restart") == "no"


def test_the_watcher_resubmits_what_job_submit_submits(services):
    """The job watcher runs as locally (stack/up.sh: `python -m online_ml.watcher`), watching the
    cluster job-submit submits to, and resubmits the same script with the same settings."""
    watcher = services["watcher"]
    command = watcher["command"]
    assert command[:4] == ["/opt/venv/bin/python", "-u", "-m", "online_ml.watcher"]
    assert "-m online_ml.watcher" in (ROOT / "stack" / "up.sh").read_text()
    args = dict(zip(command[4::2], command[5::2]))
    submit_script = services["job-submit"]["command"][-1]
    assert f"-py {args['--script']}" in submit_script
    assert args["--flink"] == "flink"  # the image's CLI, as job-submit uses it
    env, submit_env = environment(watcher), environment(services["job-submit"])
    assert {k: v for k, v in env.items() if k != "WATCH_INTERVAL_SECONDS"} == submit_env
    assert env["FLINK_REST_URL"] == "http://jobmanager:8081"
    # the server believes the watcher's state for 3 of the same intervals
    assert env["WATCH_INTERVAL_SECONDS"] == environment(services["server"])["WATCH_INTERVAL_SECONDS"]
    assert float(resolve(env["WATCH_INTERVAL_SECONDS"])) == Settings().watch_interval_seconds
    assert watcher["depends_on"]["jobmanager"]["condition"] == "service_healthy"
    assert watcher["depends_on"]["redis"]["condition"] == "service_healthy"
    assert watcher["restart"] == "unless-stopped"


def test_dependency_conditions_can_be_met(services):
    for name, svc in services.items():
        for target, spec in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}'s healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", target


# -- a real validator, when one is installed -------------------------------------------------------
def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_compose_cli_accepts_the_file():
    cli = compose_cli()
    if cli is None:
        pytest.skip("no compose CLI installed (`docker compose` or `docker-compose`)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = subprocess.run([*cli, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
