"""`dlcli serve`'s server: uvicorn (httptools, uvloop) on a socket dlcli binds itself, one
process or `workers` processes sharing it.

What uvicorn leaves open, dlcli closes:
- a client that sends its request slowly (a slowloris: a header byte every few seconds) is
  cut off `request_timeout` seconds after its request began (408), so slow clients cannot
  hold the server's connections;
- the number of open files is raised to the system's limit, and past `MAX_CONNECTIONS`
  a request is answered 503 at once instead of waiting;
- SIGTERM or Ctrl-C stops taking connections, finishes the requests in flight (at most
  `GRACE` seconds) and ends the process with exit 0.

And it saves what a small answer's trip costs: a response's header block and body go out
in one system call (one TCP segment, one read for the client), and the per-connection
deadlines are checked by one sweep a few times a second instead of timers set and
cancelled on every request.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dlcli.errors import ConfigError, Problem
from dlcli.serve.metrics import SHARED_ENV

REQUEST_TIMEOUT = 30.0  # seconds from a request's first byte to its last
MAX_CONNECTIONS = 4096
GRACE = 30  # seconds SIGTERM waits for the requests in flight
SETTINGS_ENV = "DLCLI_SERVE_SETTINGS"  # how each worker process learns what to serve


def serve(settings: dict, announce) -> None:
    """Serve until SIGTERM/Ctrl-C. `settings`: run, runs_dir, backend, engine, host, port,
    workers, api_key, request_timeout; `announce(front or None, url)` is called once the
    server answers (front: the one process's application; None with workers)."""
    sock = bind(settings["host"], settings["port"])
    url = f"http://{_shown_host(settings['host'])}:{sock.getsockname()[1]}"
    timeout = float(settings.get("request_timeout") or REQUEST_TIMEOUT)
    workers = int(settings.get("workers") or 1)
    if workers == 1:
        front = make_front(settings)
        announce(front, url)
        serve_front(front, sock, timeout)
        return
    from uvicorn.supervisors import Multiprocess

    make_front(settings)  # the run is checked (and fails with its message) before any worker starts
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    shared = tempfile.mkdtemp(prefix="dlcli-serve-metrics-")  # the workers' counts, summed
    os.environ[SHARED_ENV] = shared
    config = uvicorn.Config(
        "dlcli.serve.server:front_from_environment",
        factory=True,
        workers=workers,
        **_options(),
    )
    config.request_timeout = timeout  # travels to the workers with the config
    announce(None, url)
    raise_open_files()
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def serve_front(front, sock: socket.socket, timeout: float = REQUEST_TIMEOUT) -> None:
    """Serve the ASGI application `front` on `sock` in this process until a signal."""
    config = uvicorn.Config(front, **_options())
    config.request_timeout = timeout
    raise_open_files()
    Server(config).run(sockets=[sock])


def _options() -> dict:
    return {
        "http": Protocol,
        "loop": _loop(),
        "lifespan": "off",
        "ws": "none",  # no WebSocket endpoint: not importing a WebSocket library saves start time
        "log_level": "warning",
        "access_log": False,
        "limit_concurrency": MAX_CONNECTIONS,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": GRACE,
        "server_header": False,
        "proxy_headers": False,  # nothing reads the client's address (no access log)
    }


def make_front(settings: dict):
    from dlcli.serve.app import MAX_BODY, Front
    from dlcli.serve.served import load_served

    served = load_served(
        settings["run"],
        settings.get("runs_dir"),
        settings.get("backend"),
        settings.get("engine", "auto"),
    )
    return Front(served, settings.get("api_key"), settings.get("max_body") or MAX_BODY)


def front_from_environment():
    """A worker's application (uvicorn's factory with `--workers N`)."""
    return make_front(json.loads(os.environ[SETTINGS_ENV]))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; a ConfigError (exit 2) when it cannot be had."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        fix = "choose another with --port" if exc.errno == 98 else "check --host and --port"
        raise ConfigError(
            Problem(f"cannot listen on {host}:{port} ({reason}); {fix}", where="--port")
        ) from None
    except (OverflowError, UnicodeError) as exc:
        raise ConfigError(
            Problem(f"cannot listen on {host}:{port} ({exc})", where="--host")
        ) from None
    sock.set_inheritable(True)
    return sock


def raise_open_files() -> None:
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline on receiving each request (the
    config's `request_timeout` seconds from its first byte, or from the connection), and
    each response's header block sent together with its body (`HeadWithBody`).

    The deadlines, and keep-alive's close of a connection idle for `timeout_keep_alive`
    seconds, are kept by one `Sweep` of all connections a few times a second instead of a
    timer set and cancelled per request (two timers cost a request more than its JSON)."""

    began = None  # loop time the request being received began; None when none is
    idle_since = None  # loop time the connection's last response ended (keep-alive)

    def connection_made(self, transport):
        super().connection_made(transport)
        self.began = self.loop.time()
        Sweep.start(self)

    def on_message_begin(self):
        super().on_message_begin()
        self.began, self.idle_since = self.loop.time(), None

    def on_message_complete(self):
        self.began = None
        super().on_message_complete()

    def on_headers_complete(self):
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before:  # a new request's cycle (its task has not run yet)
            cycle.transport = HeadWithBody(self.transport, cycle.on_response)
            cycle.on_response = cycle.transport.finished

    def on_response_complete(self):
        # uvicorn's, but the keep-alive timeout is the sweep's (`idle_since`), not a timer
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # the next pipelined request
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.idle_since = self.loop.time()

    def connection_lost(self, exc):
        self.began = self.idle_since = None
        super().connection_lost(exc)

    def late(self, timeout: float):
        """The request took over `timeout` seconds to arrive: 408 (when no answer has
        begun) and close."""
        self.began = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            body = json.dumps(
                {"error": f"the request took over {timeout:g} s to arrive; send it at once"}
            ).encode()
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
        self.transport.close()


class Sweep:
    """The deadlines of one server's connections, checked every `period` seconds: a
    request still arriving `request_timeout` seconds after it began gets its 408; a
    connection idle `timeout_keep_alive` seconds after its last answer is closed."""

    def __init__(self, protocol: Protocol):
        config = protocol.config
        self.loop, self.connections = protocol.loop, protocol.connections
        self.timeout = float(getattr(config, "request_timeout", REQUEST_TIMEOUT))
        self.keep_alive = float(config.timeout_keep_alive)
        self.period = max(0.02, min(0.5, self.timeout / 4, self.keep_alive / 4))
        self.loop.call_later(self.period, self)

    @classmethod
    def start(cls, protocol: Protocol) -> None:
        """The sweep of `protocol`'s server, started with its first connection."""
        state = protocol.server_state
        if getattr(state, "dlcli_sweep", None) is None:
            state.dlcli_sweep = cls(protocol)

    def __call__(self) -> None:
        now = self.loop.time()
        for protocol in list(self.connections):
            began, idle = getattr(protocol, "began", None), getattr(protocol, "idle_since", None)
            if began is not None and now - began > self.timeout:
                protocol.late(self.timeout)
            elif idle is not None and now - idle > self.keep_alive:
                protocol.idle_since = None
                if not protocol.transport.is_closing():
                    protocol.transport.close()
        self.loop.call_later(self.period, self)


class HeadWithBody:
    """One response's transport: the header block (its first write) waits for the first
    part of the body and goes out with it, in one system call and one TCP segment instead
    of two; the rest passes through. What is held goes out at the response's end at the
    latest (a HEAD answer has no body), or before the connection closes."""

    __slots__ = ("head", "on_response", "state", "transport")
    CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # written while the request is read: not held

    def __init__(self, transport, on_response):
        self.transport, self.on_response = transport, on_response
        self.head, self.state = b"", 0  # 0: nothing written yet, 1: head held, 2: passing

    def write(self, data: bytes) -> None:
        if self.state == 1:
            self.state = 2
            self.transport.writelines((self.head, data))
            self.head = b""
        elif self.state == 0 and data != self.CONTINUE:
            self.state, self.head = 1, data
        else:
            self.transport.write(data)

    def flush(self) -> None:
        if self.state == 1:
            self.state = 2
            self.transport.write(self.head)
            self.head = b""

    def finished(self) -> None:
        self.flush()
        self.on_response()

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name):
        return getattr(self.transport, name)


def _loop() -> str:
    import importlib.util

    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Server(uvicorn.Server):
    """uvicorn's server, ending with exit 0 after a signal's graceful stop (uvicorn raises the
    signal again once it has stopped, which would end the process with it)."""

    @contextlib.contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            self._captured_signals.clear()


__all__ = ["bind", "front_from_environment", "serve", "serve_front"]
