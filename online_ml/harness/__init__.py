"""What the tests and the benchmarks both need to drive the real system, written once.

Why a package inside ``online_ml``: tests (``tests/``) and benchmarks (``bench/``) start the same
services, submit the same job with the same ``flink`` CLI, poll with deadlines, draw the same
digits and read the same topics. Each used to carry its own copy, reached through ``sys.path``
tricks; installed with the project (``pip install -e .``) the harness imports from anywhere with
the venv, and a fix lands in both at once.

It drives the checkout it lives in (its scripts, its venv, its ``.state``), so it is meant for an
editable install, as ``make install`` does. Nothing in the product imports it. The modules are
small and import their heavy dependencies (Kafka, Redis, PIL) only when used:

* :mod:`.paths` -- the repository, its venv and the stack's state folder;
* :mod:`.waiting` -- ``wait_for``: poll with a deadline, one failure type for pytest and bench;
* :mod:`.net` -- a free port, a JSON GET/POST;
* :mod:`.stack` -- start and stop the local services through ``stack/up.sh`` / ``down.sh``;
* :mod:`.instance` -- a private stack instance (own state folder and ports) for what must not
  run on the shared one, e.g. killing its JobManager;
* :mod:`.redis_server` -- a private redis-server a test may stop and start;
* :mod:`.kafka` -- topics that clean up after themselves, reading and writing records;
* :mod:`.flink` -- ``flink run`` as a user types it, and cancelling what was submitted;
* :mod:`.processes` -- the WSGI server as a real process, stopping processes;
* :mod:`.http_load` -- concurrent clients on ``POST /predict``;
* :mod:`.drawings` -- SVG/PNG drawings as the board sends them;
* :mod:`.records` -- good and bad Kafka records for the job.
"""
from online_ml.harness.net import free_port, http_json
from online_ml.harness.paths import LOGS, PY, ROOT, RUN, STATE, VENV_BIN
from online_ml.harness.waiting import GiveUp, WaitTimeout, wait_for

__all__ = ["GiveUp", "LOGS", "PY", "ROOT", "RUN", "STATE", "VENV_BIN", "WaitTimeout", "free_port",
           "http_json", "wait_for"]
