"""``diffqc dlq list`` and ``diffqc dlq replay``: the dead letters on the configured broker (diffqc.bus.dead_letters).

Exit codes: 0 done, 1 the broker is unavailable or a frame id has no dead letter, 2 invalid settings or
arguments (an unknown dead-letter topic, neither or both of --frame-id and --all).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from diffqc.bus.dead_letters import UnknownDeadLetterTopic, failed_at_display, newest_letters, replay
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import KafkaSettings, SettingsError, load_settings

dlq_app = typer.Typer(no_args_is_help=True, add_completion=False)

TopicHelp = "A dead-letter topic (qc.frames.v1.dlq), or the topic whose dead letters it holds (qc.frames.v1)"


@contextmanager
def _broker() -> Iterator[KafkaSettings]:
    """The configured broker; a settings problem, an unknown topic or an unavailable broker ends the command."""
    try:
        kafka = load_settings().kafka
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        yield kafka
    except UnknownDeadLetterTopic as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except DependencyUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


@dlq_app.command("list")
def list_letters(
    topic: Annotated[str | None, typer.Option(help=f"{TopicHelp}; every dead-letter topic if not given")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many, the newest")] = 100,
) -> None:
    """The newest dead letters: frame id, where (topic, partition/offset), when, which stage gave up and why."""
    with _broker() as kafka:
        letters, topics = newest_letters(kafka, topic, limit)
    # One tab-separated line per letter, oldest first: reasons are long, and lines stay greppable.
    typer.echo("\t".join(("topic", "partition/offset", "frame id", "failed at (UTC)", "stage", "reason")))
    for letter in letters:
        stage = letter.stage.removeprefix(f"{kafka.group_prefix}.")
        where = f"{letter.partition}/{letter.offset}"
        fields = (letter.topic, where, letter.frame_id or "-", failed_at_display(letter), stage or "-", letter.reason)
        typer.echo("\t".join(field.replace("\n", " ") for field in fields))
    typer.echo(f"{len(letters)} dead letter(s) shown, of {', '.join(topics) or 'no dead-letter topic'}", err=True)


@dlq_app.command("replay")
def replay_letters(
    topic: Annotated[str, typer.Option(help=TopicHelp)],
    frame_id: Annotated[list[str] | None, typer.Option(help="Replay this frame's dead letter (repeatable)")] = None,
    all_letters: Annotated[bool, typer.Option("--all", help="Replay every dead letter of the topic")] = False,
) -> None:
    """Re-produce dead letters (original key, value and headers, without dlq.*) to the topic they came from,
    once their cause is fixed; each frame's newest letter once."""
    if bool(frame_id) == all_letters:
        typer.echo("give --frame-id (one or more) or --all, not both", err=True)
        raise typer.Exit(2)
    with _broker() as kafka:
        done = replay(kafka, topic, None if all_letters else frame_id)
    for letter, why in done.skipped:
        typer.echo(f"not replayed: frame {letter.frame_id} at {letter.partition}/{letter.offset}: {why}", err=True)
    sources = sorted({letter.source(kafka) for letter in done.replayed})
    typer.echo(f"replayed {len(done.replayed)} dead letter(s) to {', '.join(sources) or 'no topic'}")
    if done.not_found:
        typer.echo(f"no dead letter for frame id(s): {', '.join(done.not_found)}", err=True)
        raise typer.Exit(1)
