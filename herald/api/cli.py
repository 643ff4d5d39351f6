"""The `herald` command: serve, replay, events, openapi."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from herald.infra.config import Settings, settings_from_env
from herald.infra.serialization import dumps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herald", description="Herald customer data and messaging platform")
    parser.add_argument("--data-dir", help="where Herald keeps all its data (env HERALD_DATA_DIR)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API and the processors (embedded, one directory)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    replay = commands.add_parser("replay", help="rebuild every projection from the log, comparing checksums")
    replay.add_argument("--check", action="store_true", help="compare only; keep the live read models")

    events = commands.add_parser("events", help="print the log as JSON lines")
    events.add_argument("--after", type=int, default=0, help="start after this global position")
    events.add_argument("--limit", type=int, default=100)
    events.add_argument("--stream", help="one stream instead of the global log")
    events.add_argument("--type", help="only events of this type")

    commands.add_parser("openapi", help="print the OpenAPI document")

    args = parser.parse_args(argv)
    if args.command == "openapi":
        from herald.api.app import openapi

        sys.stdout.buffer.write(dumps(openapi()) + b"\n")
        return 0
    settings = settings_from_env(
        data_dir=args.data_dir, host=getattr(args, "host", None), port=getattr(args, "port", None)
    )
    if args.command == "serve":
        return _serve(settings)
    if args.command == "replay":
        from herald.api.replay import replay as run_replay

        return run_replay(settings, keep_live=args.check)
    return _events(settings, args)


def _serve(settings: Settings) -> int:
    import uvicorn

    from herald.api.app import create_app
    from herald.api.wiring import build

    herald = build(settings)
    token_file = Path(settings.data_dir) / "admin-token"
    where = "HERALD_ADMIN_TOKEN" if settings.admin_token else str(token_file)
    print(
        f"Herald on http://{settings.host}:{settings.port}  data: {settings.data_dir}  admin token: {where}",
        flush=True,
    )
    uvicorn.run(create_app(herald), host=settings.host, port=settings.port, log_level="warning")
    herald.close()
    return 0


def _events(settings: Settings, args: argparse.Namespace) -> int:
    from herald.api.routes.events import event_json
    from herald.infra.clock import SystemClock
    from herald.infra.sqlite_event_store import SqliteEventStore

    store = SqliteEventStore(settings.event_store_path, SystemClock())
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
