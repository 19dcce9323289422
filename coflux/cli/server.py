"""``coflux server``: run the shared server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7777,
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where projects' databases and blobs live.")
    ] = Path(".coflux/server"),
    agent_timeout: Annotated[
        float,
        typer.Option(
            "--agent-timeout", help="Seconds of silence before an agent's executions are abandoned."
        ),
    ] = 30.0,
) -> None:
    """Run the Coflux server.

    Example:  coflux server --port 7777 --data-dir /var/lib/coflux
    """
    import logging

    import uvicorn

    from ..errors import ConfigError
    from ..remote.server.app import create_app
    from ..remote.server.settings import Settings

    if agent_timeout <= 0:
        raise ConfigError("--agent-timeout must be a positive number of seconds")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings(data_dir=data_dir, host=host, port=port, agent_timeout=agent_timeout)
    app = create_app(settings)
    print(f"Coflux server on http://{host}:{port} (data in {data_dir})", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", ws="websockets-sansio")
    except SystemExit:
        raise ConfigError(
            f"can't listen on {host}:{port}; is another server using the port?"
        ) from None
