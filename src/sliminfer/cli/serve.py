"""`sliminfer serve`: load one model and serve it over an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

from .. import parallel
from ..errors import UserError
from ..serve.engine import DEFAULT_MAX_QUEUE
from .options import add_config_options, add_model_options, add_parallel_options, resolve_config

logger = logging.getLogger(__name__)

API_KEY_ENV = "SLIMINFER_API_KEY"
GRACEFUL_SHUTDOWN_S = 5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /metrics)",
        description="Serve one model over an OpenAI-compatible HTTP API. Requests queue FIFO for one "
        "generation thread; a full queue answers 429 with Retry-After.",
    )
    add_model_options(parser)
    add_parallel_options(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' on every endpoint but /health (default: ${API_KEY_ENV})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help=f"requests that may wait while one runs; more get 429 (default: {DEFAULT_MAX_QUEUE})",
    )
    add_config_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.max_queue < 0:
        raise UserError(f"--max-queue {args.max_queue}: must be >= 0")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be in [0, 65535]")
    try:
        import uvicorn

        from ..serve.app import create_app
    except ImportError as exc:
        raise UserError(f"sliminfer serve needs the serve extra ({exc}): pip install 'sliminfer[serve]'") from None
    from ..loading import load_model
    from ..serve.engine import model_runner
    from ..serve.tensor_parallel import follow, leader, stop_followers

    loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    config = resolve_config(args, loaded.default_config)
    config.check_model(loaded.model.config.num_hidden_layers)
    if not parallel.is_main():
        follow(model_runner(loaded))
        return 0
    runner = leader(model_runner(loaded)) if parallel.is_distributed() else None
    app = create_app(loaded, config, api_key=args.api_key, max_queue=args.max_queue, runner=runner)
    if not args.api_key and not _is_loopback(args.host):
        logger.warning("serving on %s without --api-key: anyone who reaches this port can use it", args.host)
    auth = ", API key required" if args.api_key else ""
    print(
        f"sliminfer serve: {loaded.name} on http://{args.host}:{args.port} (max queue {args.max_queue}{auth})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info" if args.verbose else "warning",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    if parallel.is_distributed():
        stop_followers()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
