"""The ``coflux`` entry point: the command tree, and the one place errors become exit codes."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from .lazy import lazy_group

#: Every command of ``coflux``, in the order ``coflux --help`` lists them (single
#: commands, then groups, as typer orders them): name -> (module, attribute).
#: Each is imported when it is used (``lazy.py``).
COMMANDS = {
    "register": ("agents", "register"),
    "agent": ("agents", "agent"),
    "dev": ("agents", "dev"),
    "run": ("runs", "run"),
    "submit": ("runs", "submit"),
    "logs": ("logs", "logs"),
    "rerun": ("runs", "rerun"),
    "cancel": ("runs", "cancel"),
    "sync": ("sync", "sync"),
    "status": ("sync", "status"),
    "server": ("server", "app"),
    "projects": ("projects", "app"),
    "envs": ("envs", "app"),
    "runs": ("runs", "runs_app"),
    "sensors": ("sensors", "app"),
    "assets": ("assets", "app"),
    "cache": ("assets", "cache_app"),
    "state": ("state", "app"),
    "tokens": ("tokens", "app"),
}
#: Commands of a group that live in another module: `coflux runs diff`.
EXTRA = {"runs": {"diff": ("diff", "diff")}}

#: How every command is built, the root's settings.
SETTINGS: dict[str, Any] = {
    "pretty_exceptions_enable": False,
    # Plain click help: rich's help formatter costs ~100 ms of start-up.
    "rich_markup_mode": None,
}

app = typer.Typer(
    name="coflux",
    help="Coflux: plain-Python workflows, a shared server, agents anywhere.\n\n"
    "Quick start:  coflux run hello.py greet Joe",
    no_args_is_help=True,
    # `--install-completion` / `--show-completion` for bash, zsh and fish.
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=lazy_group(COMMANDS, EXTRA, SETTINGS),
    **SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        from ..version import __version__

        sys.stdout.write(f"coflux {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    # Only the root's options live here; the help text is the Typer's above.
    return None


def main() -> None:
    """Run the CLI; a Coflux error is one line on stderr and exit code 2."""
    import gc

    from ..errors import CofluxError
    from .coercion import install

    install()  # typer's pydantic only for values that need it

    # A command decodes and builds large documents (a 10,000-step run is some
    # 200,000 objects, none of them in a cycle): the collector's passes over
    # them, and its last pass at exit, were 0.2 s of `runs show`. It runs
    # less often (long-running commands still collect), and what is alive at
    # exit is frozen rather than traversed once more.
    gc.set_threshold(50_000, 20, 20)
    # httpx imports its own command line (click, rich's console, pygments) when
    # they are installed, as they are beside typer: a third of its import, for
    # a tool this process never runs. None in sys.modules makes that import
    # fail, which httpx expects (it then defines a stub `httpx.main`).
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    try:
        # Outside standalone mode click returns the code of `typer.Exit` instead of exiting.
        code = app(standalone_mode=False, prog_name="coflux")  # also as `python -m coflux`
        sys.exit(code if isinstance(code, int) else 0)
    except CofluxError as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)
    except OSError as e:
        if e.filename is None:  # not about a path the user gave: a bug, or the network
            raise
        # A path given on the command line that can't be used (a file where a
        # folder must be, no permission): the user's to fix.
        sys.stderr.write(f"error: can't use {e.filename}: {e.strerror or e}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click's usage errors arrive here in non-standalone mode
        from .usage import handle

        code = handle(e)
        if code is None:
            raise
        sys.exit(code)
    finally:
        gc.freeze()
