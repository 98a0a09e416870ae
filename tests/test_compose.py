"""``compose.yaml``: the RabbitMQ way to run it, on PostgreSQL, checked against the package.

Docker cannot run on the machine these tests run on, so the compose file is never started
here and nothing below proves that the stack comes up. What is checked instead is what a
``docker compose up`` would trip over first, statically:

* every service's command is a real entry point of the package, and its ``--help`` lists
  every flag the compose file passes (``orchestrator <subcommand> --help`` through the
  console script beside ``sys.executable``, ``python -m services.X --help`` with
  ``sys.executable``), so a misspelt or removed flag fails here;
* every service that talks to the broker points at the ``rabbitmq`` service and waits for
  it to be healthy, and that service has the healthcheck the condition needs;
* the orchestrator keeps its orders in the ``postgres`` service (``--store``, a database
  and user that service creates) and waits for it to be healthy; that service has a
  healthcheck and keeps its data on a named volume;
* each stateful service keeps its ``--db`` or ``--ledger`` file on a named volume mounted at
  that file's directory, and every named volume is declared;
* the orchestrator listens on all interfaces at the port it publishes, and the three Python
  services share one image built from the ``Dockerfile``, whose context keeps what
  ``pip install .`` needs.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
BROKER_SERVICE = "rabbitmq"
BROKER_HEALTHCHECK = ["rabbitmq-diagnostics", "-q", "ping"]
STORE_SERVICE = "postgres"
# Where the official image keeps its data.
STORE_DATA = "/var/lib/postgresql/data"
# The flags that name a service's SQLite file; its directory must be a volume.
STATE_FLAGS = ("--db", "--ledger")
# What ``pip install .`` reads from the build context (pyproject.toml names the readme and
# the licence files).
BUILD_INPUTS = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "orchestrator",
    "services",
    "statecharts",
)
EXPECTED_ENTRY_POINTS = {
    "orchestrator": ["orchestrator", "serve"],
    "kitchen": ["python", "-m", "services.kitchen"],
    "delivery": ["python", "-m", "services.delivery"],
}


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict), "compose.yaml is not a mapping"
    return document


COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE.get("services") or {}
# The services that run the package: every one with a command of its own.
PYTHON_SERVICES = sorted(name for name, spec in SERVICES.items() if "command" in spec)


def command_of(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"{service}: command is neither a string nor a list"
    return [str(part) for part in command]


def flags_of(argv: list[str]) -> list[str]:
    """The long options passed, ``--flag value`` and ``--flag=value`` alike."""
    return [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]


def option(argv: list[str], flag: str) -> str | None:
    """The value given to ``flag``, or None when it is not passed."""
    for index, arg in enumerate(argv):
        if arg == flag:
            assert index + 1 < len(argv), f"{flag} has no value in {argv}"
            return argv[index + 1]
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


def help_command(argv: list[str]) -> list[str]:
    """The ``--help`` invocation of the entry point that ``argv`` starts with."""
    if argv[0] == "orchestrator":
        assert len(argv) > 1 and not argv[1].startswith("-"), f"no subcommand in {argv}"
        script = Path(sys.executable).parent / "orchestrator"
        assert script.is_file(), f"no orchestrator console script beside {sys.executable}"
        return [str(script), argv[1], "--help"]
    if argv[:2] == ["python", "-m"] and len(argv) > 2:
        return [sys.executable, "-m", argv[2], "--help"]
    pytest.fail(f"not an entry point of the package: {argv}")


def named_volumes(service: str) -> dict[str, str]:
    """Mount target -> volume name, for the named volumes ``service`` mounts."""
    mounts: dict[str, str] = {}
    for entry in SERVICES[service].get("volumes") or []:
        if isinstance(entry, str):
            source, _, rest = entry.partition(":")
            target = rest.split(":", 1)[0]
            kind = "bind" if source.startswith(("/", ".", "~")) or not rest else "volume"
        else:
            source, target = str(entry.get("source", "")), str(entry["target"])
            kind = str(entry.get("type", "volume"))
        if kind == "volume" and source:
            mounts[str(PurePosixPath(target))] = source
    return mounts


def container_ports(service: str) -> set[int]:
    """The container side of every port ``service`` publishes."""
    ports: set[int] = set()
    for entry in SERVICES[service].get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/", 1)[0]))
    return ports


def test_the_services_are_the_broker_and_the_three_entry_points() -> None:
    assert set(SERVICES) == {BROKER_SERVICE, STORE_SERVICE, *EXPECTED_ENTRY_POINTS}
    assert PYTHON_SERVICES == sorted(EXPECTED_ENTRY_POINTS)
    for service, entry_point in EXPECTED_ENTRY_POINTS.items():
        argv = command_of(service)
        assert argv[: len(entry_point)] == entry_point, f"{service}: {argv}"


@pytest.mark.parametrize("service", PYTHON_SERVICES)
def test_every_flag_is_in_the_entry_points_help(service: str) -> None:
    argv = command_of(service)
    result = subprocess.run(
        help_command(argv), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{service}: {argv[:3]} --help failed:\n{result.stderr}"
    assert "Usage:" in result.stdout
    passed = flags_of(argv)
    assert passed, f"{service} passes no flags: {argv}"
    missing = [
        flag
        for flag in passed
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", result.stdout)
    ]
    assert not missing, f"{service}: {missing} not in the help of {argv[:3]}:\n{result.stdout}"


@pytest.mark.parametrize("service", PYTHON_SERVICES)
def test_a_service_that_exits_is_restarted(service: str) -> None:
    """Each exits when RabbitMQ cannot be reached at start (the broker may still be
    restarting); the restart policy brings it back."""
    assert SERVICES[service].get("restart") in ("unless-stopped", "always", "on-failure")


@pytest.mark.parametrize("service", PYTHON_SERVICES)
def test_the_broker_is_the_rabbitmq_service_once_healthy(service: str) -> None:
    url = option(command_of(service), "--broker")
    assert url is not None, f"{service} does not talk to the broker"
    parts = urlsplit(url)
    assert parts.scheme in ("amqp", "amqps"), f"{service}: {url}"
    assert parts.hostname == BROKER_SERVICE, f"{service}: {url}"
    assert parts.port in (None, 5672), f"{service}: {url}"
    depends_on = SERVICES[service].get("depends_on")
    assert isinstance(depends_on, dict), f"{service}: depends_on needs a condition"
    assert depends_on.get(BROKER_SERVICE, {}).get("condition") == "service_healthy"


def healthcheck_of(service: str) -> list[str]:
    """The argv of ``service``'s healthcheck, which must be enabled."""
    healthcheck = SERVICES[service].get("healthcheck") or {}
    assert not healthcheck.get("disable", False), f"{service}: healthcheck disabled"
    test = healthcheck.get("test")
    if isinstance(test, str):
        return shlex.split(test)
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
    return [str(arg) for arg in test[1:]] if test[0] == "CMD" else shlex.split(test[1])


def test_the_broker_has_the_healthcheck_the_others_wait_for() -> None:
    broker = SERVICES[BROKER_SERVICE]
    assert broker["image"] == "rabbitmq:3-management"
    assert {5672, 15672} <= container_ports(BROKER_SERVICE)
    assert healthcheck_of(BROKER_SERVICE) == BROKER_HEALTHCHECK


def test_the_orders_are_in_the_postgres_service_once_healthy() -> None:
    """``--store`` names the database and user the postgres service creates, on that
    service's host and port; the orchestrator waits for its healthcheck, which asks that
    same database; its data is on a named volume."""
    url = option(command_of("orchestrator"), "--store")
    assert url is not None, "the orchestrator keeps its orders in SQLite"
    parts = urlsplit(url)
    assert parts.scheme in ("postgresql", "postgres"), url
    assert parts.hostname == STORE_SERVICE and parts.port in (None, 5432), url
    store = SERVICES[STORE_SERVICE]
    assert str(store["image"]).startswith("postgres:")
    environment = store.get("environment") or {}
    assert parts.username == environment.get("POSTGRES_USER"), url
    assert parts.path == f"/{environment.get('POSTGRES_DB')}", url
    # The password is the service's, as compose interpolates both from one variable.
    assert parts.password == environment.get("POSTGRES_PASSWORD"), url
    depends_on = SERVICES["orchestrator"].get("depends_on") or {}
    assert depends_on.get(STORE_SERVICE, {}).get("condition") == "service_healthy"
    argv = healthcheck_of(STORE_SERVICE)
    assert argv[0] == "pg_isready" and option(argv, "-d") == environment.get("POSTGRES_DB")
    assert STORE_DATA in named_volumes(STORE_SERVICE)


@pytest.mark.parametrize("service", PYTHON_SERVICES)
def test_the_state_file_is_on_a_named_volume(service: str) -> None:
    argv = command_of(service)
    paths = [value for flag in STATE_FLAGS if (value := option(argv, flag)) is not None]
    assert len(paths) == 1, f"{service} names no state file, or several: {argv}"
    path = PurePosixPath(paths[0])
    assert path.is_absolute(), f"{service}: {path} would land in the working directory"
    mounts = named_volumes(service)
    assert str(path.parent) in mounts, f"{service}: no named volume at {path.parent}"


def test_each_state_file_has_its_own_volume() -> None:
    owners: dict[str, str] = {}
    for service in PYTHON_SERVICES:
        for volume in named_volumes(service).values():
            assert volume not in owners, f"{service} shares volume {volume} with {owners[volume]}"
            owners[volume] = service


def test_every_named_volume_is_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    used = {volume for service in SERVICES for volume in named_volumes(service).values()}
    assert used, "no service mounts a named volume"
    assert used <= declared, f"undeclared volumes: {sorted(used - declared)}"


def test_the_orchestrator_listens_where_it_is_published() -> None:
    argv = command_of("orchestrator")
    assert option(argv, "--host") == "0.0.0.0"
    port = option(argv, "--port")
    assert port is not None and int(port) in container_ports("orchestrator")


def test_the_python_services_share_one_image_built_here() -> None:
    images = {SERVICES[service].get("image") for service in PYTHON_SERVICES}
    assert len(images) == 1 and None not in images, images
    for service in PYTHON_SERVICES:
        build = SERVICES[service].get("build")
        if isinstance(build, str):
            build = {"context": build}
        assert isinstance(build, dict) and "context" in build, f"{service} is not built here"
        context, dockerfile = build["context"], build.get("dockerfile", "Dockerfile")
        assert (ROOT / context).resolve() == ROOT, f"{service}: context {context}"
        assert (ROOT / dockerfile).is_file(), f"{service}: no {dockerfile}"


def test_the_build_context_keeps_what_pip_install_needs() -> None:
    """``.dockerignore`` (later patterns win, ``!`` re-includes) leaves the build inputs."""
    ignore = ROOT / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for name in BUILD_INPUTS:
        assert (ROOT / name).exists(), name
        excluded = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            glob = pattern.lstrip("!").strip("/").removeprefix("**/")
            if fnmatch.fnmatchcase(name, glob):
                excluded = not negated
        assert not excluded, f".dockerignore excludes {name}"
