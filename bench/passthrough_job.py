"""Passthrough job for the throughput benchmark: Kafka source -> Kafka sink, no UDF.

It declares its tables through ``stream.build_job`` (so the raw source and sink DDL are exactly the
training job's: same connector, format, startup mode and options) and then inserts the source
values unchanged. Its rate is the ceiling that Kafka and Flink alone allow on this machine; the
training job's rate is reported as a fraction of it.

    SOURCE_TOPIC=... SINK_TOPIC=... flink run -m localhost:8081 -d -pyfs stream.py \
        -py bench/passthrough_job.py --group-id G

``-pyfs stream.py`` puts the training job's script on the job's Python path (the CLI's driver runs
this file with bench/ first on the path, not the repository).
"""
from __future__ import annotations

import argparse
import logging
import sys

from pyflink.table import EnvironmentSettings, TableEnvironment

import stream
from online_ml.config import Settings

JOB_NAME = "bench passthrough"


def build_passthrough(t_env: TableEnvironment, settings: Settings, group_id: str | None = None):
    """The training job's tables, without its UDF: INSERT INTO sink SELECT value FROM source."""
    stream.build_job(t_env, settings, group_id)  # declares `source`, `sink` (UDF unused)
    t_env.get_config().set("pipeline.name", JOB_NAME)
    return t_env.sql_query("SELECT `value` FROM source")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", help="Kafka consumer group (default: KAFKA_GROUP_ID)")
    args, _ = parser.parse_known_args(argv)
    settings = Settings.from_env()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    result = build_passthrough(t_env, settings, args.group_id).execute_insert("sink")
    job = result.get_job_client()
    print(f"submitted '{JOB_NAME}'" + (f" as job {job.get_job_id()}" if job else ""))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
