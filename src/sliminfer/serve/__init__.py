"""`sliminfer serve`: an OpenAI-compatible HTTP server for one loaded model.

Endpoints: `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` (both with
`stream: true` as server-sent events), `GET /health` (never needs the API key) and
`GET /metrics` (Prometheus text).

Model ids: the server answers to the loaded model's name (`LoadedModel.name`, listed by
/v1/models) and to the alias `"default"`, meaning "the one model this process serves", so a
client configured for any sliminfer server works unchanged. `model` may also be left out. Any
other id is a 404.

Per request, an optional `sliminfer` object picks the method (`{"method": "full"}`) or overrides
`SlimConfig` knobs on the server's config (`{"keep_schedule": [[8, 0.2]]}`); answers carry a
`sliminfer` field with TTFT, queue wait, kept tokens per layer, KV bytes, method and config.

Layout: `schemas` validates bodies, `engine` runs generations on one model thread behind a
bounded FIFO queue, `responses` shapes OpenAI bodies and chunks, `prometheus` renders Prometheus
text, `app` wires them into FastAPI (`create_app`). `sliminfer.cli.serve` loads the model and
runs uvicorn. Nothing is imported here, so the CLI can read defaults without importing FastAPI.
"""
