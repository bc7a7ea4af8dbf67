"""How long a newcomer waits: `make demo` of a fresh clone, again with everything running, after
`make down`, and `make down` itself.

The README's "Two commands" timings come from here. The clone is of this checkout's committed
HEAD, in a temporary folder, with ports of its own (the stack on the default ports, which other
people use, is not touched); its `make demo` installs its own venv and state from the repo's
files, with whatever pip, Maven and apt caches the machine has (say so next to the figures).

    python bench/demo_timings.py           # about 4 minutes here with warm caches
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

import common

from online_ml.harness.instance import FOREIGN, PORT_VARIABLES
from online_ml.harness.net import free_port
from online_ml.harness.paths import ROOT

STEPS = [("make demo, fresh clone", "demo"), ("make demo, everything running", "demo"),
         ("make down", "down"), ("make demo after make down", "demo"), ("make down", "down")]
COLUMNS = [("step", "step", ""), ("seconds", "seconds", ".1f"), ("exit code", "rc", ""),
           ("load", "load", ".1f")]


@dataclass
class Params:
    timeout: float = 1200.0  # per step

    @classmethod
    def smoke(cls) -> Params:
        return cls()


def clone_environment() -> dict[str, str]:
    """This environment without anything that points at another stack, plus free ports."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN and k != "VIRTUAL_ENV"
           and k != "PYTHONPATH"}
    ports = {name: str(free_port()) for name in PORT_VARIABLES}
    return dict(env, **ports, SERVER_PORT=str(free_port()),
                KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")


def run(p: Params, smoke: bool = False, quiet: bool = False) -> dict:
    started = time.time()
    rows: list[dict] = []
    tmp = tempfile.mkdtemp(prefix="online_ml_demo_")
    repo = os.path.join(tmp, "repo")
    env = clone_environment()
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), repo], check=True)
        for title, target in STEPS:
            common.progress(f"{title}: make {target}")
            t0 = time.monotonic()
            done = subprocess.run(["make", target], cwd=repo, env=env, capture_output=True,
                                  text=True, timeout=p.timeout)
            rows.append({"step": title, "seconds": time.monotonic() - t0, "rc": done.returncode,
                         "load": os.getloadavg()[0]})
            if done.returncode != 0:
                common.progress(f"{title} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
                break
    finally:
        subprocess.run(["make", "down"], cwd=repo, env=env, capture_output=True, timeout=300)
        shutil.rmtree(tmp, ignore_errors=True)
    by_step = {r["step"]: r for r in rows}
    again = by_step.get("make demo, everything running")
    targets = [common.target("every step succeeded", sum(r["rc"] == 0 for r in rows), len(STEPS),
                             ">="),
               common.target("make demo with everything running (s)",
                             again and again["seconds"], 10.0, "<=", "it only checks")]
    text = common.report("make demo / make down, fresh clone, own ports", COLUMNS, rows, targets)
    path = common.write_result("demo_timings", vars(p), rows, targets, common.machine_info(),
                               started, smoke)
    return common.finish(path, rows, targets, text, smoke, quiet)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="also print the tables in Markdown")
    args = ap.parse_args()
    result = run(Params())
    if args.markdown:
        common.print_markdown(COLUMNS, result)


if __name__ == "__main__":
    main()
