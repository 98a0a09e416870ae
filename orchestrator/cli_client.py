"""``orchestrator orders|charts|cluster ...``: the HTTP API from a shell.

Every command but ``charts check`` talks to a running server through the Python client
(``orchestrator.client``), so the CLI and the client cannot disagree. ``--url`` and
``--token`` (ORCHESTRATOR_URL, ORCHESTRATOR_API_TOKEN) say where and as whom; output is a
human table unless ``--json``, which prints the server's JSON as it came. A problem is
printed on stderr as its title and detail, and the exit code tells its class:

    0  done
    1  the server failed (5xx) or could not be reached
    2  usage: a bad option, or a request the server found malformed (400, 413, 415, 422);
       ``charts check``: a broken chart
    3  not found (404)
    4  refused: not allowed in the order's state, or its version moved on (409, 412)
    5  unauthorized or forbidden (401, 403)
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from orchestrator.charts import load_charts
from orchestrator.client import (
    DEFAULT_URL,
    ChartState,
    ChartSummary,
    Client,
    ClientError,
    ClusterStatus,
    HistoryEntry,
    Order,
    ProblemError,
    Update,
)
from orchestrator.errors import ChartError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_DENIED = 5
EXIT_BY_STATUS = {
    400: EXIT_USAGE,
    413: EXIT_USAGE,
    415: EXIT_USAGE,
    422: EXIT_USAGE,
    404: EXIT_NOT_FOUND,
    409: EXIT_REFUSED,
    412: EXIT_REFUSED,
    401: EXIT_DENIED,
    403: EXIT_DENIED,
}


def server_options(command: F) -> F:
    """--url, --token and --json, on every command that talks to a server."""
    command = click.option(
        "--json", "as_json", is_flag=True, help="Print the server's JSON instead of a table."
    )(command)
    command = click.option(
        "--token",
        envvar="ORCHESTRATOR_API_TOKEN",
        default=None,
        help="The server's API token (prefer ORCHESTRATOR_API_TOKEN).",
    )(command)
    return click.option(
        "--url",
        envvar="ORCHESTRATOR_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The server's base URL (ORCHESTRATOR_URL).",
    )(command)


def json_object(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param=param) from exc
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param=param)
    return data


def failure(exc: ClientError) -> tuple[str, int]:
    """The line to print for a problem or a connection failure, and the exit code."""
    if not isinstance(exc, ProblemError):
        return str(exc), EXIT_FAILED
    message = f"{exc.title}: {exc.detail}" if exc.detail else exc.title
    hints = [
        f"{name}: {value}"
        for name, value in (
            ("field", exc.field),
            ("allowed", exc.allowed),
            ("version", exc.version),
        )
        if value is not None
    ]
    if hints:
        message += f" ({'; '.join(hints)})"
    code = EXIT_BY_STATUS.get(exc.status, EXIT_FAILED if exc.status >= 500 else EXIT_USAGE)
    return message, code


def client(url: str, token: str | None) -> Client:
    return Client(url, token=token)


def emit(as_json: bool, raw: object, human: Callable[[], Iterable[str]]) -> None:
    if as_json:
        click.echo(json.dumps(raw))
    else:
        for line in human():
            click.echo(line)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def order_lines(order: Order) -> list[str]:
    return [
        f"id:       {order.id}",
        f"chart:    {order.chart}",
        f"state:    {order.state}",
        f"status:   {order.status}",
        f"version:  {order.version}",
        f"next:     {', '.join(order.next_events) or '-'}",
        f"created:  {order.created_at.isoformat()}",
        f"updated:  {order.updated_at.isoformat()}",
        f"context:  {json.dumps(order.context)}",
    ]


def entry_row(entry: HistoryEntry) -> list[str]:
    return [
        str(entry.version),
        entry.type,
        f"{entry.state_before or '-'} -> {entry.state_after}",
        entry.at.isoformat(),
        json.dumps(entry.data),
    ]


HISTORY_HEADER = ["VERSION", "EVENT", "STATES", "AT", "DATA"]


def update_line(update: Update) -> str:
    order = update.order
    if update.event is None:
        return f"{update.version}  {order.state}  (current)"
    before = update.event.state_before or "-"
    return f"{update.version}  {update.event.type}  {before} -> {order.state}"


@click.group()
def orders() -> None:
    """Create, read, list, command and watch orders on a running server."""


@orders.command(name="list")
@click.option("--state", default=None, help="Only orders in this state (a leaf state id).")
@click.option("--chart", default=None, help="Only orders of this chart.")
@click.option("--limit", type=click.IntRange(1, 500), default=None, help="Orders per page.")
@click.option("--cursor", default=None, help="The page after the one that printed it.")
@server_options
def list_orders(
    url: str, token: str | None, as_json: bool, state: str | None, chart: str | None,
    limit: int | None, cursor: str | None,
) -> None:  # fmt: skip
    """List orders, newest first."""
    with guarded(), client(url, token) as api:
        page = api.orders(state=state, chart=chart, limit=limit, cursor=cursor)
    raw = {"orders": [o.raw for o in page.orders], "nextCursor": page.next_cursor}
    rows = [[o.id, o.chart, o.state, str(o.version), o.updated_at.isoformat()] for o in page.orders]
    emit(as_json, raw, lambda: table(["ID", "CHART", "STATE", "VERSION", "UPDATED"], rows))
    if not as_json and page.next_cursor is not None:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@orders.command(name="get")
@click.argument("order_id")
@server_options
def get_order(url: str, token: str | None, as_json: bool, order_id: str) -> None:
    """Show an order."""
    with guarded(), client(url, token) as api:
        order = api.get(order_id)
    emit(as_json, order.raw, lambda: order_lines(order))


@orders.command(name="history")
@click.argument("order_id")
@click.option("--after", type=click.IntRange(0), default=0, help="Only events after this version.")
@server_options
def order_history(url: str, token: str | None, as_json: bool, order_id: str, after: int) -> None:
    """Show the events an order took, oldest first."""
    with guarded(), client(url, token) as api:
        entries = api.history(order_id, after=after)
    raw = {"id": order_id, "entries": [e.raw for e in entries]}
    emit(as_json, raw, lambda: table(HISTORY_HEADER, [entry_row(e) for e in entries]))


@orders.command(name="send")
@click.argument("order_id")
@click.argument("event_type", metavar="TYPE")
@click.option("--data", callback=json_object, default=None, help="The event's data, a JSON object.")
@click.option("--key", default=None, help="Idempotency-Key [default: a new one].")
@click.option("--if-match", type=click.IntRange(0), default=None, help="Only at this version.")
@server_options
def send_event(
    url: str, token: str | None, as_json: bool, order_id: str, event_type: str,
    data: dict[str, Any] | None, key: str | None, if_match: int | None,
) -> None:  # fmt: skip
    """Send an event to an order, and show the order after it."""
    with guarded(), client(url, token) as api:
        order = api.send(order_id, event_type, data, key=key, if_match=if_match)
    emit(as_json, order.raw, lambda: order_lines(order))


@orders.command(name="create")
@click.option("--chart", default=None, help="The order's chart [default: the server's].")
@click.option(
    "--data", callback=json_object, required=True, help="The chart's create fields, a JSON object."
)
@click.option("--key", default=None, help="Idempotency-Key [default: a new one].")
@server_options
def create_order(
    url: str, token: str | None, as_json: bool, chart: str | None, data: dict[str, Any],
    key: str | None,
) -> None:  # fmt: skip
    """Create an order, and show it."""
    with guarded(), client(url, token) as api:
        order = api.create(data, chart=chart, key=key)
    emit(as_json, order.raw, lambda: order_lines(order))


@orders.command(name="watch")
@click.argument("order_id")
@click.option(
    "--after", type=click.IntRange(0), default=None, help="Replay the events after this version."
)
@click.option("--count", type=click.IntRange(1), default=None, help="Stop after this many.")
@server_options
def watch_order(
    url: str, token: str | None, as_json: bool, order_id: str, after: int | None,
    count: int | None,
) -> None:  # fmt: skip
    """Print an order's updates as they happen (one line each), until Ctrl-C or --count;
    a lost connection is resumed from the last version printed."""
    seen = 0
    with guarded(), client(url, token) as api:
        for update in api.watch(order_id, after=after):
            if as_json:
                event = None if update.event is None else update.event.raw
                body = {"version": update.version, "event": event, "view": update.order.raw}
                click.echo(json.dumps(body))
            else:
                click.echo(update_line(update))
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return


@click.group()
def charts() -> None:
    """Look at a server's charts, or check a directory of charts without serving it."""


@charts.command(name="list")
@server_options
def list_charts(url: str, token: str | None, as_json: bool) -> None:
    """List the server's charts; * marks the default."""
    with guarded(), client(url, token) as api:
        found = api.charts()
    raw = {"charts": found.names, "default": found.default}
    emit(as_json, raw, lambda: [f"{n} *" if n == found.default else n for n in found.names])


@charts.command(name="show")
@click.argument("name")
@server_options
def show_chart(url: str, token: str | None, as_json: bool, name: str) -> None:
    """Show a chart's create fields, states and transitions."""
    with guarded(), client(url, token) as api:
        chart = api.chart(name)
    emit(as_json, chart.raw, lambda: chart_lines(chart))


def chart_lines(chart: ChartSummary) -> list[str]:
    fields = ", ".join(f"{n} ({kind})" for n, kind in chart.create_fields.items()) or "-"
    lines = [
        f"chart:          {chart.name}",
        f"create fields:  {fields}" if chart.creatable else "create fields:  (not creatable)",
        f"service events: {', '.join(chart.service_events) or '-'}",
        "states:",
    ]
    lines += state_lines(chart.states, "  ")
    lines.append("transitions:")
    for t in chart.transitions:
        event = t.event or "(eventless)"
        target = t.target or "(in place)"
        lines.append(f"  {t.source} --{event}--> {target}")
    return lines


def state_lines(states: list[ChartState], indent: str) -> list[str]:
    lines = []
    for state in states:
        marks = [
            mark
            for mark, on in (
                ("initial", state.initial), ("final", state.final), ("parallel", state.parallel),
                (f"history: {state.history}", state.history is not None),
            )
            if on
        ]  # fmt: skip
        lines.append(f"{indent}{state.id}" + (f" ({', '.join(marks)})" if marks else ""))
        lines += state_lines(state.children, indent + "  ")
    return lines


@charts.command(name="check")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
def check_charts(directory: Path) -> None:
    """Load and validate a directory of charts as `serve --charts` would, without serving:
    exit 2 naming the file, line and state of the first flaw."""
    try:
        loaded = load_charts(directory)
    except ChartError as exc:
        click.echo(f"Error: {exc.detail}", err=True)
        raise SystemExit(EXIT_USAGE) from exc
    click.echo(f"ok: {len(loaded)} chart(s) in {directory}: {', '.join(sorted(loaded))}")


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Turns the client's errors into a one-line message on stderr and the exit code of
    their class."""
    try:
        yield
    except ClientError as exc:
        message, code = failure(exc)
        click.echo(f"Error: {message}", err=True)
        raise SystemExit(code) from exc
    except KeyboardInterrupt:
        raise SystemExit(130) from None


@click.group()
def cluster() -> None:
    """Look at a cluster of servers on one PostgreSQL."""


@cluster.command(name="status")
@server_options
def cluster_status(url: str, token: str | None, as_json: bool) -> None:
    """The members, the shards each holds, and the leases' epochs and ages."""
    with guarded(), client(url, token) as api:
        found = api.cluster()
    emit(as_json, found.raw, lambda: cluster_lines(found))


def cluster_lines(status: ClusterStatus) -> list[str]:
    owned: dict[str, int] = {}
    epochs: dict[str, int] = {}
    expiring: dict[str, float] = {}
    unowned = 0
    for lease in status.shards:
        if lease.owner is None:
            unowned += 1
            continue
        owned[lease.owner] = owned.get(lease.owner, 0) + 1
        epochs[lease.owner] = max(epochs.get(lease.owner, 0), lease.epoch)
        left = lease.expires_in if lease.expires_in is not None else 0.0
        expiring[lease.owner] = min(expiring.get(lease.owner, left), left)
    rows = [
        [
            m.address,
            "live" if m.live else "gone",
            f"{m.heartbeat_seconds_ago:.1f}s",
            str(owned.get(m.node, 0)),
            str(epochs.get(m.node, "-")),
            f"{expiring[m.node]:.1f}s" if m.node in expiring else "-",
            m.shards or "-",
        ]
        for m in status.members
    ]
    header = ["NODE", "STATE", "HEARTBEAT", "SHARDS", "MAX EPOCH", "LEASE LEFT", "WHICH"]
    lines = table(header, rows)
    summary = f"{status.shard_count} shards, {unowned} without an owner"
    lines.append(f"{summary}; leases last {status.lease_ttl:g}s")
    return lines


COMMANDS = (orders, charts, cluster)
