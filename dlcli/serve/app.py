"""The served run as an ASGI application: `POST /predict`, `/healthz`, `/metadata` and
`/metrics` on a lean path of their own, the OpenAPI document (`/openapi.json`, `/docs`) on
FastAPI.

`Front` sees every request first: it checks the API key, answers `POST /predict` itself
(the body read up to its limit, parsed, turned into model inputs, batched, answered as
JSON), and the health, metadata and metrics endpoints; every other request goes to FastAPI,
which documents them all and is made (and imported) at its first request. Answering
/predict outside FastAPI's routing and validation doubles the requests per second one core
serves, and leaving FastAPI's import for later takes a third off the time to start.

Every client's mistake is a 4xx whose JSON body names it (`{"error", "row", "field"}`):
400 for a body that is not JSON (or nested deeper than Python parses), 401 for a missing or
wrong API key, 413 for a body over the limit or too many samples, 422 for a sample that
does not fit the model. Past `MAX_HELD` bytes of bodies held at once (a flood of large
requests), a request is a 503 with `Retry-After` instead of the memory running out. An
error of dlcli's own is a 500 with the same form, logged; the server goes on.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import ClassVar, Self

import orjson

from dlcli.data.tables.rows import RowProblem
from dlcli.serve.batching import Batcher
from dlcli.serve.metrics import make_metrics
from dlcli.serve.served import MAX_ROWS, Served, TooMany

MAX_BODY = 16 << 20  # bytes of one request body (413 above)
MAX_HELD = 256 << 20  # bytes of request bodies held at once, over all requests (503 above)
JSON = [(b"content-type", b"application/json")]
OPEN_PATHS = ("/healthz",)  # answered without the API key (load balancers' probes carry none)
log = logging.getLogger("dlcli.serve")


class Refused(Exception):
    """A request answered with a 4xx: `status` and the JSON body."""

    def __init__(self, status: int, error: str, row=None, field=None, headers=()):
        super().__init__(error)
        self.status, self.headers = status, list(headers)
        self.body = {"error": error}
        if row is not None:
            self.body["row"] = row
        if field is not None:
            self.body["field"] = field


class Front:
    """The ASGI application: `served` answers, `api_key` (or None) guards every path but
    /healthz, `max_body` bounds a request body in bytes."""

    def __init__(self, served: Served, api_key: str | None = None, max_body: int = MAX_BODY):
        self.served = served
        self.key = api_key.encode() if api_key else None
        self.max_body = max_body
        self.bodies = Bodies(MAX_HELD)
        self.metrics = make_metrics()
        self.batcher = Batcher(served.engine, served.join, served.results, self.metrics.batch)
        self._api = None

    @property
    def api(self):
        """The FastAPI application, made at its first use."""
        if self._api is None:
            from dlcli.serve.api import make_api

            self._api = make_api(self)
        return self._api

    def health(self) -> dict:
        """GET /healthz's answer."""
        return {"status": "ok", "run": self.served.run.id}

    def metadata(self) -> dict:
        """GET /metadata's answer."""
        meta = self.served.metadata
        return {**meta, "limits": {**meta["limits"], "max_body_bytes": self.max_body}}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.api(scope, receive, send)  # the lifespan, when the server sends one
            return
        started = time.perf_counter()
        path, status = scope["path"], [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            if self.key is not None and path not in OPEN_PATHS and not self._allowed(scope):
                await reply(
                    sending,
                    Refused(
                        401,
                        "a valid API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                        headers=[(b"www-authenticate", b"Bearer")],
                    ),
                )
            elif path == "/predict" and scope["method"] == "POST":
                await self.predict(scope, receive, sending)
            elif path in self.ANSWERED and scope["method"] in ("GET", "HEAD"):
                await self.ANSWERED[path](self, sending)
            else:
                await self.api(scope, receive, sending)
        finally:
            self.metrics.in_flight -= 1
            self.metrics.request(path, status[0], time.perf_counter() - started)

    async def _healthz(self, send) -> None:
        await send_json(send, 200, orjson.dumps(self.health()))

    async def _metadata(self, send) -> None:
        await send_json(send, 200, orjson.dumps(self.metadata()))

    async def _metrics(self, send) -> None:
        text, content_type = self.metrics.text()
        await send_body(send, 200, text, [(b"content-type", content_type.encode())])

    ANSWERED: ClassVar[dict] = {"/healthz": _healthz, "/metadata": _metadata, "/metrics": _metrics}

    def _allowed(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                given = value
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
            else:
                continue
            if hmac.compare_digest(given, self.key):
                return True
        return False

    async def predict(self, scope, receive, send) -> None:
        try:
            with self.bodies.hold() as hold:  # the body, and what is made of it, until answered
                body = await read_body(scope, receive, self.max_body, hold)
                if body is None:
                    return  # the client left
                payload = await self.parse(scope, body)
                answer = await self.answer(payload)
        except Refused as refused:
            await reply(send, refused)
            return
        except Exception:
            log.exception("POST /predict failed")
            await reply(send, Refused(500, "the server failed to answer (its log has why)"))
            return
        await send_json(send, 200, answer)

    async def parse(self, scope, body: bytes):
        content_type = header(scope, b"content-type")
        if content_type.startswith(b"multipart/form-data"):
            return {"files": await multipart_files(scope, body)}
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if str(exc).startswith("depth limit"):
                raise Refused(
                    400, "the body nests deeper than a request needs; send flat JSON"
                ) from None
            raise Refused(400, f"the body is not JSON ({exc})") from None

    async def respond(self, payload) -> tuple[int, bytes]:
        """(status, JSON body) for a parsed body: `answer`, or the refusal."""
        try:
            return 200, await self.answer(payload)
        except Refused as refused:
            return refused.status, orjson.dumps(refused.body)

    async def answer(self, payload) -> bytes:
        """The JSON answer to a parsed body (a Refused for a client's mistake)."""
        served = self.served
        try:
            samples, unseen = served.samples(payload)
            results = await self.batcher(samples)
        except TooMany as problem:
            raise Refused(413, str(problem)) from None
        except RowProblem as problem:
            raise Refused(422, problem.message, problem.row, problem.field) from None
        return orjson.dumps(served.answer(results, unseen))


class Bodies:
    """The bytes of request bodies this process holds at once: past `limit`, a request is
    refused (503, retry in a second), so a flood of large bodies cannot exhaust the memory.
    Bytes count as they arrive (a client that only declares a large body holds nothing)."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    def hold(self) -> Hold:
        return Hold(self)


class Hold:
    """One request's share of `Bodies`: `take(n)` within the `with` block, all given back
    at its end."""

    __slots__ = ("bodies", "taken")

    def __init__(self, bodies: Bodies):
        self.bodies, self.taken = bodies, 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.bodies.held -= self.taken

    def take(self, n: int) -> None:
        bodies = self.bodies
        if bodies.held + n > bodies.limit:
            raise Refused(
                503,
                f"the server holds {bodies.held >> 20} MB of request bodies, at its limit "
                f"of {bodies.limit >> 20} MB; retry in a moment",
                headers=[(b"retry-after", b"1")],
            )
        bodies.held += n
        self.taken += n


async def read_body(scope, receive, limit: int, hold: Hold) -> bytes | None:
    """The request body (None when the client disconnected); a 413 Refused past `limit`;
    each chunk's bytes are taken into `hold` as they arrive (a 503 Refused past its limit)."""
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        hold.take(len(chunk))
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> Refused:
    # Answered at once; uvicorn drops the rest of the body as it comes (within the
    # request's deadline), so the client reads the 413 instead of a reset connection.
    return Refused(413, f"the body is over {limit >> 20} MB; send the samples in parts")


async def multipart_files(scope, body: bytes) -> list[bytes]:
    """The files of a multipart/form-data body, in order (Starlette's parser)."""
    from starlette.requests import Request

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(scope, replay).form(max_files=MAX_ROWS, max_fields=MAX_ROWS)
    except Exception as exc:  # noqa: BLE001 - the parser's errors for a malformed body vary
        raise Refused(400, f"the multipart body cannot be read ({exc})") from None
    files = [value for _, value in form.multi_items() if hasattr(value, "read")]
    if not files:
        raise Refused(422, "the multipart body holds no file; send each as a 'files' part")
    return [await f.read() for f in files]


def header(scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return b""


async def send_json(send, status: int, body: bytes, headers=()) -> None:
    await send_body(send, status, body, [*JSON, *headers])


async def send_body(send, status: int, body: bytes, headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def reply(send, refused: Refused) -> None:
    await send_json(send, refused.status, orjson.dumps(refused.body), refused.headers)


__all__ = ["MAX_BODY", "MAX_HELD", "Front", "Refused"]
