"""Where things are: the checkout, its venv, and the state folder of the stack instance in use.

Why here: the tests, the benchmarks and the stack scripts must agree on these, including for
another stack instance (``ONLINE_ML_STATE`` and the port variables, see tests/conftest.py), or
a test would read the pid files of one stack and talk to the ports of another.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

#: The repository (the harness drives its scripts: stack/, stream.py, model_server.py, ...).
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
#: The venv's Python when there is one (the scripts' dependencies are there), else this one.
PY = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
#: The stack instance's state: pid files, logs, data (stack/env.sh computes the same).
STATE = Path(os.environ.get("ONLINE_ML_STATE") or ROOT / ".state")
RUN = STATE / "run"
LOGS = STATE / "logs"


def venv_tool(name: str) -> str:
    """A console script of the venv (flink, gunicorn, waitress-serve), else the one on PATH."""
    path = VENV_BIN / name
    return str(path) if path.exists() else shutil.which(name) or name


def instance_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables that point clients at the stack instance the environment names.

    ``FLINK_REST_URL`` follows ``FLINK_REST_PORT`` (as in stack/env.sh), and with
    ``ONLINE_ML_STATE`` the ``flink`` CLI reads that instance's configuration and writes its logs
    there. Only what is not set already; merge it into ``os.environ`` once at start-up.
    """
    environ = os.environ if environ is None else environ
    extra: dict[str, str] = {}
    if environ.get("FLINK_REST_PORT") and not environ.get("FLINK_REST_URL"):
        extra["FLINK_REST_URL"] = f"http://localhost:{environ['FLINK_REST_PORT']}"
    if environ.get("ONLINE_ML_STATE"):
        state = Path(environ["ONLINE_ML_STATE"])
        extra["FLINK_CONF_DIR"] = environ.get("FLINK_CONF_DIR") or str(state / "flink" / "conf")
        extra["FLINK_LOG_DIR"] = environ.get("FLINK_LOG_DIR") or str(state / "logs" / "flink")
    return extra
