"""`python -m sliminfer` (what `torchrun -m sliminfer` runs on each rank): the CLI."""

import sys

from .cli.main import main

sys.exit(main())
