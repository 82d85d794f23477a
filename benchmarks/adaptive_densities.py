"""The block densities an adaptive sparse prefill computed on real prompts at 32k, for timing.

The kernel target of issue 12 is stated at "the density the adaptive mode picks on the real model
at 32k": this reads eval results (RULER records carry each prompt's `sparse_density`) and prints
the mean density at 32k of each results file as a comma-separated list (sorted, distinct), the
form `sparse_kernel_gpu.py --densities` takes. Per file, what it read goes to stderr.

Usage: python3 benchmarks/adaptive_densities.py GLOB [GLOB ...]
"""

from __future__ import annotations

import glob
import sys

from sliminfer.report import read_json

LENGTH = 32768


def mean_density(path: str) -> tuple[float, int] | None:
    """The mean `sparse_density` of a results file's 32k records and their count (None if none)."""
    records = read_json(path)["records"]
    values = [r["sparse_density"] for r in records if r["length"] == LENGTH and r.get("sparse_density") is not None]
    return (sum(values) / len(values), len(values)) if values else None


def main(patterns: list[str]) -> int:
    shares = set()
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            found = mean_density(path)
            if found:
                shares.add(round(found[0], 3))
                print(f"{path}: mean adaptive density at 32k {found[0]:.3f} over {found[1]} prompts", file=sys.stderr)
    print(",".join(map(str, sorted(shares))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
