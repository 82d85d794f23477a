"""`python -m sliminfer` (what `torchrun -m sliminfer` and `--tp N` run)."""

import sys

from .cli.main import main

sys.exit(main())
