"""The `herald` command: serve, replay, events, openapi, mailbox, and the scale-out relay and worker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from herald.infra.config import Settings, settings_from_env
from herald.infra.data_dir_lock import DataDirInUse, hold_processors_lock
from herald.infra.malloc_tuning import return_large_blocks
from herald.infra.serialization import dumps

BAD_CONFIGURATION = 2  # the exit status for settings Herald cannot use (as argparse's for bad flags)
CANNOT_START = 3  # the exit status when Herald cannot start: its data directory or port is taken
DATA_DIR_HELP = "where Herald keeps all its data (env HERALD_DATA_DIR; default ./herald-data)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herald", description="Herald customer data and messaging platform")
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    # Also after the command (`herald serve --data-dir D`, as the README writes it); SUPPRESS keeps
    # a value given before the command when none is given after it.
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", default=argparse.SUPPRESS, help=DATA_DIR_HELP)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[data_dir])

    serve = command("serve", "run the API and the processors (embedded, one directory)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    replay = command("replay", "rebuild every projection from the log, comparing checksums")
    replay.add_argument("--check", action="store_true", help="compare only; keep the live read models")
    replay.add_argument(
        "--reports", action="store_true", help="rebuild the report tables (ClickHouse) instead"
    )

    events = command("events", "print the log as JSON lines")
    events.add_argument("--after", type=int, default=0, help="start after this global position")
    events.add_argument("--limit", type=int, default=100)
    events.add_argument("--stream", help="one stream instead of the global log")
    events.add_argument("--type", help="only events of this type")

    commands.add_parser("openapi", help="print the OpenAPI document")

    secrets = command("secrets", "the secrets stored (sealed) in the log")
    secrets_commands = secrets.add_subparsers(dest="secrets_command", required=True)
    reseal = secrets_commands.add_parser(
        "reseal",
        help="seal every secret again under the current key (after a rotation or an upgrade)",
        parents=[data_dir],
    )
    reseal.add_argument(
        "--scrub",
        action="store_true",
        help="then overwrite the clear text old events hold on disk and rebuild the read models",
    )

    command(
        "reseal",
        "seal in place the personal values of events written before sealing existed, so erasing a "
        "profile reaches them, then rebuild the read models (with no server running)",
    )

    mailbox = commands.add_parser("mailbox", help="a local SMTP server keeping what it receives in a folder")
    mailbox.add_argument("--host", default="127.0.0.1")
    mailbox.add_argument("--port", type=int, default=2525)
    mailbox.add_argument("--dir", default="mail", help="the folder for the messages (default ./mail)")

    parked = command("parked", "print the events processors parked, as JSON lines")
    parked.add_argument("--processor", help="one processor's only")
    parked.add_argument("--traceback", action="store_true", help="with each one's traceback")
    redrive = command(
        "redrive",
        "apply parked events to their processors again, after a fix (with the server stopped: a running "
        "server re-drives through POST /api/v1/processors/{processor}/parked/{position}/redrive)",
    )
    redrive.add_argument("processor", nargs="?", help="the processor (default: every processor)")
    redrive.add_argument("positions", nargs="*", type=int, help="log positions (default: all it parked)")

    send = command("send", "run the senders alone, one worker per channel (with the processors they need)")
    send.add_argument("--until-empty", action="store_true", help="stop once nothing is waiting to be sent")
    send.add_argument(
        "--processes",
        type=int,
        default=1,
        help="sender processes sharing the queue (this one and N - 1 more)",
    )
    send.add_argument("--part", help=argparse.SUPPRESS)  # I/N: one of the others (herald/api/sending.py)

    relay = command("relay", "publish the event log to Kafka (the scale engine)")
    _kafka_arguments(relay)
    worker = command("worker", "fold some partitions of the event topic, send their email (the scale engine)")
    _kafka_arguments(worker)
    worker.add_argument(
        "--session-timeout",
        type=float,
        default=10.0,
        help="seconds before Kafka hands a dead worker's partitions to the others",
    )

    args = parser.parse_args(argv)
    if args.command == "openapi":
        from herald.api.app import openapi

        sys.stdout.buffer.write(dumps(openapi()) + b"\n")
        return 0
    if args.command == "mailbox":
        from herald.api.mailbox import run_mailbox

        return 0 if run_mailbox(args.host, args.port, Path(args.dir)) else CANNOT_START
    try:
        settings = settings_from_env(
            data_dir=args.data_dir, host=getattr(args, "host", None), port=getattr(args, "port", None)
        )
    except ValueError as bad:  # a HERALD_* variable Herald cannot use: say which, in one line
        print(f"herald: {bad}", file=sys.stderr)
        return BAD_CONFIGURATION
    return_large_blocks()  # a long-running process gives freed big arrays back (infra/malloc_tuning.py)
    try:
        return _run(args, settings)
    except DataDirInUse as taken:
        print(f"herald: {taken}", file=sys.stderr)
        return CANNOT_START


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # The commands that fold the log into this directory's read models take its lock first.
    # With the scale engine `herald serve` runs no processor: several may share a directory.
    # `secrets reseal --scrub` rebuilds the read models, so it waits for no server to be folding them;
    # `redrive` applies events to the processors, so it runs only while no server does.
    runs_processors = (
        args.command == "replay"
        or (args.command == "redrive" and settings.engine == "embedded")  # scale: the workers re-drive
        or (args.command == "send" and getattr(args, "part", None) is None)
        or (args.command == "serve" and settings.engine == "embedded")
        or (args.command == "secrets" and args.scrub)
        or args.command == "reseal"
    )
    lock = hold_processors_lock(settings.data_dir, args.command) if runs_processors else None
    try:
        return _command(args, settings)
    finally:
        if lock is not None:
            lock.close()


def _command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return _serve(settings)
    if args.command == "replay":
        from herald.api.replay import replay as run_replay
        from herald.api.replay import replay_reports

        return replay_reports(settings) if args.reports else run_replay(settings, keep_live=args.check)
    if args.command == "send":
        if settings.engine == "scale":
            print("herald: with HERALD_ENGINE=scale each `herald worker` sends its partitions' email")
            return BAD_CONFIGURATION
        from herald.api.sending import send

        if args.processes < 1:
            print("herald send: --processes takes 1 or more", file=sys.stderr)
            return BAD_CONFIGURATION
        return send(settings, args.until_empty, args.processes, args.part)
    if args.command in ("parked", "redrive"):
        from herald.api.parked import print_parked, redrive_parked, request_redrive

        if args.command == "parked":
            return print_parked(settings, args.processor, args.traceback)
        if settings.engine == "scale":
            return request_redrive(settings, args.processor, args.positions)
        return redrive_parked(settings, args.processor, args.positions)
    if args.command == "relay":
        return _relay(settings, args)
    if args.command == "worker":
        return _worker(settings, args)
    if args.command == "secrets":
        return _reseal(settings, scrub=args.scrub)
    if args.command == "reseal":
        return _reseal_personal(settings)
    return _events(settings, args)


def _reseal_personal(settings: Settings) -> int:
    """Seal the old events' personal values in place, then rebuild the read models (an erased
    profile's old events read as erased from now on)."""
    from herald.api.replay import replay
    from herald.api.wiring import open_event_store
    from herald.infra.clock import SystemClock
    from herald.infra.log_scrub import scrub_sqlite_log
    from herald.services.resealing import plaintext_rewrites

    store = open_event_store(settings, SystemClock())
    try:
        changed = scrub_sqlite_log(settings.event_store_path, plaintext_rewrites(store))
    finally:
        store.close()
    print(f"{changed} events held personal values in clear: sealed in place, the file vacuumed")
    return replay(settings) if changed else 0


def _reseal(settings: Settings, scrub: bool) -> int:
    """Reseal every secret; with `scrub`, then rewrite the old events' bytes and rebuild the read
    models (whose files may hold copies of them)."""
    from herald.api.replay import replay
    from herald.api.wiring import build
    from herald.domain.events import registry
    from herald.infra.log_scrub import scrub_sqlite_log
    from herald.services.secrets import cleartext_rewrites, reseal_log

    herald = build(settings)
    try:
        done = reseal_log(herald.store, herald.senders, herald.catalog)
        print(
            f"{done.streams} streams hold secrets; {done.resealed} sealed again under key "
            f"{herald.box.current_key_id}"
        )
        rewrites = list(cleartext_rewrites(herald.store, registry)) if scrub else []
    finally:
        herald.close()
    if not scrub:
        return 0
    changed = scrub_sqlite_log(settings.event_store_path, rewrites)
    print(f"{changed} events held secrets in clear: rewritten, the file vacuumed")
    replay(settings)  # read models that held a copy of the clear text differ from the rebuilt ones
    return 0


def _kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers, host:port (env HERALD_KAFKA_BOOTSTRAP)")
    parser.add_argument("--topic", help="the topic the log is relayed to (env HERALD_KAFKA_TOPIC)")
    parser.add_argument("--partitions", type=int, help="its partition count (env HERALD_KAFKA_PARTITIONS)")


def _kafka(settings: Settings, args: argparse.Namespace) -> tuple[str, str, int]:
    """Bootstrap servers, topic and partition count: flags win over the settings."""
    return (
        args.bootstrap or settings.kafka_bootstrap,
        args.topic or settings.kafka_topic,
        args.partitions or settings.kafka_partitions,
    )


def _relay(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from herald.api.wiring import open_event_store
    from herald.infra.clock import SystemClock
    from herald.infra.readmodel_db import SqliteCheckpoints, open_readmodel_db
    from herald.processors.relay import AioKafkaPublisher, Relay, ensure_topic

    bootstrap, topic, partitions = _kafka(settings, args)
    store = open_event_store(settings, SystemClock())
    # Its own file: `herald replay` swaps the read-model file, and must not reset what was published.
    checkpoints = SqliteCheckpoints(open_readmodel_db(settings.data_dir / "relay.sqlite"))
    # the log as stored: a topic holds profiles' data sealed, as the log does
    relay = Relay(store.inner, AioKafkaPublisher(bootstrap), topic, partitions, checkpoints)
    print(f"Herald relay: {settings.event_store_path} -> {topic} at {bootstrap}", flush=True)

    async def run() -> None:
        await ensure_topic(bootstrap, topic, partitions)
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop_signal, relay.stop)
        try:
            await relay.run()
        finally:
            await relay.close()

    try:
        asyncio.run(run())
    finally:
        store.close()
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from herald.api.scale_worker import run_worker
    from herald.processors.partition_worker import WorkerOptions

    bootstrap, topic, partitions = _kafka(settings, args)
    options = WorkerOptions(bootstrap, topic, partitions, session_timeout=args.session_timeout)
    try:
        return run_worker(settings, options)
    except ValueError as bad:  # settings the scale engine cannot run with: say which, in one line
        print(f"herald: {bad}", file=sys.stderr)
        return BAD_CONFIGURATION


def _serve(settings: Settings) -> int:
    from herald.api.app import create_app
    from herald.api.server import serve
    from herald.api.wiring import build

    herald = build(settings)
    token_file = Path(settings.data_dir) / "admin-token"
    where = "HERALD_ADMIN_TOKEN" if settings.admin_token else str(token_file)

    def banner(url: str) -> None:
        print(f"Herald on {url}  data: {settings.data_dir}  admin token: {where}", flush=True)

    # with the scale engine, `herald worker` runs the processors; two runners would corrupt the read models
    app = create_app(herald, run_processors=settings.engine == "embedded")
    try:
        bound = serve(app, settings.host, settings.port, banner)
    finally:
        herald.close()
    return 0 if bound else CANNOT_START


def _events(settings: Settings, args: argparse.Namespace) -> int:
    from herald.api.routes.events import event_json
    from herald.api.wiring import open_event_store
    from herald.infra.clock import SystemClock

    store = open_event_store(settings, SystemClock())
    if args.stream:
        found = iter(store.read_stream(args.stream, args.after + 1))
    else:
        found = store.read_all(args.after + 1)
    out = sys.stdout.buffer
    shown = 0
    for event in found:
        if args.type and event.type != args.type:
            continue
        out.write(dumps(event_json(event)) + b"\n")
        shown += 1
        if shown >= args.limit:
            break
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
