"""The ``coflux`` entry point: the command tree, and the one place errors become exit codes."""

from __future__ import annotations

import sys

import typer

from . import agents, assets, envs, projects, runs, sensors, server, state, sync, tokens

app = typer.Typer(
    name="coflux",
    help="Coflux: plain-Python workflows, a shared server, agents anywhere.\n\n"
    "Quick start:  coflux run hello.py greet Joe",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's help formatter costs ~100 ms of start-up.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(server.app, name="server")
app.add_typer(projects.app, name="projects")
app.add_typer(envs.app, name="envs")
app.command("register")(agents.register)
app.command("agent")(agents.agent)
app.command("dev")(agents.dev)
app.command("run")(runs.run)
app.command("submit")(runs.submit)
app.add_typer(runs.runs_app, name="runs")
app.command("logs")(runs.logs)
app.command("rerun")(runs.rerun)
app.command("cancel")(runs.cancel)
app.add_typer(sensors.app, name="sensors")
app.add_typer(assets.app, name="assets")
app.add_typer(assets.cache_app, name="cache")
app.command("sync")(sync.sync)
app.command("status")(sync.status)
app.add_typer(state.app, name="state")
app.add_typer(tokens.app, name="tokens")


def main() -> None:
    """Run the CLI; a Coflux error is one line on stderr and exit code 2."""
    import gc

    from ..errors import CofluxError

    # A command decodes and builds large documents (a 10,000-step run is some
    # 200,000 objects, none of them in a cycle): the collector's passes over
    # them, and its last pass at exit, were 0.2 s of `runs show`. It runs
    # less often (long-running commands still collect), and what is alive at
    # exit is frozen rather than traversed once more.
    gc.set_threshold(50_000, 20, 20)
    try:
        # Outside standalone mode click returns the code of `typer.Exit` instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except CofluxError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise
    finally:
        gc.freeze()
