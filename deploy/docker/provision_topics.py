"""Create diffqc's Kafka topics (every topic of diffqc.contracts.topics and its dead-letter topic).

Run once per deployment (compose's ``kafka-init``, the chart's topics Job) before the consumers
scale out. A topic that exists keeps its configuration, but one with fewer partitions than
``--partitions`` is an error: its consumer group could not use the replicas it was sized for.
"""

from __future__ import annotations

import argparse
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from diffqc.bus.admin import wait_for_broker
from diffqc.bus.config import admin_config
from diffqc.contracts.topics import ALL_TOPICS, dead_letter_topic
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import SettingsError, load_settings


def topic_names(kafka) -> list[str]:
    return [name for topic in ALL_TOPICS for name in (topic, dead_letter_topic(topic, kafka))]


def provision(
    kafka, partitions: int, replication_factor: int, timeout_s: float, min_insync_replicas: int | None = None
) -> list[str]:
    """Create the missing topics (with ``min.insync.replicas`` when given, so that an acknowledged write
    survives the loss of a broker); return the problems found (empty = every topic is fit)."""
    wait_for_broker(kafka, timeout_s)
    admin = AdminClient(admin_config(kafka))
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted = topic_names(kafka)
    problems = [
        f"topic {name} has {len(existing[name].partitions)} partitions, fewer than the {partitions} required"
        for name in wanted
        if name in existing and len(existing[name].partitions) < partitions
    ]
    config = {"min.insync.replicas": str(min_insync_replicas)} if min_insync_replicas else {}
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config)
        for name in wanted
        if name not in existing
    ]
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items() if missing else ():
        try:
            future.result()
            print(f"created {name} ({partitions} partitions)")
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent run created it
                problems.append(f"topic {name} could not be created: {exc.args[0].str()}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, required=True, help="partitions of every topic (>= 1)")
    parser.add_argument("--replication-factor", type=int, default=-1, help="-1 = the broker's default")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker")
    parser.add_argument(
        "--min-insync-replicas",
        type=int,
        default=0,
        help="min.insync.replicas of new topics (0 = the broker's default)",
    )
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error("--partitions must be at least 1")
    if args.replication_factor > 0 and args.min_insync_replicas > args.replication_factor:
        parser.error("--min-insync-replicas cannot exceed --replication-factor: no write could ever be acknowledged")
    try:
        problems = provision(
            load_settings().kafka, args.partitions, args.replication_factor, args.timeout, args.min_insync_replicas
        )
    except (SettingsError, DependencyUnavailable) as exc:
        print(f"provision-topics: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"provision-topics: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
