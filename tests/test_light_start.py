"""What keeps a cold read command light (issue 25) changes nothing a user sees.

- ``import coflux`` imports the SDK's names when first used, and every way of
  reaching them works as before (``cf.task``, ``from coflux import *``,
  ``cf.context``);
- the root command group builds each command on first use, and the tree it
  builds is the one eager registration built;
- typer 0.29 converts a parameter's value without pydantic only where its
  adapter would give the same value, and every refusal is still typer's;
- the client's GETs over plain HTTP (``coflux.remote.plain_http``) send what
  httpx sends and read the answer as httpx does.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import httpx
import pytest
import typer
import typer.main
from conftest import ServerProcess, free_port

from coflux.remote import plain_http

# --- the SDK ---


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_coflux_imports_only_its_errors_and_version() -> None:
    out = _run(
        "import sys, coflux\n"
        "print(sorted(m for m in sys.modules if m == 'coflux' or m.startswith('coflux.')))"
    )
    assert out == "['coflux', 'coflux.errors', 'coflux.version']\n"


def test_every_public_name_is_reached_as_before() -> None:
    out = _run(
        "import coflux as cf\n"
        "from coflux import *\n"
        "from coflux import workflow, Execution\n"
        "import coflux.context, coflux.decorators\n"
        "assert workflow is cf.workflow is coflux.decorators.workflow\n"
        "assert Execution is cf.Execution is coflux.context.Execution\n"
        "assert all(name in dir(cf) for name in cf.__all__)\n"
        "assert all(getattr(cf, name) is globals()[name] for name in cf.__all__)\n"
        "print(cf.task.__module__, cf.Asset.__module__, cf.CofluxError.__module__)\n"
        "try:\n    cf.tsak\nexcept AttributeError as e:\n    print(e)\n"
    )
    assert out == (
        "coflux.decorators coflux.context coflux.errors\nmodule 'coflux' has no attribute 'tsak'\n"
    )


def test_submodules_import_coflux_used_to_import_are_attributes() -> None:
    out = _run(
        "import coflux as cf\n"
        "print(cf.context.__name__, cf.decorators.__name__, cf.assets.__name__, "
        "cf.cache.__name__, cf.records.__name__, cf.errors.__name__)"
    )
    assert out.split() == [
        "coflux.context",
        "coflux.decorators",
        "coflux.assets",
        "coflux.cache",
        "coflux.records",
        "coflux.errors",
    ]


# --- the command tree ---


def _tree(command: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _tree(sub, f"{path} {name}".strip())


def _describe(command: Any) -> tuple[Any, ...]:
    params = [
        (p.name, tuple(p.opts), p.required, p.default, p.help if hasattr(p, "help") else None)
        for p in command.params
    ]
    return (command.name, command.help, command.short_help, command.hidden, params)


def test_the_lazy_tree_is_the_tree_eager_registration_built() -> None:
    from coflux.cli import main

    eager = typer.Typer(
        name="coflux",
        help=main.app.info.help,
        no_args_is_help=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        **main.SETTINGS,
    )
    eager.callback()(main._root)

    def target(entry: tuple[str, str]) -> Any:
        return getattr(importlib.import_module(f"coflux.cli.{entry[0]}"), entry[1])

    for name, entry in main.COMMANDS.items():
        found = target(entry)
        if isinstance(found, typer.Typer):
            eager.add_typer(found, name=name)
        else:
            eager.command(name)(found)
    lazy_root = typer.main.get_group(main.app)
    eager_root = typer.main.get_group(eager)
    # The extra commands of a group (`runs diff`) come last in it, as before.
    runs = eager_root.commands["runs"]
    for sub, entry in main.EXTRA["runs"].items():
        holder = typer.Typer(**main.SETTINGS)
        holder.command(sub)(target(entry))
        runs.add_command(typer.main.get_group(holder).commands[sub], sub)
    lazy = [(path, _describe(c)) for path, c in _tree(lazy_root)]
    want = [(path, _describe(c)) for path, c in _tree(eager_root)]
    assert [p for p, _ in lazy] == [p for p, _ in want]
    assert lazy == want
    assert len(lazy) > 40


def test_running_one_command_builds_only_it() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nsys.argv = ['coflux', 'runs', 'list', '--help']\n"
            "from coflux.cli.main import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "cli = sorted(m for m in sys.modules if m.startswith('coflux.cli.'))\n"
            "sys.stderr.write(' '.join(cli))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("Usage: coflux runs list [OPTIONS]\n")
    assert result.stderr.split() == [
        "coflux.cli.coercion",
        "coflux.cli.common",
        "coflux.cli.diff",
        "coflux.cli.lazy",
        "coflux.cli.main",
        "coflux.cli.runs",
    ]


# --- typer's coercion ---


@pytest.fixture
def probe_app() -> typer.Typer:
    from coflux.cli.coercion import install

    install()
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.command()
    def probe(
        name: Annotated[str, typer.Argument()],
        limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
        count: Annotated[int | None, typer.Option()] = None,
        label: Annotated[str | None, typer.Option()] = None,
        flag: Annotated[bool, typer.Option()] = False,
    ) -> None:
        print(repr((name, limit, count, label, flag)))

    return app


def _invoke(app: typer.Typer, *args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (("x",), "('x', 50, None, None, False)"),
        (("x", "--limit", "7"), "('x', 7, None, None, False)"),
        (("x", "--limit", "007"), "('x', 7, None, None, False)"),
        (("x", "--limit", "500", "--count", "0"), "('x', 500, 0, None, False)"),
        (("x", "--count", "-3"), "('x', 50, -3, None, False)"),
        (("x", "--count", " 4"), "('x', 50, 4, None, False)"),
        (("", "--label", "ünï code", "--flag"), "('', 50, None, 'ünï code', True)"),
    ],
)
def test_values_convert_as_typer_converts_them(
    probe_app: typer.Typer, args: tuple[str, ...], shown: str
) -> None:
    assert _invoke(probe_app, *args) == (0, shown + "\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("x", "--limit", "0"), "Input should be greater than or equal to 1"),
        (("x", "--limit", "501"), "Input should be less than or equal to 500"),
        (("x", "--limit", "abc"), "Input should be a valid integer"),
        (("x", "--limit", "-1"), "Input should be greater than or equal to 1"),
        (("x", "--count", "1" * 5000), "Invalid value for '--count'"),
    ],
)
def test_refusals_are_typers_own(
    probe_app: typer.Typer, args: tuple[str, ...], message: str
) -> None:
    code, output = _invoke(probe_app, *args)
    assert code == 2
    assert message in output


# --- plain HTTP ---


class _Recorder(BaseHTTPRequestHandler):
    """Answers every GET with 200 and a JSON body; records each request's target
    and headers; closes the connection after the request whose path says so."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        type(self).seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = b'{"ok": true, "path": "%s"}' % self.path.encode()
        status = 404 if "missing" in self.path else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if "chunked" in self.path:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (body[:5], body[5:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        if "hangup" in self.path:
            self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str]]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


PARAMS: list[Any] = [
    None,
    {"environment": "production", "limit": 100},
    {"environment": "a b/c&d=e+f?", "strict": True, "flag": False, "none": None},
    [("env", "a"), ("env", "b")],
    {"grep": "ünï ~*'()!", "after": 0, "step": 3},
]


@pytest.mark.parametrize("params", PARAMS)
def test_a_get_sends_what_httpx_sends(recorder: Any, params: Any) -> None:
    url, seen = recorder
    headers = {"Authorization": "Bearer t0k"}
    with httpx.Client(base_url=url + "/base/", headers=headers) as client:
        want = client.get("/api/x y/ü%2F{}", params=params)
    plain = plain_http.PlainHttp(url + "/base/", 5, headers)
    got = plain.get("/api/x y/ü%2F{}", params=params)
    plain.close()
    (sent_by_httpx, httpx_headers), (sent, sent_headers) = seen
    assert sent == sent_by_httpx
    assert sent_headers["authorization"] == httpx_headers["authorization"] == "Bearer t0k"
    assert sent_headers["host"] == httpx_headers["host"]
    assert (got.status_code, got.content, got.json()) == (
        want.status_code,
        want.content,
        want.json(),
    )


def test_one_connection_is_kept_and_opened_again_when_the_server_closes_it(
    recorder: Any,
) -> None:
    url, seen = recorder
    plain = plain_http.PlainHttp(url, 5, {})
    assert plain.get("/one").json() == {"ok": True, "path": "/one"}
    first = plain._connection
    assert plain.get("/two/chunked").json() == {"ok": True, "path": "/two/chunked"}
    assert plain._connection is first  # kept alive
    assert plain.get("/three/hangup").status_code == 200
    assert plain.get("/four/missing").status_code == 404
    assert [path for path, _ in seen] == ["/one", "/two/chunked", "/three/hangup", "/four/missing"]
    plain.close()


def test_an_unreachable_server_is_a_connect_error() -> None:
    plain = plain_http.PlainHttp(f"http://127.0.0.1:{free_port()}", 5, {})
    with pytest.raises(plain_http.ConnectError):
        plain.get("/api/health")


def test_the_client_reads_a_real_server_the_same_by_either_transport(
    server: ServerProcess,
) -> None:
    from coflux.errors import NotFound
    from coflux.remote.client import Client

    with Client(server.url, "default") as client:
        assert client._plain is not None
        plain_answer = client.health()
        with pytest.raises(NotFound) as plain_refusal:
            client.get_run("NOSUCHRUN0")
        client._plain.close()
        client._plain = None  # from here on, httpx
        assert client.health() == plain_answer
        with pytest.raises(NotFound) as httpx_refusal:
            client.get_run("NOSUCHRUN0")
    assert str(plain_refusal.value) == str(httpx_refusal.value)
