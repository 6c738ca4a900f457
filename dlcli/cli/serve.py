"""`dlcli serve`: a run's model behind HTTP (`dlcli.serve`)."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer
from rich.markup import escape

from dlcli.cli.options import BackendOption, DebugOption, RunArgument, RunsDirOption, check_backend
from dlcli.cli.program import command, err
from dlcli.errors import ConfigError, Problem

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ENGINES = ("auto", "onnx", "keras")


@command
def serve(
    run: RunArgument = None,
    host: Annotated[
        str,
        typer.Option("--host", help="The address to listen on; 0.0.0.0 lets other machines in."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="The port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="Server processes sharing the port.")
    ] = 1,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="DLCLI_API_KEY",
            help="Require 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (all but /healthz).",
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="auto: the verified ONNX copy when `dlcli export` made one, else Keras; onnx; keras.",
        ),
    ] = "auto",
    request_timeout: Annotated[
        float,
        typer.Option("--request-timeout", min=0.1, help="Seconds a client has to send a request."),
    ] = 30.0,
    backend: BackendOption = None,
    runs_dir: RunsDirOption = None,
    debug: DebugOption = False,
):
    """Serve a run's model over HTTP: POST /predict, GET /healthz, /metadata, /metrics, /docs."""
    missing = [
        m
        for m in ("fastapi", "uvicorn", "httptools", "orjson")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise ConfigError(
            Problem(f"serving needs {', '.join(missing)}; pip install 'dlcli[serve]'")
        )
    if engine not in ENGINES:
        raise ConfigError(Problem(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}"))
    from dlcli.serve.server import serve as run_server

    if host not in LOCAL_HOSTS:
        err().print(
            f"[yellow]warning:[/] listening on {escape(host)}: any machine that reaches it can call "
            f"the model{'' if api_key else '; set --api-key (or DLCLI_API_KEY) to require a key'}"
        )

    def announce(front, url: str) -> None:
        what = (
            f"{front.served.run.id}, answered by {front.served.engine.name}" if front else str(run)
        )
        err().print(
            f"serving {escape(what)} at {url} ({workers} worker{'s' if workers > 1 else ''}); "
            f"API at {url}/docs; Ctrl-C stops",
            soft_wrap=True,
        )

    run_server(
        {
            "run": run,
            "runs_dir": str(runs_dir) if runs_dir else None,
            "backend": check_backend(backend),
            "engine": engine,
            "host": host,
            "port": port,
            "workers": workers,
            "api_key": api_key,
            "request_timeout": request_timeout,
        },
        announce,
    )
