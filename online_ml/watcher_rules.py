"""The job watcher's decisions (:mod:`online_ml.watcher`), plain functions of what Flink answered.

No I/O here: :func:`observe` turns one answer of Flink's REST API (the jobs, or None when it is
unreachable) into the next :class:`Memory`; :func:`due` and :func:`wants_resubmit` say whether to
submit the job again; :func:`backoff` paces resubmissions of a job that keeps failing.

>>> m = observe(Memory(job_name="J"), [{"jid": "a", "state": "RUNNING", "start-time": 1}], now=10)
>>> m.state, m.watched_job, due(m, now=10)
('running', 'a', False)
>>> m = observe(m, [], now=12)                       # the JobManager came back without it
>>> m.state, due(m, now=12), [a["kind"] for a in m.pending_alerts]
('absent', True, ['training_stopped'])
>>> m = observe(m, [{"jid": "a", "state": "CANCELED", "start-time": 1}], now=14)
>>> m.cancelled, due(m, now=14)                      # cancelled on purpose: stays so
(True, False)
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from online_ml.flink_rest import TERMINAL, readiness
from online_ml.schema import TS_FORMAT
from online_ml.training_state import ABSENT, RUNNING, UNKNOWN, UNREACHABLE

#: Job states after which the job does not run again by itself (SUSPENDED: its JobManager let go).
ENDED = TERMINAL | {"SUSPENDED"}
#: Ended by someone on purpose (``flink cancel``, ``flink stop``): never brought back.
ON_PURPOSE = frozenset({"CANCELED", "FINISHED"})
#: Brought back after these states of a job the watcher saw running.
BRING_BACK = frozenset({ABSENT, "failed", "suspended"})
BACKOFF_BASE, BACKOFF_MAX = 5.0, 60.0  # s between resubmissions of a job that keeps failing
STABLE_SECONDS = 60.0  # running this long resets the backoff
VISIBLE_TIMEOUT = 60.0  # a submitted job Flink does not list after this was lost
#: A remembered running job older than this is not brought back: the watcher was stopped (make
#: down, make up) rather than restarted by its supervisor, and `make demo` submits the job.
MEMORY_TRUST_SECONDS = 60.0
STOPPED, RESUMED = "training_stopped", "training_resumed"


@dataclasses.dataclass
class Memory:
    """The record under ``ModelStore.training_key()``: public state plus the watcher's memory."""

    job_name: str = ""
    state: str = UNKNOWN
    job_id: str | None = None
    since: float | None = None
    checked_at: float | None = None
    action: str | None = None  # "resubmitting" from `flink run` until Flink lists the new job
    watched_job: str | None = None  # the last job seen RUNNING: the one to bring back
    cancelled: bool = False  # stopped on purpose: nothing is brought back ...
    cancelled_job: str | None = None  # ... until a job other than this one is submitted
    resubmits: int = 0  # in a row; reset after STABLE_SECONDS of running
    last_submit_at: float | None = None
    submitted_job: str | None = None  # submitted, not listed by Flink yet
    up: bool | None = None  # running at the last check; None until first seen running
    down_since: float | None = None
    pending_alerts: list[dict] = dataclasses.field(default_factory=list)
    source_offsets: int | None = None  # sum of the source topic's end offsets
    records_at: float | None = None  # when they last grew
    message: str = ""
    refused: bool = False  # unreachable because nothing listens: the JobManager process is gone

    def to_record(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict | None, job_name: str, now: float) -> Memory:
        """The memory a watcher left (fields of another job name or unknown ones are dropped).
        A submission in flight died with its watcher; a job remembered as running is only
        trusted when the record is recent (see :data:`MEMORY_TRUST_SECONDS`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in (record or {}).items() if k in names}
        if values.get("job_name") != job_name:
            return cls(job_name=job_name)
        memory = cls(**values)
        memory.action = memory.submitted_job = None
        if memory.checked_at is None or now - memory.checked_at > MEMORY_TRUST_SECONDS:
            memory.watched_job = None
        return memory


def current_job(jobs: list[dict]) -> dict | None:
    """The job that counts: the newest one still active, else the newest one that ended."""
    active = [j for j in jobs if j.get("state") not in ENDED]
    pool = active or jobs
    return max(pool, key=lambda j: (j.get("start-time") or 0, j.get("last-modification") or 0),
               default=None)


def ts(now: float) -> str:
    return datetime.fromtimestamp(now).strftime(TS_FORMAT)


def alert(kind: str, memory: Memory, previous: str, now: float) -> dict:
    """One record for the alert topic (``kind`` is ``training_stopped`` or ``training_resumed``)."""
    out: dict[str, Any] = {"kind": kind, "job_name": memory.job_name, "state": memory.state,
                           "previous_state": previous, "job_id": memory.job_id, "ts": ts(now)}
    if kind == RESUMED and memory.down_since is not None:
        out["down_seconds"] = round(now - memory.down_since, 1)
    return out


def observe(memory: Memory, jobs: list[dict] | None, now: float, refused: bool = False) -> Memory:
    """The memory after one look at the jobs of that name (``None``: Flink did not answer;
    ``refused``: because the connection was refused)."""
    m = dataclasses.replace(memory, pending_alerts=list(memory.pending_alerts))
    previous = m.state
    m.refused = jobs is None and refused
    if jobs is None:
        state, job_id = UNREACHABLE, m.job_id
    else:
        job = current_job(jobs)
        state, job_id = (ABSENT, None) if job is None else (job["state"].lower(), job["jid"])
        if job is not None and job["state"] not in ENDED and m.cancelled \
                and job_id != m.cancelled_job:
            m.cancelled = False  # someone submitted it again
        if m.submitted_job is not None and (
                (job is not None and job["state"] not in ENDED)
                or any(j.get("jid") == m.submitted_job for j in jobs)):
            m.submitted_job, m.action = None, None  # the job we submitted is there (or one like it)
        if job is not None and job["state"] == "RUNNING":
            m.watched_job = job_id
        if job is not None and job["state"] in ON_PURPOSE and not m.cancelled \
                and job_id != m.cancelled_job:
            m.cancelled, m.cancelled_job = True, job_id
    if state != previous or m.since is None:
        m.since = now
    m.state, m.job_id, m.checked_at = state, job_id, now
    if state == RUNNING and now - m.since >= STABLE_SECONDS:
        m.resubmits = 0
    up = state == RUNNING  # alerts only about training that was seen running
    if up and m.up is False:
        m.pending_alerts.append(alert(RESUMED, m, previous, now))
    elif not up and m.up:
        m.down_since = now
        m.pending_alerts.append(alert(STOPPED, m, previous, now))
    if up or m.up is not None:
        m.up = up
    if m.submitted_job is not None and now - (m.last_submit_at or now) > VISIBLE_TIMEOUT:
        m.submitted_job, m.action = None, None  # lost: may be submitted again after the backoff
    return m


def backoff(resubmits: int) -> float:
    """Seconds to wait before the next resubmission, after ``resubmits`` in a row.

    >>> [backoff(n) for n in range(6)]
    [0.0, 5.0, 10.0, 20.0, 40.0, 60.0]
    """
    return 0.0 if resubmits <= 0 else min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (resubmits - 1))


def wants_resubmit(m: Memory) -> bool:
    """A job seen running is gone or failed, was not stopped on purpose, and none is on its way.

    Gone includes a JobManager that refuses connections: a standalone cluster without high
    availability loses its jobs with its JobManager process, so `flink run` can start while the
    supervisor restarts it (the client builds the job meanwhile and retries the submission until
    the REST API answers). A JobManager that does not answer in time may be alive and busy with
    the job: then nothing is submitted.
    """
    gone = m.state in BRING_BACK or (m.state == UNREACHABLE and m.refused)
    return (gone and m.watched_job is not None and not m.cancelled
            and m.action is None and m.submitted_job is None)


def due(m: Memory, now: float) -> bool:
    last = m.last_submit_at
    return wants_resubmit(m) and (last is None or now >= last + backoff(m.resubmits))


def room_for(overview: dict, slots: int) -> tuple[bool, str]:
    """Whether to submit now: the cluster has ``slots`` free task slots, or no TaskManager has
    registered yet. A JobManager that just restarted answers a few seconds before its
    TaskManagers are back (7 s measured); `flink run -py` needs longer than that to build the
    job, so it starts at once and Flink deploys the job when the slots arrive. A cluster whose
    TaskManagers are all busy is waited for instead of queueing a job behind it.

    >>> room_for({"taskmanagers": 0, "slots-total": 0, "slots-available": 0}, 1)[0]
    True
    >>> room_for({"taskmanagers": 1, "slots-total": 2, "slots-available": 0}, 1)
    (False, '1 TaskManager(s), 2 slot(s), 0 free; 1 must be free')
    """
    if int(overview.get("taskmanagers", 0)) == 0:
        return True, "no TaskManager registered yet: Flink deploys the job when one is"
    return readiness(overview, taskmanagers=1, free_slots=slots)


def mark_stopped(m: Memory, why: str) -> Memory:
    """The job is stopped on purpose (the stack is going down): do not bring it back."""
    return dataclasses.replace(m, cancelled=True, cancelled_job=m.job_id or m.watched_job,
                               action=None, submitted_job=None, message=why, up=None,
                               pending_alerts=[])
