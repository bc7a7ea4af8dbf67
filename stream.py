"""Online training job: Kafka `handwritten_digit` -> predict-then-learn UDF -> Kafka `digit_predict`.

Submit it to the local cluster exactly as the tutorial does::

    flink run -m localhost:8081 -py stream.py          # add -d to return at once

The UDF loads the newest model from Redis when it opens (or creates one), predicts each record
with the current model *before* learning from it (progressive validation: the tutorial trained
first, which inflates the accuracy it shows), registers metrics under the group ``online_ml``
(Flink WebUI -> job -> operator -> Metrics), and backs the model up to Redis every 10 s.
A bad record is skipped and written, with the reason, to `digit_dead_letter`; a drop in the
recent accuracy raises one alert in `model_alerts` (and one "recovered" record after it).
The training logic lives in online_ml/trainer.py; this file only adapts it to PyFlink.
Settings come from the submitting shell's environment (online_ml/config.py).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from online_ml.config import Settings, check_execution_mode
from online_ml.side_outputs import SPLIT_SQL, encode_output, sink_topics

if TYPE_CHECKING:
    from online_ml.trainer import Trainer

HERE = os.path.dirname(os.path.abspath(__file__))

OUTPUT_TABLE = "outputs"  # the table build_job's result is inserted into
# measured (README, "Python execution mode"): PyFlink 2.2.1 runs a Table API scalar function in
# thread mode with a metric group of its own that nothing reports (its Java operator passes none)
# and calls the UDF's close() only at the end of bounded input, never on cancel
THREAD_MODE_WARNING = ("warning: PYTHON_EXECUTION_MODE=thread: the UDF's metrics (group online_ml: "
                       "sample_count, accuracies, backups, ...) do not reach Flink, and a cancel "
                       "skips the last model backup (close() is not called); predictions, timer "
                       "backups and alerts work")


class OnlineLearning(ScalarFunction):
    """PyFlink adapter around online_ml.trainer.Trainer: one learner per parallel subtask; the
    learners merge into one model through Redis (online_ml/sync_protocol.py).

    Returns, per source record, a list of outputs ``"topic\\nvalue"`` (online_ml/side_outputs.py):
    the prediction or the dead letter, plus an alert now and then.
    """

    trainer: Trainer  # built in open(), on the TaskManager

    def __init__(self, settings: Settings, learners: int = 1):
        self.settings = settings
        self.learners = learners  # the job's parallelism: the learners start together

    def open(self, function_context: FunctionContext):
        from online_ml.trainer import Trainer

        logging.basicConfig(level=logging.INFO)
        self.trainer = Trainer(self.settings, learners=self.learners)
        self.trainer.start_background_backups()
        group = function_context.get_metric_group().add_group("online_ml")
        # the tutorial's metrics
        self.sample_count = group.counter("sample_count")
        # continues after a restart: the first _count() adds the restored samples_seen. Not
        # here: PyFlink drops metric updates made in open(), before the first bundle.
        self._counted = 0
        group.gauge("prediction_acc", lambda: int(self.trainer.learner.accuracy * 100))
        self.metric_distribution_y = group.distribution("metric_distribution_y")
        self.total_10_sec = group.meter("total_10_sec", time_span_in_seconds=10)
        self.right_10_sec = group.meter("right_10_sec", time_span_in_seconds=10)
        # ours: integers, accuracies in per mille (see README, "Metrics")
        for name, getter in self.trainer.gauges().items():
            group.gauge(name, getter)

    def _sync_sample_count(self) -> None:
        # follows the learner, which may also jump ahead when it adopts a stored model
        seen = self.trainer.learner.samples_seen
        if seen > self._counted:
            self.sample_count.inc(seen - self._counted)
            self._counted = seen

    def _count(self, labels, n_correct: int) -> None:
        self._sync_sample_count()
        for y in labels:
            self.metric_distribution_y.update(y)
        if labels:
            self.total_10_sec.mark_event(len(labels))
        if n_correct:
            self.right_10_sec.mark_event(n_correct)

    def eval(self, value):
        outputs, actual, predicted = self.trainer.process(value)
        if actual is not None:
            self._count([actual], int(predicted == actual))
        return [encode_output(topic, text) for topic, text in outputs]

    def close(self):
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            trainer.close()


class OnlineLearningBatch(OnlineLearning):
    """Mini-batch mode: a vectorized (pandas) UDF called once per Arrow batch of records."""

    def eval(self, values):
        import pandas as pd

        outputs, labels, n_correct = self.trainer.process_many(values.tolist())
        self._count(labels, n_correct)
        return pd.Series([[encode_output(topic, text) for topic, text in outs] for outs in outputs],
                         dtype=object)


def make_udf(settings: Settings, learners: int = 1):
    result_type = DataTypes.ARRAY(DataTypes.STRING())
    if settings.udf_mode == "batch":
        return udf(OnlineLearningBatch(settings, learners), result_type=result_type,
                   func_type="pandas")
    return udf(OnlineLearning(settings, learners), result_type=result_type)


def job_parallelism(config) -> int:
    """The parallelism the job runs at: PARALLELISM, else `flink run -p N` (the CLI puts it in
    the configuration the script sees), else the cluster's default."""
    try:
        return max(1, int(config.get("parallelism.default", "1")))
    except (TypeError, ValueError):
        return 1


def build_job(t_env: TableEnvironment, settings: Settings, group_id: str | None = None):
    """Declare the tables, register the UDF, and return the Table to insert into OUTPUT_TABLE."""
    config = t_env.get_config()
    config.set("pipeline.name", settings.job_name)
    # Settings.from_env checked it already; a Settings built by hand is checked here
    check_execution_mode(settings.udf_mode, settings.python_execution_mode)
    config.set("python.execution-mode", settings.python_execution_mode)
    if settings.parallelism:  # else Flink's default, or `flink run -p N`
        config.set("parallelism.default", str(settings.parallelism))
    if settings.udf_mode == "batch":
        # an Arrow batch must fit in one bundle
        config.set("python.fn-execution.arrow.batch.size", str(settings.batch_size))
        config.set("python.fn-execution.bundle.size", str(max(settings.batch_size, 1000)))
    t_env.add_python_file(os.path.join(HERE, "online_ml"))
    kafka = (f"'connector' = 'kafka', 'properties.bootstrap.servers' = "
             f"'{settings.kafka_bootstrap_servers}', 'format' = 'raw'")
    # Raw bytes, not the json format: a malformed record must reach the UDF to be counted,
    # skipped and dead-lettered; the json format would fail the whole job on it. Not STRING
    # either: a value that is not UTF-8 would then fail the job while PyFlink decodes it.
    t_env.execute_sql(f"""
        CREATE TABLE source (`value` BYTES) WITH (
            {kafka},
            'topic' = '{settings.source_topic}',
            'properties.group.id' = '{group_id or settings.kafka_group_id}',
            'scan.startup.mode' = 'group-offsets',
            'properties.auto.offset.reset' = 'earliest'
        )""")
    # one topic, raw bytes: for jobs that copy records as they are (bench/passthrough_job.py)
    t_env.execute_sql(f"""
        CREATE TABLE sink (`value` BYTES) WITH (
            {kafka},
            'topic' = '{settings.sink_topic}'
        )""")
    # the job's sink: each row says its topic (predictions, dead letters, alerts), so all three
    # go through Flink's Kafka sink and its checkpoints (online_ml/side_outputs.py)
    topics = sink_topics([settings.sink_topic, settings.dead_letter_topic, settings.alert_topic])
    t_env.execute_sql(f"""
        CREATE TABLE {OUTPUT_TABLE} (`value` STRING, `topic` STRING METADATA) WITH (
            {kafka},
            'topic' = '{topics}'
        )""")
    t_env.create_temporary_system_function("online_learning",
                                           make_udf(settings, job_parallelism(config)))
    t_env.create_temporary_view(
        "udf_outputs", t_env.sql_query("SELECT online_learning(`value`) AS items FROM source"))
    return t_env.sql_query(
        f"SELECT {SPLIT_SQL} FROM udf_outputs CROSS JOIN UNNEST(udf_outputs.items) AS u(item)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", help="Kafka consumer group (default: KAFKA_GROUP_ID)")
    parser.add_argument("--mode", choices=("row", "batch"),
                        help="UDF mode (default: UDF_MODE or row)")
    parser.add_argument("--batch-size", type=int, help="records per Arrow batch in batch mode")
    parser.add_argument("--execution-mode", choices=("process", "thread"),
                        help="where the UDF runs (default: PYTHON_EXECUTION_MODE or process)")
    args, _ = parser.parse_known_args(argv)
    try:
        settings = Settings.from_env(udf_mode=args.mode, batch_size=args.batch_size,
                                     python_execution_mode=args.execution_mode)
        # the learner is built on the TaskManager: check it here, where the user is
        from online_ml.learner import make_model
        from online_ml.sync import check_mergeable

        model = make_model(settings.learner, **settings.learner_kwargs())
        if settings.parallelism > 1:  # N learners are merged into one model
            check_mergeable(model)
    except (ValueError, TypeError) as exc:  # a bad setting: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.python_execution_mode == "thread":
        print(THREAD_MODE_WARNING, file=sys.stderr)
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    result = build_job(t_env, settings, args.group_id).execute_insert(OUTPUT_TABLE)
    job = result.get_job_client()
    print(f"submitted '{settings.job_name}' ({settings.udf_mode} mode, Python UDF in "
          f"{settings.python_execution_mode} mode)"
          + (f" as job {job.get_job_id()}" if job else ""))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
