"""What the benchmarks share: temp dirs, servers on loopback, the catalog they run against, result lines.

A benchmark's servers are child processes on a free 127.0.0.1 port. They are
stopped (SIGTERM, then SIGKILL) when the `with` block ends, however it ends;
on Linux they also get SIGTERM if the benchmark itself is killed, so nothing
outlives a run. The catalog (one profile database, one resource) is written
through the domain commands into the data directory before the server
starts, since the server and the setup share the SQLite files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

# Measure the tree these files sit in, whatever `herald` pip has installed from
# elsewhere; the benchmarks import `common` before `herald`, and servers get the
# same path.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from herald.api.wiring import Herald as Herald  # noqa: E402  (re-exported for the benchmarks' type hints)
from herald.api.wiring import build  # noqa: E402
from herald.domain.databases import CreateDatabase, database_decider, database_stream  # noqa: E402
from herald.domain.fields import FieldDefinition, FieldType  # noqa: E402
from herald.domain.resources import (  # noqa: E402
    CreateResource,
    EmailSettings,
    ResourceSettings,
    resource_decider,
    resource_stream,
)
from herald.infra.config import Settings  # noqa: E402
from herald.services.aggregates import CommandContext  # noqa: E402

HOST = "127.0.0.1"
TOKEN = "bench-admin-token"
DATABASE_ID = "1"
RESOURCE_ID = "7"
# The custom fields the benchmark profiles carry besides the standard ones.
CUSTOM_FIELDS = (
    FieldDefinition(name="plan", title="Plan", type=FieldType.STRING),
    FieldDefinition(name="points", title="Loyalty points", type=FieldType.INT),
)
_PR_SET_PDEATHSIG = 1


def machine() -> str:
    """One line naming the CPU, the core count, the Python that ran the benchmark and the load now."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = "/".join(f"{figure:.2f}" for figure in os.getloadavg())
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}, load {load}"


def report(name: str, rate: float, unit: str, baseline: float | None = None) -> None:
    """Print `name: X unit/s (baseline Y unit/s, ratio R)`."""
    line = f"{name}: {rate:,.0f} {unit}/s"
    if baseline is not None:
        line += f" (baseline {baseline:,.0f} {unit}/s, ratio {rate / baseline:.2f})"
    print(line, flush=True)


def timed(work: Callable[[], object]) -> float:
    """Seconds `work()` took."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


@contextlib.contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A scratch directory, removed afterwards even when the benchmark fails."""
    with tempfile.TemporaryDirectory(prefix=f"herald-{prefix}-", ignore_cleanup_errors=True) as path:
        yield Path(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def run(main: Callable[[], None]) -> None:
    """Run a benchmark's main so that SIGTERM, like Ctrl-C, unwinds the `with` blocks that clean up."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask Linux to SIGTERM it when the benchmark dies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def server(argv: Sequence[str], port: int, log: Path, **options: Any) -> Iterator[str]:
    """Start `argv` (a server listening on `port`), wait for its health URL to answer 200, yield its base
    URL (`options`: `env`, `health`, `timeout` as `server_process` takes them)."""
    with server_process(argv, port, log, **options) as (base, _):
        yield base


@contextlib.contextmanager
def server_process(
    argv: Sequence[str],
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    health: str = "/api/v1/health",
    timeout: float = 60.0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As `server`, yielding the process too (to watch its memory and files)."""
    base = f"http://{HOST}:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                **(env or {}),
            },
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    try:
        _wait_healthy(process, base + health, log, timeout)
        yield base, process
    except Exception:
        # The log goes with the temp dir: show why the server failed before both are gone.
        alive = "running" if process.poll() is None else f"exited with {process.returncode}"
        print(f"server {alive}; its log ends:\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        _stop(process)


def _wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def herald_server(data_dir: Path) -> contextlib.AbstractContextManager[str]:
    """`herald serve` over `data_dir` (API and processors in one process), the admin token `TOKEN`."""
    port = free_port()
    return server(_serve_argv(data_dir, port), port, data_dir.parent / f"herald-serve-{port}.log", env=_ENV)


def herald_server_process(
    data_dir: Path, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen[bytes]]]:
    """As `herald_server`, yielding the process too; `env` adds to the server's environment."""
    port = free_port()
    log = data_dir.parent / f"herald-serve-{port}.log"
    return server_process(_serve_argv(data_dir, port), port, log, env={**_ENV, **(env or {})})


_ENV = {"HERALD_ADMIN_TOKEN": TOKEN}


def _serve_argv(data_dir: Path, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "herald.api.cli",
        "--data-dir",
        str(data_dir),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
    ]


def client(base: str, timeout: float = 300.0) -> httpx.Client:
    """A keep-alive client with the admin token and JSON content type."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    return httpx.Client(base_url=base, headers=headers, timeout=timeout)


def wait_for_processors(http: httpx.Client, timeout: float = 600.0) -> float:
    """Seconds until every processor of the server has caught up with the log's head."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        body = http.get("/api/v1/processors").raise_for_status().json()
        if all(p["lag"] == 0 for p in body["processors"].values()):
            return time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError(f"processors still lag after {timeout:.0f} s")


@contextlib.contextmanager
def herald_in_process(data_dir: Path) -> Iterator[Herald]:
    """Herald wired in this process over `data_dir`; closed (files released) afterwards."""
    herald = build(Settings(data_dir=data_dir, admin_token=TOKEN, reports_engine="off"))
    try:
        yield herald
    finally:
        herald.close()


def create_catalog(herald: Herald) -> None:
    """The profile database (standard fields and `CUSTOM_FIELDS`) and an email resource, by commands."""
    context = CommandContext(actor="bench", source="bench")
    now = herald.clock.now()
    herald.aggregates.execute(
        database_decider,
        database_stream(DATABASE_ID),
        CreateDatabase(DATABASE_ID, "Customers", now, custom_fields=CUSTOM_FIELDS),
        context,
    )
    settings = ResourceSettings(
        name="News",
        database_ids=(DATABASE_ID,),
        source_urls=("https://shop.example.com",),
        default_tracking_domain="trk.example.com",
    )
    email = EmailSettings(from_name="Shop", from_email="news@example.com", list_id="news.example.com")
    create = CreateResource(RESOURCE_ID, "rt", settings, (email,))
    herald.aggregates.execute(resource_decider, resource_stream(RESOURCE_ID), create, context)


def email(n: int) -> str:
    return f"user{n}@example.org"


def profile_row(n: int, generation: int, subscribe: bool = False) -> dict[str, Any]:
    """The n-th benchmark profile as an import row; a later `generation` changes three of its fields."""
    row: dict[str, Any] = {
        "email": email(n),
        "_fname": f"Anna{n}",
        "_lname": "Ivanova",
        "_city": ("Moscow", "Kazan", "Perm")[(n + generation) % 3],
        "plan": ("basic", "plus", "pro")[(n + generation) % 3],
        "points": n % 1000 + generation,
    }
    if subscribe:
        row["subscriptions"] = [{"resource_id": RESOURCE_ID, "channel": "email", "email": email(n)}]
    return row


def subscribed_profiles(herald: Herald, count: int, batch: int = 10_000) -> None:
    """`count` profiles subscribed to the resource's email channel, imported and projected."""
    from herald.services.profiles import ImportOptions

    context = CommandContext(actor="bench", source="bench")
    for start in range(0, count, batch):
        rows = [profile_row(n, 0, subscribe=True) for n in range(start, min(start + batch, count))]
        herald.profiles.import_rows(DATABASE_ID, rows, ImportOptions(), context)
    herald.runtime.drain()


def broadcast(herald: Herald, html: str, subject: str = "{lead._fname}, our spring sale") -> str:
    """A broadcast of one email template with `html` to the whole database; returns its id (not launched)."""
    from herald.domain import campaigns as cp
    from herald.domain import templates as tp

    context = CommandContext(actor="bench", source="bench")
    content = tp.TemplateContent(email=tp.EmailContent(subject=subject, html=html))
    template_id, _ = herald.templates.create_template(tp.TemplateCard(name="Spring"), content, False, context)
    settings = cp.CampaignSettings(
        name="Spring",
        type=cp.CampaignType.BROADCAST,
        channel="email",
        resource_id=RESOURCE_ID,
        template_ids=(template_id,),
        audience=cp.Audience(id=DATABASE_ID),
    )
    herald.runtime.drain()
    campaign_id, _ = herald.campaigns.create(settings, context)
    return str(campaign_id)
