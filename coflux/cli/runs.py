"""Runs: ``run``, ``submit``, ``runs list/show``, ``rerun``, ``cancel`` (``logs``: ``logs.py``)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .common import (
    EnvOption,
    JsonOption,
    NoQueueOption,
    ProjectOption,
    ServerOption,
    check_target,
    config,
    console,
    err_console,
    print_json,
    report_queued,
    say_stale,
    to_stderr,
)

runs_app = typer.Typer(help="Runs of an environment.", no_args_is_help=True, rich_markup_mode=None)

Module = Annotated[str, typer.Argument(help="Dotted module name or path to a .py file.")]
TargetArg = Annotated[str, typer.Argument(help="The workflow to run.")]
Args = Annotated[
    list[str] | None,
    typer.Argument(
        help="Arguments: JSON where they parse as JSON, plain strings otherwise.",
        show_default=False,
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Follow the run live; exit 1 unless it succeeds.")
]


def _follow(
    client: Any,
    run_id: str,
    json: bool,
    view: str | None,
    step: int | None = None,
    execution_id: str | None = None,
    cfg: Any = None,
) -> int:
    """Wait for a run, or one step of it (live tree on a terminal); print it as
    ``view`` sees it (and keep it in ``cfg``'s mirror, to show again offline);
    return the exit code: 0 if it (or ``execution_id``) succeeded, else 1."""
    from ..local.runs import execution_state, run_document, wait_for_run
    from .render import run_tree

    if json or not console().is_terminal or step not in (None, 1):
        run = wait_for_run(client, run_id, step=step, view=view, notify=to_stderr)
    else:
        from rich.live import Live

        with Live(console=console(), refresh_per_second=8, transient=True) as live:
            run = wait_for_run(
                client,
                run_id,
                lambda r: live.update(run_tree(run_document(client, r))),
                view=view,
                notify=live.console.print,
            )
    document = run_document(client, run)
    if cfg is not None:
        from ..local import mirror

        mirror.save_run(cfg, document)
    if json:
        print_json(document)
    else:
        _print_outcome(document)
    if execution_id is not None:
        state = execution_state(client, run_id, document, execution_id)
        return 0 if state in ("succeeded", "cached") else 1
    return 0 if document["state"] == "succeeded" else 1


def _print_outcome(document: dict[str, Any]) -> None:
    from rich.markup import escape

    from .render import resolved, run_tree

    out = console()
    out.print(run_tree(document))
    initial = document["steps"][0]["executions"][-1] if document["steps"] else None
    if document["state"] == "succeeded":
        out.print(f"[green]Result:[/green] {escape(resolved(document))}")
    elif initial and initial["error"]:
        error = initial["error"]
        out.print(f"[red]{error['type']}: {error['message']}[/red]")
    out.print(f"[dim]{document['url']}[/dim]")


def run(
    module: Module,
    target: TargetArg,
    arguments: Args = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    json: JsonOption = False,
) -> None:
    """Run a workflow to completion with an agent in this process; print the result.

    Registers the module first.

    With no server configured, everything runs on the embedded server in .coflux/.

    Example:  coflux run hello.py greet Joe
    """
    import threading

    from ..execution.loader import repository_name
    from ..local.agent import Agent
    from ..local.connection import open_client
    from ..local.registration import register_modules
    from ..local.runs import serialize_arguments

    cfg = config(server, project, env)
    arguments = arguments or []
    with open_client(cfg) as client:
        register_modules(client, cfg.environment, [module])
        repository = repository_name(module)
        check_target(client, cfg.environment, repository, target, len(arguments))
        values = serialize_arguments(client, arguments)
        agent = Agent(
            client.addresses,
            cfg.project,
            cfg.environment,
            [module],
            cfg.concurrency,
            cfg.data_dir / "cas",
            token=cfg.token,
            # The configured tags (.coflux.toml, COFLUX_PROVIDES), so a workflow
            # calling a task with requires= can finish on the embedded server.
            provides=cfg.provides,
        )
        failure: list[BaseException] = []

        def host() -> None:
            try:
                agent.run_in_thread()
            except BaseException as e:  # surfaced below, in the command's thread
                failure.append(e)

        thread = threading.Thread(target=host, daemon=True, name="coflux-agent")
        thread.start()
        try:
            submitted = client.submit(cfg.environment, repository, target, values)
            code = _follow(client, submitted["id"], json, cfg.environment, cfg=cfg)
        finally:
            agent.stop_threadsafe()
            thread.join(timeout=10)
    if failure:
        raise failure[0]
    raise typer.Exit(code)


def submit(
    module: Module,
    target: TargetArg,
    arguments: Args = None,
    wait: WaitOption = False,
    no_queue: NoQueueOption = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    json: JsonOption = False,
) -> None:
    """Start a run of a registered workflow; print its ID and URL.

    With the server unreachable, the submission is queued for `coflux sync`
    (not with --wait or --no-queue).

    Example:  coflux submit hello.py greet Joe --wait
    """
    from ..execution.loader import repository_name
    from ..local import operations

    cfg = config(server, project, env)
    repository = repository_name(module)

    def follow(client: Any, submitted: dict[str, str]) -> None:
        if not json:
            err_console().print(f"Run {submitted['id']}  {submitted['url']}")
        raise typer.Exit(_follow(client, submitted["id"], json, cfg.environment, cfg=cfg))

    result = operations.submit(
        cfg, repository, target, arguments or [], queue=not no_queue, then=follow if wait else None
    )
    if isinstance(result, operations.Queued):
        report_queued(result, json)
        return
    submitted = result.answer
    if json:
        print_json({"id": submitted["id"], "url": submitted["url"]})
    else:
        console().print(f"Run [bold]{submitted['id']}[/bold] submitted\n{submitted['url']}")


@runs_app.command("list")
def list_(
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    limit: Annotated[int, typer.Option(help="How many of the newest runs.", min=1, max=10000)] = 50,
    json: JsonOption = False,
) -> None:
    """List the newest runs of an environment.

    Example:  coflux runs list --env production --json
    """
    from ..local import mirror
    from ..local.connection import open_client

    cfg = config(server, project, env)

    def fetch() -> list[dict[str, Any]]:
        with open_client(cfg) as client:
            return client.list_runs(cfg.environment, limit)

    read = mirror.or_mirrored(fetch, lambda: mirror.load_list(cfg, cfg.environment))
    say_stale(read)
    if read.mirrored_at is None:
        mirror.save_list(cfg, cfg.environment, read.value)
    runs = read.value[:limit]
    if json:
        print_json(runs)
        return
    from rich.table import Table
    from rich.text import Text

    from .render import state_text

    table = Table("run", "workflow", "state", "created", box=None)
    for r in runs:
        table.add_row(
            # The ID links to the run's page where the terminal supports links.
            Text(r["id"], style=f"link {r['url']}"),
            r["workflow"],
            state_text(r["state"]),
            r["created_at"][:19].replace("T", " "),
        )
    console().print(table if runs else f"No runs in {cfg.project}/{cfg.environment} yet.")


@runs_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run ID.")],
    server: ServerOption = None,
    project: ProjectOption = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            help="Show the run as this environment sees it: for each step, the latest "
            "execution made there or in its bases (default: the branch's environment "
            "when the run is visible from it, else the run's own).",
            show_default=False,
        ),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Show a run as a tree of steps with states, timings and results.

    Example:  coflux runs show 7K2QF9XH3M --env feature/fast-load --json
    """
    import contextlib

    from ..errors import ConfigError
    from ..local import mirror
    from ..local.branches import with_environment
    from ..local.connection import open_client
    from ..local.runs import run_document
    from ..records.references import parse_reference, run_of

    run_key = run_of(parse_reference(run_id))
    cfg = config(server, project, env, derive=False)
    # With no branch to see it from, the run's own environment's view.
    with contextlib.suppress(ConfigError):
        cfg = with_environment(cfg)
    # An environment the user named must see the run; a derived one falls back.
    strict = cfg.sources.get("environment") in ("flag", "env", "file")

    def fetch() -> dict[str, Any]:
        with open_client(cfg) as client:
            return run_document(client, client.get_run(run_key, cfg.environment, strict))

    read = mirror.or_mirrored(fetch, lambda: mirror.load_run(cfg, run_key, cfg.environment))
    say_stale(read)
    # The run is shown before the mirror keeps a copy (encoding and writing a
    # 10,000-step document takes some 0.1 s), so the reader doesn't wait for it.
    _print_document(read.value, json)
    if read.mirrored_at is None:
        sys.stdout.flush()
        mirror.save_run(cfg, read.value)


def _print_document(document: dict[str, Any], json: bool) -> None:
    if json:
        print_json(document)
    else:
        _print_outcome(document)


def rerun(
    reference: Annotated[str, typer.Argument(metavar="STEP", help="A step (RUN:N).")],
    wait: WaitOption = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Execute every call again, instead of reusing the run's results "
            "whose code and arguments are unchanged.",
        ),
    ] = False,
    no_queue: NoQueueOption = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    json: JsonOption = False,
) -> None:
    """Re-run a step with the code of ENV's agents (e.g. your `coflux dev`).

    STEP is RUN:N of a run in ENV or in one of its bases (default: the git
    branch's environment). The step itself always executes again; the calls it
    makes reuse the run's earlier results where the target's code and the
    arguments are unchanged, so only what changed, and what consumes its
    changed output, executes. --force executes everything. With the server
    unreachable, the re-run is queued for `coflux sync` (not with --wait or
    --no-queue).

    Example:  coflux rerun 7K2QF9XH3M:1 --env feature/fast-load --wait
    """
    from ..local import operations
    from ..records.references import parse_step_ref

    target = parse_step_ref(reference)
    run_key, step = target.run_id, target.number
    cfg = config(server, project, env)

    def follow(client: Any, rerun: dict[str, str]) -> None:
        if not json:
            err_console().print(
                f"Re-running {reference} as {rerun['execution_id']}  {rerun['url']}"
            )
        code = _follow(client, run_key, json, cfg.environment, step, rerun["execution_id"], cfg)
        raise typer.Exit(code)

    result = operations.rerun(
        cfg, run_key, step, force, queue=not no_queue, then=follow if wait else None
    )
    if isinstance(result, operations.Queued):
        report_queued(result, json)
        return
    rerun = result.answer
    if json:
        print_json(rerun)
    else:
        console().print(
            f"Re-running {reference} as [bold]{rerun['execution_id']}[/bold]\n{rerun['url']}"
        )


def cancel(
    reference: Annotated[
        str, typer.Argument(metavar="RUN-or-STEP", help="A run ID or a step (RUN:N).")
    ],
    no_queue: NoQueueOption = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Cancel a run, or one step and what it called.

    With the server unreachable, the cancellation is queued for `coflux sync`
    (not with --no-queue).

    Example:  coflux cancel 7K2QF9XH3M
    """
    from ..local import operations
    from ..records.references import StepRef, run_of, run_or_step

    target = run_or_step(reference)
    run_key, step = run_of(target), target.number if isinstance(target, StepRef) else None
    cfg = config(server, project, derive=False)
    result = operations.cancel(cfg, run_key, step, queue=not no_queue)
    if isinstance(result, operations.Queued):
        report_queued(result, json)
        return
    if json:
        print_json(result.answer)
    else:
        console().print(f"Cancelled {result.answer['cancelled']} execution(s) of {reference}")
