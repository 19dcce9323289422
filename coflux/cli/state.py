"""``coflux state``: the local state (``.coflux/state.db``), repaired and acknowledged."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import JsonOption, ProjectOption, ServerOption, config, console, print_json

app = typer.Typer(
    help="The workspace's local state in .coflux/state.db.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("repair")
def repair(
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Set the state aside and start a new one even if it reads whole."
        ),
    ] = False,
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Set a damaged .coflux/state.db aside and start a new one.

    The damaged file is renamed beside it (state.db.damaged-TIME), never
    deleted; the queued operations and branch mappings that can still be read
    are carried over with their idempotency keys. Nothing the server holds is
    touched: copies of runs refill from it (`coflux runs show`, `coflux sync
    --pull`), and runs made offline on the embedded server are still pushed.

    Example:  coflux state repair
    """
    from ..local.repair import repair as do_repair

    cfg = config(server, project, derive=False)
    done = do_repair(cfg, rebuild)
    if json:
        print_json(done)
        return
    out = console()
    if done["set_aside"] is None and not done["damaged"] and not rebuild:
        out.print(f"{cfg.data_dir / 'state.db'} reads whole; nothing to repair")
        return
    out.print(
        f"Set {cfg.data_dir / 'state.db'} aside as {done['set_aside']}; carried over "
        f"{done['queued']} queued operation(s) and {done['branches']} branch mapping(s) "
        "into a new one",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@app.command("dismiss")
def dismiss(
    server: ServerOption = None,
    project: ProjectOption = None,
    json: JsonOption = False,
) -> None:
    """Acknowledge the refusals and damage notices `coflux status` lists.

    Example:  coflux state dismiss
    """
    from sqlalchemy import update

    from ..local import state
    from ..local.outbox import dismiss as dismiss_refusals

    cfg = config(server, project, derive=False)
    refusals = dismiss_refusals(cfg) if cfg.server is not None else 0
    with state.writing(cfg.data_dir) as c:
        notices = c.execute(
            update(state.T_NOTICES)
            .where(state.T_NOTICES.c.dismissed_at.is_(None))
            .values(dismissed_at=state.now())
        ).rowcount
    if json:
        print_json({"refusals": refusals, "notices": notices})
    else:
        console().print(f"Dismissed {refusals} refusal(s) and {notices} notice(s)")
