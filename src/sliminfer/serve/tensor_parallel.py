"""`sliminfer serve` under torchrun: rank 0 serves HTTP, the other ranks follow its generations.

Every tensor-parallel rank must run each generation's collectives in the same order, but only
rank 0 has clients. So rank 0's model thread hands each request to the others (`broadcast`)
before running it, and the others loop on what it hands them. Everything a generation decides
(kept blocks, sampled tokens, EOS, stop strings, the token budget) is already identical on all
ranks; the one decision rank 0 makes alone, that its client went away, is agreed on at every
poll (`any_rank`), so all ranks stop at the same token. `None` ends the followers' loop.

Ctrl-C reaches every rank; the followers ignore it and wait for rank 0, which stops serving
gracefully and then sends the `None` (a follower gone first would leave rank 0 hanging).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

from .. import parallel
from ..errors import UserError
from .engine import Runner
from .schemas import GenerationRequest

log = logging.getLogger(__name__)


def leader(runner: Runner) -> Runner:
    """Rank 0's runner: the same generation, announced to the other ranks first."""

    def run(request: GenerationRequest, on_text: Callable[[str], None] | None, should_stop: Callable[[], bool]):
        parallel.broadcast(request)
        return runner(request, on_text, lambda: parallel.any_rank(should_stop()))

    return run


def follow(runner: Runner) -> None:
    """Ranks > 0: run each request rank 0 announces, until it announces `None` (shutdown)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while (request := parallel.broadcast(None)) is not None:
        try:
            runner(request, None, lambda: parallel.any_rank(False))
        except UserError as exc:  # rank 0 fails the same way and tells its client
            log.debug("request failed on this rank too: %s", exc)


def stop_followers() -> None:
    """Rank 0, after the server stopped: end the other ranks' loops."""
    parallel.broadcast(None)
