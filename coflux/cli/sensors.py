"""``coflux sensors``: start a sensor (kept running by the orchestrator), stop it."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import (
    EnvOption,
    JsonOption,
    ProjectOption,
    ServerOption,
    check_target,
    config,
    console,
    print_json,
)
from .runs import Args, Module

app = typer.Typer(
    help="Sensors: long-running targets.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("start")
def start(
    module: Module,
    target: Annotated[str, typer.Argument(help="The sensor to start.")],
    arguments: Args = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    json: JsonOption = False,
) -> None:
    """Start a sensor; the orchestrator restarts it from its last checkpoint until stopped.

    Example:  coflux sensors start feeds.py watch_feed '"https://example.com/feed"'
    """
    from ..execution.loader import repository_name
    from ..local.connection import open_client
    from ..local.runs import serialize_arguments

    cfg = config(server, project, env)
    arguments = arguments or []
    repository = repository_name(module)
    with open_client(cfg) as client:
        check_target(client, cfg.environment, repository, target, len(arguments), "sensor")
        started = client.submit(
            cfg.environment, repository, target, serialize_arguments(client, arguments)
        )
    if json:
        print_json(started)
    else:
        console().print(f"Sensor [bold]{started['id']}[/bold] started\n{started['url']}")


@app.command("stop")
def stop(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The sensor's run ID.")],
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Stop a sensor (its run is cancelled, and it is not restarted).

    Example:  coflux sensors stop 7K2QF9XH3M
    """
    from ..local.connection import open_client
    from ..records.references import parse_reference, run_of

    run_key = run_of(parse_reference(run_id))
    with open_client(config(server, project, derive=False)) as client:
        result = client.cancel(run_key)
    if json:
        print_json(result)
    else:
        console().print(f"Stopped sensor {run_key}")
