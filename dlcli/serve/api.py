"""The FastAPI side of a served run: the OpenAPI document (`/openapi.json`, its page at
`/docs`) of every endpoint. The front (`dlcli.serve.app.Front`) answers /predict, /healthz,
/metadata and /metrics itself; the routes here give the same answers through the same
calls, and are what the document describes.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, Field

from dlcli import __version__


class PredictRequest(BaseModel):
    """One of `rows`, `inputs`, `texts` or `files`, as the run's data (GET /metadata says
    which). Image, audio and text files may also come as multipart/form-data parts."""

    rows: list[dict[str, Any]] | None = Field(
        None, description="a table run: one object per row, raw values by column name"
    )
    inputs: list[list[Any]] | None = Field(
        None, description="an array run: one sample per entry, flat or in the model's shape"
    )
    texts: list[str] | None = Field(None, description="a text run: the documents")
    files: list[str] | None = Field(
        None, description="an image, audio or text run: each file's bytes in base64"
    )


class PredictAnswer(BaseModel):
    predictions: list[Any] = Field(description="a label per sample, or the predicted value(s)")
    probabilities: list[dict[str, float]] | None = Field(
        None, description="classification: each class label's probability"
    )
    unseen: dict[str, list[Any]] | None = Field(
        None, description="a table's categories never seen in training, by column"
    )


class Problem(BaseModel):
    error: str
    row: int | None = Field(None, description="the sample at fault, from 0")
    field: str | None = Field(None, description="the column or part at fault")


def make_api(front) -> FastAPI:
    served = front.served
    api = FastAPI(
        title=f"dlcli serve: {served.run.id}",
        version=__version__,
        description=(
            f"The model of run `{served.run.id}` ({served.metadata['task']}, "
            f"answered by {served.engine.name}). GET /metadata says what a request holds."
        ),
    )
    problems = {
        code: {"model": Problem, "description": text}
        for code, text in (
            (400, "the body is not JSON"),
            (401, "a missing or wrong API key"),
            (413, f"a body over {front.max_body >> 20} MB, or over the most samples"),
            (422, "a sample that does not fit the model (the row and field named)"),
        )
    }

    @api.post("/predict", response_model=PredictAnswer, responses=problems)
    async def predict(body: PredictRequest) -> Response:
        """Predictions for the samples, as `dlcli predict` gives them."""
        status, answer = await front.respond(body.model_dump(exclude_none=True))
        return Response(answer, status, media_type="application/json")

    @api.get("/healthz")
    async def healthz() -> dict:
        """200 once the model answers (the server starts listening only then)."""
        return front.health()

    @api.get("/metadata")
    async def metadata() -> dict:
        """The run, what a request holds (columns with their types and categories, or the
        sample shape), the classes, and the run's test metrics."""
        return front.metadata()

    @api.get("/metrics")
    async def metrics() -> Response:
        """Request counts and latency histograms in Prometheus' text format."""
        text, content_type = front.metrics.text()
        return Response(text, media_type=content_type)

    return api


__all__ = ["make_api"]
