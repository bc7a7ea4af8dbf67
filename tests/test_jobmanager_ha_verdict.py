"""The verdicts of bench/jobmanager_ha.py, computed from made-up trial rows (no services): which
recovery is faster and by how much, the 60 s target per variant, the moving parts, and whether
ZooKeeper HA wins on every axis. The benchmark itself kills JVMs and is not run here."""
from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass
class Params:  # what the verdicts read of bench/jobmanager_ha.py's Params
    variants: tuple[str, ...] = ("watcher", "zookeeper", "zookeeper-10s")
    deadline: float = 60.0
    observe: float = 90.0


@pytest.fixture(scope="module")
def ha():
    from online_ml.harness import ha_verdicts

    return ha_verdicts


def rows(variant: str, running: list[float], rest: float = 30.0, lost: int = 0) -> list[dict]:
    return [{"variant": variant, "trial": n, "rest_back_s": rest, "running_s": r,
             "after_jm_s": r - rest, "predictions_s": r + 2, "lost": lost, "backwards": 0}
            for n, r in enumerate(running, 1)]


PARTS = {
    "watcher": {"services": ["flink-jobmanager", "flink-taskmanager", "kafka", "redis", "watcher"],
                "ports": {"watcher": []}, "rss_mb": {"watcher": 60.0}, "dirs": []},
    "zookeeper": {"services": ["flink-jobmanager", "flink-taskmanager", "kafka", "redis",
                               "zookeeper"],
                  "ports": {"zookeeper": [2181]}, "rss_mb": {"zookeeper": 100.0},
                  "dirs": ["flink/ha", "zookeeper/data"]},
}


def test_the_faster_variant_and_the_deadline_are_computed(ha):
    p = Params(variants=("watcher", "zookeeper"))
    trial_rows = rows("watcher", [70.0, 80.0, 75.0]) + rows("zookeeper", [50.0, 55.0, 100.0])
    extras = {"watcher": {"cancelled_stayed": True, "failed_back_s": 40.0},
              "zookeeper": {"cancelled_stayed": True, "failed_back_s": None}}
    targets, words = ha.verdicts(trial_rows, extras, PARTS, p)
    assert words[0] == ("recovery, median kill -> job RUNNING: zookeeper 55.0 s, watcher 75.0 s; "
                        "zookeeper is the fastest, 20.0 s less than watcher (x1.36)")
    met = {t["target"]: t["met"] for t in targets}
    assert met["watcher: job RUNNING after the JobManager is back (worst trial, s)"] is True
    assert met["zookeeper: job RUNNING after the JobManager is back (worst trial, s)"] is False
    assert any("zookeeper: RUNNING within 60 s of the JobManager being back in NOT every" in w
               for w in words)
    assert any("FAILED job not brought back" in w for w in words)
    # faster, but more moving parts and no FAILED job: the watcher stays
    assert words[-1].startswith("overall: keep the watcher -- ZooKeeper HA (its fastest variant, "
                                "zookeeper) does not win on moving parts, FAILED job covered")


def test_moving_parts_count_what_a_variant_adds(ha):
    assert ha.added_parts(PARTS["zookeeper"]) == {
        "processes": ["zookeeper"], "ports": 1, "dirs": ["flink/ha", "zookeeper/data"],
        "rss_mb": 100.0}
    assert ha.added_parts(PARTS["watcher"])["ports"] == 0


def test_the_fastest_zookeeper_variant_is_compared(ha):
    p = Params()
    trial_rows = (rows("watcher", [70.0]) + rows("zookeeper", [60.0])
                  + rows("zookeeper-10s", [40.0]))
    parts = dict(PARTS, **{"zookeeper-10s": PARTS["zookeeper"]})
    extras = {"watcher": {"cancelled_stayed": True, "failed_back_s": 40.0},
              "zookeeper": {"cancelled_stayed": True, "failed_back_s": 30.0}}
    zk_parts = dict(PARTS["zookeeper"], dirs=[], ports={"zookeeper": []})
    _, words = ha.verdicts(trial_rows, extras, dict(parts, **{"zookeeper-10s": zk_parts}), p)
    assert "zookeeper-10s is the fastest, 30.0 s less than watcher" in words[0]
    assert words[-1].startswith("overall: ZooKeeper HA (zookeeper-10s) wins on every axis")


def test_a_variant_without_completed_trials_gets_no_verdict(ha):
    failed = [{"variant": "zookeeper", "trial": 1, "error": "WaitTimeout: ..."}]
    _, words = ha.verdicts(rows("watcher", [60.0]) + failed, {}, PARTS, Params())
    assert words[-1] == ("overall: no verdict, the watcher or ZooKeeper HA has no completed "
                         "trial")
