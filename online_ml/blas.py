"""numpy's BLAS kept to one thread in the processes that serve and learn (``BLAS_THREADS``).

OpenBLAS, numpy's BLAS, spreads every matrix product over all cores and then keeps its threads
spinning, waiting for the next one. The products here are small — a drawing's 64 cells against the
model's random features, an explanation's 16 points, a mini-batch of records — and the processes
that make them already share the cores: the server's workers, the job's Python workers next to
the Flink JVMs. Measured on this 2-core machine (README "Benchmarks"): one BLAS thread instead of
two halves the CPU of the board's requests (explain=1; ``python bench/request_cost.py``) and under
two server workers lifts them at 8 clients from 211 to 1,062 requests/s, p99 161 -> 15 ms
(``bench/serving.py``, server ``project-blas``); it halves the batch UDF's CPU a record in a plain
loop, and through Flink the job's records per second stay within this VM's noise (0.94x;
``python bench/throughput.py --variants batch batch-blas python``). Parallelism comes from the
server's workers and the job's parallelism, not from BLAS.

>>> before = threads()
>>> limit_threads(0)  # 0: leave BLAS as it is
>>> threads() == before
True
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["every_core", "limit_threads", "threads"]


def limit_threads(threads: int) -> None:
    """At most ``threads`` BLAS threads in this process from now on (0: leave it as it is)."""
    if threads <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def every_core() -> Any:
    """A context in which BLAS may use every core again, as before ``BLAS_THREADS`` (2026-12-04):
    what the benchmarks compare one thread with (``with every_core(): ...``)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=os.cpu_count() or 1, user_api="blas")


def threads() -> set[int]:
    """The thread counts of the BLAS libraries loaded in this process (numpy's: one)."""
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
