"""Passthrough job for the throughput benchmark: Kafka source -> Kafka sink, no learning.

It declares its tables through ``stream.build_job`` (so the raw source and sink DDL are exactly the
training job's: same connector, format, startup mode and options) and then inserts the source
values unchanged. Three modes:

- ``--mode jvm`` (default): no UDF at all. Its rate is the ceiling that Kafka and Flink alone
  allow on this machine; the training job's rate is reported as a fraction of it.
- ``--mode python``: a pandas UDF that only returns its input, with the batch UDF's Arrow batch
  and bundle sizes (``BATCH_SIZE``). Every record crosses to a Python worker and back as in the
  batch training job, so this is the realistic ceiling of any Python UDF here.
- ``--mode shape``: the batch training job's shape without its work: a pandas UDF that returns,
  for each record, an array of one string (the record for ``SINK_TOPIC``, as the job's UDF returns
  its prediction), unnested and split by topic in the JVM into the job's sink table. The ceiling
  of the batch UDF as it is built, whatever it learns or decodes.
- ``--mode flat``: the same without the array: one string per record, split by topic in the JVM
  with no UNNEST (a UDF built so could return one output per record only; measured to see what
  the array costs).

    SOURCE_TOPIC=... SINK_TOPIC=... flink run -m localhost:8081 -d -pyfs stream.py \
        -py bench/passthrough_job.py --group-id G [--mode python|shape|flat]

``-pyfs stream.py`` puts the training job's script on the job's Python path (the CLI's driver runs
this file with bench/ first on the path, not the repository).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import udf

import stream
from online_ml.config import Settings
from online_ml.side_outputs import SPLIT_SQL

JOB_NAME = "bench passthrough"
MODES = ("jvm", "python", "shape", "flat")


def copy_values(values):
    """The python passthrough's pandas UDF: the Arrow batch back as it came."""
    return values


def shaped_outputs(topic: str):
    """The shape mode's pandas UDF: each record as the one output of an array, for ``topic``."""
    import pandas as pd

    from online_ml.side_outputs import encode_output

    def outputs(values):
        return pd.Series([[encode_output(topic, v.decode("utf-8", "replace"))]
                          for v in values.tolist()], dtype=object)
    return outputs


def flat_outputs(topic: str):
    """The flat mode's pandas UDF: each record as one string for ``topic``, not in an array."""
    import pandas as pd

    from online_ml.side_outputs import encode_output

    def outputs(values):
        return pd.Series([encode_output(topic, v.decode("utf-8", "replace"))
                          for v in values.tolist()], dtype=object)

    return outputs


def build_passthrough(t_env: TableEnvironment, settings: Settings, group_id: str | None = None,
                      mode: str = "jvm"):
    """The training job's tables, without its learning: INSERT INTO sink SELECT value FROM
    source, in ``python`` mode through a copy-only pandas UDF; in ``shape`` mode the job's own
    UNNEST into its sink table (insert the result into ``stream.OUTPUT_TABLE``)."""
    stream.build_job(t_env, settings, group_id)  # declares `source`, `sink` (UDF unused)
    config = t_env.get_config()
    if mode == "jvm":
        config.set("pipeline.name", JOB_NAME)
        return t_env.sql_query("SELECT `value` FROM source")
    config.set("pipeline.name", f"{JOB_NAME} (python)")
    # build_job ships <stream.py's folder>/online_ml with the job; with -pyfs stream.py that
    # folder is a temporary copy without it, and a Python operator's missing file makes the
    # submission hang in retries. The worker imports online_ml from the venv (and the UDF
    # below needs nothing from it): ship only the files that exist.
    files = [f for f in (config.get("python.files", "") or "").split(",") if f]
    config.set("python.files", ",".join(f for f in files if os.path.exists(f)))
    # the batch training job's Arrow batch and bundle (stream.build_job sets them in batch mode)
    config.set("python.fn-execution.arrow.batch.size", str(settings.batch_size))
    config.set("python.fn-execution.bundle.size", str(max(settings.batch_size, 1000)))
    if mode == "shape":
        config.set("pipeline.name", f"{JOB_NAME} (python, the job's shape)")
        t_env.create_temporary_system_function("shaped_outputs", udf(
            shaped_outputs(settings.sink_topic), result_type=DataTypes.ARRAY(DataTypes.STRING()),
            func_type="pandas"))
        t_env.create_temporary_view(
            "shaped", t_env.sql_query("SELECT shaped_outputs(`value`) AS items FROM source"))
        return t_env.sql_query(
            f"SELECT {SPLIT_SQL} FROM shaped CROSS JOIN UNNEST(shaped.items) AS u(item)")
    if mode == "flat":
        config.set("pipeline.name", f"{JOB_NAME} (python, one string per record)")
        t_env.create_temporary_system_function("flat_outputs", udf(
            flat_outputs(settings.sink_topic), result_type=DataTypes.STRING(), func_type="pandas"))
        t_env.create_temporary_view(
            "flat", t_env.sql_query("SELECT flat_outputs(`value`) AS item FROM source"))
        return t_env.sql_query(f"SELECT {SPLIT_SQL} FROM flat")
    t_env.create_temporary_system_function(
        "copy_values", udf(copy_values, result_type=DataTypes.BYTES(), func_type="pandas"))
    return t_env.sql_query("SELECT copy_values(`value`) AS `value` FROM source")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", help="Kafka consumer group (default: KAFKA_GROUP_ID)")
    parser.add_argument("--mode", choices=MODES, default="jvm",
                        help="jvm: no UDF (default); python: a copy-only pandas UDF; shape: "
                             "the batch training job's UDF shape without its work")
    args, _ = parser.parse_known_args(argv)
    settings = Settings.from_env()
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    table = stream.OUTPUT_TABLE if args.mode in ("shape", "flat") else "sink"
    result = build_passthrough(t_env, settings, args.group_id, args.mode).execute_insert(table)
    job = result.get_job_client()
    print(f"submitted '{JOB_NAME}'" + (f" as job {job.get_job_id()}" if job else ""))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
