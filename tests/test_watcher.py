"""The job watcher's decisions (online_ml/watcher.py), without Flink, Redis or Kafka.

What a user would notice if one broke: a training job lost with a crashed JobManager that never
comes back, a job cancelled on purpose that comes back anyway, two training jobs at once, a job
that keeps failing resubmitted in a tight loop, or an alert missing or twice.
The same decisions against the real cluster: tests/test_jobmanager.py.
"""
from __future__ import annotations

import dataclasses

import pytest

from online_ml import training_state
from online_ml.watcher_rules import (
    BACKOFF_MAX,
    MEMORY_TRUST_SECONDS,
    STABLE_SECONDS,
    VISIBLE_TIMEOUT,
    Memory,
    backoff,
    current_job,
    due,
    mark_stopped,
    observe,
)


def job(jid: str, state: str, start: int = 1) -> dict:
    return {"jid": jid, "state": state, "start-time": start, "name": "J"}


def run(memory: Memory, *looks, start: float = 0.0, step: float = 2.0) -> Memory:
    """Observe each answer of Flink in turn (None: unreachable), ``step`` seconds apart."""
    now = start
    for jobs in looks:
        memory = observe(memory, jobs, now)
        now += step
    return memory


def kinds(memory: Memory) -> list[str]:
    return [a["kind"] for a in memory.pending_alerts]


def submitted(memory: Memory, now: float, jid: str | None = None) -> Memory:
    """What the watcher records when it resubmits (and, with ``jid``, when `flink run` is done)."""
    if memory.action == "resubmitting":  # `flink run` printed the job id
        return dataclasses.replace(memory, submitted_job=jid)
    return dataclasses.replace(memory, action="resubmitting", resubmits=memory.resubmits + 1,
                               last_submit_at=now, submitted_job=jid)


def test_a_running_job_is_left_alone():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], [job("a", "RUNNING")])
    assert (m.state, m.job_id, m.watched_job) == ("running", "a", "a")
    assert not due(m, 100) and m.pending_alerts == []


def test_a_job_lost_with_the_jobmanager_is_brought_back_and_alerts_come_in_pairs():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], None, [])
    assert m.state == "absent" and due(m, 10)
    assert kinds(m) == ["training_stopped"]
    assert m.pending_alerts[0]["previous_state"] == "running"
    m = submitted(m, 10)
    assert not due(m, 11)  # one submission at a time: `flink run` is busy
    m = submitted(m, 10, jid="b")
    assert not due(m, 12)  # done, but Flink does not list the job yet
    m = observe(m, [job("b", "INITIALIZING", 2)], 20)
    m = observe(m, [job("b", "RUNNING", 2)], 30)
    assert m.watched_job == "b" and m.action is None
    assert kinds(m) == ["training_stopped", "training_resumed"]
    assert m.pending_alerts[1]["down_seconds"] == 28.0  # from the first look that was not running


def test_a_jobmanager_that_does_not_answer_in_time_may_still_run_the_job():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], None)  # a timeout: alive but busy?
    assert m.state == "unreachable" and kinds(m) == ["training_stopped"]
    assert not due(m, 10)


def test_a_jobmanager_that_refuses_connections_has_lost_the_job():
    """Nothing listens: its process died, and with it the job (no HA). `flink run` starts while
    the supervisor restarts the JobManager, and only once."""
    m = run(Memory(job_name="J"), [job("a", "RUNNING")])
    m = observe(m, None, 2, refused=True)
    assert m.state == "unreachable" and due(m, 2)
    m = submitted(m, 2)
    m = observe(m, None, 4, refused=True)
    assert not due(m, 4)  # one submission at a time
    m = observe(m, [], 6)  # the new JobManager answers, our job is not listed yet
    assert not due(m, 6)
    assert not due(observe(Memory(job_name="J"), None, 2, refused=True), 2)  # never seen running


def test_the_watcher_does_not_start_training_it_has_not_seen_running():
    assert not due(run(Memory(job_name="J"), []), 10)
    assert not due(run(Memory(job_name="J"), [job("a", "FAILED")]), 10)
    assert not due(run(Memory(job_name="J"), [job("a", "CREATED")], []), 10)


def test_a_failed_job_is_resubmitted_with_growing_backoff():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], [job("a", "FAILED")])
    assert m.state == "failed" and due(m, 4)
    now = 4.0
    for attempt in range(1, 8):
        m = submitted(m, now, jid=f"r{attempt}")
        m = observe(m, [job(f"r{attempt}", "FAILED", attempt + 1)], now + 1)  # fails again at once
        wait = backoff(attempt)
        assert not due(m, now + wait - 0.1) and due(m, now + wait), attempt
        now += wait
    assert backoff(7) == BACKOFF_MAX


def test_backoff_resets_after_the_job_ran_for_a_while():
    m = run(Memory(job_name="J", resubmits=4), [job("a", "RUNNING")])
    m = observe(m, [job("a", "RUNNING")], STABLE_SECONDS - 1)
    assert m.resubmits == 4
    m = observe(m, [job("a", "RUNNING")], STABLE_SECONDS + 1)
    assert m.resubmits == 0


def test_a_cancelled_job_stays_cancelled_through_a_crash_and_a_watcher_restart():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], [job("a", "CANCELED")])
    assert m.state == "canceled" and m.cancelled and not due(m, 10)
    assert kinds(m) == ["training_stopped"]
    m = observe(m, [], 10)  # then the JobManager crashed: the cluster is empty
    assert m.state == "absent" and not due(m, 10)
    # a new watcher process reads the memory back from Redis
    m = Memory.from_record(m.to_record(), "J", now=12)
    m = observe(m, [], 12)
    assert m.cancelled and not due(m, 12)


def test_someone_submitting_again_ends_the_cancellation():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], [job("a", "CANCELED")])
    m = observe(m, [job("a", "CANCELED"), job("b", "CREATED", 2)], 10)
    assert not m.cancelled
    m = observe(m, [job("a", "CANCELED"), job("b", "RUNNING", 2)], 12)
    m = observe(m, [], 14)
    assert due(m, 14)


def test_a_stopped_job_counts_as_on_purpose():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], [job("a", "FINISHED")], [])
    assert not due(m, 10)


def test_the_stack_going_down_marks_the_job_stopped_on_purpose():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")])
    m = mark_stopped(m, "make down")
    m = Memory.from_record(m.to_record(), "J", now=5)
    m = observe(m, [], 5)
    assert not due(m, 5) and m.pending_alerts == []  # no alert for a stack stopped on purpose


def test_a_submitted_job_not_listed_yet_is_not_submitted_again():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], [])
    m = submitted(m, 4, jid="b")
    m = observe(m, [], 10)  # `flink run` returned, Flink does not list it yet
    assert not due(m, 10)
    m = observe(m, [], 4 + VISIBLE_TIMEOUT + 1)  # it never showed up: lost
    assert m.submitted_job is None and due(m, 4 + VISIBLE_TIMEOUT + 1)


def test_the_current_job_is_the_newest_active_one():
    jobs = [job("old", "CANCELED", 1), job("live", "RUNNING", 2), job("newer", "FAILED", 3)]
    assert current_job(jobs)["jid"] == "live"
    assert current_job([job("a", "CANCELED", 1), job("b", "FAILED", 2)])["jid"] == "b"
    assert current_job([]) is None


def test_memory_from_another_job_name_or_too_old_is_not_trusted():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")])
    assert Memory.from_record(m.to_record(), "other", now=1).watched_job is None
    assert Memory.from_record(m.to_record(), "J", now=1).watched_job == "a"
    old = Memory.from_record(m.to_record(), "J", now=MEMORY_TRUST_SECONDS + 10)
    assert old.watched_job is None  # stopped, not restarted: `make demo` submits the job
    assert Memory.from_record(None, "J", now=1) == Memory(job_name="J")
    assert Memory.from_record({"job_name": "J", "unknown_field": 1}, "J", now=1).job_name == "J"


def test_a_restarted_watcher_forgets_a_submission_in_flight_and_sends_pending_alerts():
    m = run(Memory(job_name="J"), [job("a", "RUNNING")], [])
    m = submitted(m, 4)
    again = Memory.from_record(m.to_record(), "J", now=5)
    assert again.action is None and again.pending_alerts == m.pending_alerts


# -- what readers make of the watcher's record (online_ml/training_state.py) ---------------------
@pytest.mark.parametrize("state, model_age, records_age, expected", [
    ("running", 5.0, 1.0, None),
    ("running", 31.0, 1.0, "model_stale"),     # 3 backups late while records arrive
    ("running", 31.0, 31.0, None),             # late because nothing arrives: no warning
    ("running", 31.0, None, None),
    ("unknown", 31.0, 1.0, "model_stale"),     # without a watcher the model's age still tells
    ("unknown", 5.0, 1.0, None),
    ("absent", None, None, "not_running"),
    ("restarting", 1.0, 1.0, "not_running"),
    ("unreachable", 1.0, 1.0, "not_running"),
])
def test_when_the_board_warns(state, model_age, records_age, expected):
    assert training_state.problem(state, model_age, records_age, backup_interval=10.0) == expected


def test_an_old_or_missing_record_is_unknown():
    assert training_state.view(None, 100.0, 2.0)["training"] == "unknown"
    assert training_state.view({"state": "running"}, 100.0, 2.0)["training"] == "unknown"
    fresh = {"state": "failed", "checked_at": 94.5, "since": 80.0, "records_at": 90.0}
    assert training_state.view(fresh, 100.0, 2.0) == {
        "training": "failed", "training_since": 80.0, "training_action": None,
        "records_age_seconds": 10.0}
    assert training_state.view(fresh, 100.6, 2.0)["training"] == "unknown"  # > 3 intervals


def test_no_alert_about_training_never_seen_running():
    m = run(Memory(job_name="J"), [], [job("a", "CREATED")], [job("a", "RUNNING")])
    assert m.pending_alerts == []  # the first start is not a "resumed"
    m = run(Memory(job_name="J"), None, [job("a", "FAILED")])
    assert m.pending_alerts == []
