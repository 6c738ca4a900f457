"""Stage 8, serving a finished run over HTTP (`dlcli serve`).

- `served`: the run made ready to answer (what a request holds, how it becomes the model's
  input, the answer `predict` gives); `engines`: what computes the outputs (the verified ONNX
  copy on onnxruntime, or the Keras model called directly).
- `batching`: concurrent requests answered by one model call.
- `app`: the ASGI application (`POST /predict` on its own lean path, limits, API key);
  `api`: the FastAPI routes and the OpenAPI document; `metrics`: Prometheus' counters.
- `server`: uvicorn on a socket dlcli binds, its workers, slow clients, signals.

Imports the stages before it (`use` to load a run); never `tuning` or `cli`.
"""
