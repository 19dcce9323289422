"""``coflux agent`` and ``coflux register``: host repositories, or just register them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import (
    EnvOption,
    JsonOption,
    NoQueueOption,
    ProjectOption,
    ProvidesOption,
    ServerOption,
    config,
    console,
    print_json,
    report_queued,
)
from .verbosity import QuietOption, VerboseOption, configure

Modules = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dotted module names or paths to .py files (default: modules in .coflux.toml).",
        show_default=False,
    ),
]


def _modules(modules: list[str] | None, cfg: Any) -> list[str]:
    """The modules named, else those of .coflux.toml, which are relative to its folder:
    the command then works there, so it runs the same from any subfolder."""
    import os

    from ..errors import ConfigError

    chosen = modules or cfg.modules
    if not modules and chosen:
        os.chdir(cfg.root)
    if not chosen:
        raise ConfigError(
            "no modules given; name them (e.g. `coflux agent workflows.py`) "
            "or set modules in .coflux.toml"
        )
    return chosen


AllowDirtyOption = Annotated[
    bool,
    typer.Option(
        "--allow-dirty",
        help="Register into production even with uncommitted changes in the tree.",
    ),
]


def register(
    modules: Modules = None,
    allow_dirty: AllowDirtyOption = False,
    no_queue: NoQueueOption = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    json: JsonOption = False,
) -> None:
    """Register the workflows and tasks of modules in an environment.

    With the server unreachable, registration is queued for `coflux sync`,
    except in CI (the CI variable set) or with --no-queue, where it fails so
    the build notices. Each registration records the git commit and whether
    the tree was dirty. Into production, a dirty tree needs --allow-dirty, and
    a branch that isn't a production branch needs --env production.

    Example:  coflux register workflows.py --env production
    """
    from ..local import operations
    from ..local.provenance import check_production, provenance

    cfg = config(server, project, env)
    chosen = _modules(modules, cfg)
    found = provenance(cfg.root)
    check_production(cfg, found, allow_dirty, env)
    result = operations.register(cfg, chosen, found, queue=not no_queue)
    if isinstance(result, operations.Queued):
        report_queued(result, json)
        return
    if json:
        commit = {"commit": None, "dirty": None, **(found or {})}
        print_json([{"repository": r, "targets": t, **commit} for r, t in result.answer.items()])
        return
    for repository, targets in result.answer.items():
        console().print(
            f"Registered [bold]{repository}[/bold] in {cfg.environment}: {', '.join(targets)}"
        )


def agent(
    modules: Modules = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", help="Executions run at once (default 4).", min=1),
    ] = None,
    provides: ProvidesOption = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
    dev_mode: Annotated[
        bool,
        typer.Option(
            "--dev",
            "--watch",
            help="Reload the modules when files change, as `coflux dev` does.",
        ),
    ] = False,
    register_flag: Annotated[
        bool,
        typer.Option(
            "--register",
            help="Accepted for Coflux 0.6: an agent always registers its modules.",
        ),
    ] = False,
    allow_dirty: AllowDirtyOption = False,
) -> None:
    """Run an agent that hosts modules and executes their targets.

    With --provides key=value (repeatable), the agent also takes executions of
    targets whose requires= those tags satisfy; without, only targets that
    require nothing. An agent registers its modules' targets when it connects
    (--register changes nothing); --dev reloads them on changes (`coflux dev`).
    As `coflux register`, it registers into production from a dirty tree only
    with --allow-dirty, and from a branch that isn't a production branch only
    with --env production.

    Example:  coflux agent workflows.py --concurrency 8 --provides gpu=a100
    """
    if dev_mode:
        dev(
            modules,
            concurrency,
            provides=provides,
            server=server,
            project=project,
            env=env,
            verbose=verbose,
            quiet=quiet,
            allow_dirty=allow_dirty,
        )
        return
    from ..local.agent import Agent, run_agent
    from ..local.connection import open_client
    from ..local.outbox import flush_in_background
    from ..local.provenance import check_production, provenance
    from ..records.placement import describe

    configure(verbose, quiet)
    cfg = config(server, project, env, provides=provides)
    chosen = _modules(modules, cfg)
    # It registers its modules as it connects: the same rule as `coflux register`.
    check_production(cfg, provenance(cfg.root), allow_dirty, env)
    with open_client(cfg) as client:
        instance = Agent(
            client.addresses,
            cfg.project,
            cfg.environment,
            chosen,
            concurrency or cfg.concurrency,
            cfg.data_dir / "cas",
            token=cfg.token,
            provides=cfg.provides,
        )
        instance.load()
        instance.on_connected = flush_in_background(cfg)
        tags = describe(cfg.provides)
        console().print(
            f"Agent for {', '.join(instance.manifests)} in {cfg.project}/{cfg.environment} "
            f"on {client.server} (concurrency {instance.concurrency}"
            f"{f'; provides {tags}' if tags else ''})",
            markup=False,
        )
        run_agent(instance)


def dev(
    modules: Modules = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", help="Executions run at once (default 4).", min=1),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline",
            help="Work on the embedded server even if the shared one is reachable.",
        ),
    ] = False,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty",
            help="Serve a shared server's production (every edit is registered there).",
        ),
    ] = False,
    provides: ProvidesOption = None,
    server: ServerOption = None,
    project: ProjectOption = None,
    env: EnvOption = None,
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
) -> None:
    """Serve modules in your branch's environment, reloading them when files change.

    Registers the modules, runs an agent for the environment (so `coflux rerun
    STEP` there executes your code), and watches the repository: on a change
    the execution processes restart with the new code and changed targets are
    registered again. Code that fails to import is reported, and the previous
    code keeps serving until it is fixed. Its agent provides the tags of
    --provides, as `coflux agent` does. Stop with Ctrl-C.

    It registers every edit, so a shared server's production (a production
    branch, or --env production) is served only with --allow-dirty.

    When the shared server is unreachable (or with --offline), it works on the
    embedded server in .coflux/server, seeded with what `coflux sync --pull`
    fetched, and the workspace's commands use it until dev stops; `coflux
    sync` later pushes the runs made there.

    Example:  coflux dev workflows.py
    """
    import asyncio
    import dataclasses
    import os
    from datetime import datetime
    from urllib.parse import quote

    from rich.markup import escape

    from ..errors import ServerUnreachable
    from ..identity.hashing import git_root
    from ..local.agent import Agent
    from ..local.config import Workspace
    from ..local.connection import offline_marker, open_client
    from ..local.dev import develop, following_head
    from ..local.outbox import flush_in_background
    from ..local.provenance import check_dev
    from ..local.replication import seed
    from ..remote.client import Client

    configure(verbose, quiet)
    cfg = config(server, project, env, provides=provides)
    chosen = _modules(modules, cfg)
    if not offline:
        check_dev(cfg, allow_dirty)
    out = console()

    def say(line: str) -> None:
        out.print(
            f"[dim]{datetime.now():%H:%M:%S}[/dim] {escape(line)}", highlight=False, soft_wrap=True
        )

    if cfg.server is not None and not offline:
        with Client(cfg.server, cfg.project, timeout=5, token=cfg.token) as probe:
            try:
                probe.health()
            except ServerUnreachable:
                say(f"{cfg.server} is unreachable: working offline on the embedded server")
                offline = True
    where = dataclasses.replace(cfg, server=None) if offline and cfg.server else cfg
    marker = offline_marker(cfg)
    with open_client(where) as client:
        if where is not cfg:
            seeded = seed(client, cfg)
            say(f"seeded the embedded server with {seeded} pulled run(s); `coflux sync` pushes")
            marker.write_text(str(os.getpid()))

        def make_agent(settings: Workspace) -> Agent:
            made = Agent(
                client.addresses,
                settings.project,
                settings.environment,
                chosen,
                concurrency or settings.concurrency,
                settings.data_dir / "cas",
                token=settings.token,
                provides=settings.provides,
            )
            if where is cfg:
                made.on_connected = flush_in_background(settings)
            return made

        agent = make_agent(cfg)
        following = following_head(cfg, client, make_agent, allow_dirty or where is not cfg)
        branch = f" (branch {cfg.branch})" if cfg.branch else ""
        page = f"{client.server}/projects/{quote(cfg.project)}?env={quote(cfg.environment)}"
        watched = git_root(cfg.root) or cfg.root
        out.print(
            f"Dev: {', '.join(chosen)} in {cfg.project}/{cfg.environment}{branch} "
            f"on {client.server}\n{page}\nWatching {watched} for changes; Ctrl-C to stop",
            highlight=False,
            soft_wrap=True,
        )
        try:
            asyncio.run(develop(agent, watched, say, following=following))
        finally:
            if where is not cfg:
                marker.unlink(missing_ok=True)
