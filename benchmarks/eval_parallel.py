"""`sliminfer eval` with one process per method, spread over GPUs, merged into one result.

Accuracy runs on small models are bound by the host (Python launching decode kernels), not by
the GPU, so one process per method, several to a GPU, finish several times sooner than one
process running the methods in turn. Each method writes OUT/methods/<its label>/ (its own
results.json, a resumable `sliminfer eval` folder, and eval.log); at the end the records of every
folder under OUT/methods are merged into OUT/results.json, and OUT/table.md and the plots are
written from them, exactly as one `sliminfer eval --out OUT` run with every method would have
written them. So methods may be added by later runs into the same OUT (e.g. full while a preset
is calibrated, then the preset's methods with --config). TTFT in such a run is measured while
other processes share the GPU: quote it only as a rough figure.

Usage:
    python3 benchmarks/eval_parallel.py [--gpus 0,1] [--time-limit S] [--resume-from RESULTS ...] -- EVAL_ARGS...
    python3 benchmarks/eval_parallel.py --merge-only OUT
EVAL_ARGS are `sliminfer eval`'s, with `--methods LIST` and `--out DIR` among them. After
--time-limit seconds each process is interrupted (it saves what it has) and the merge covers
what finished. --resume-from (repeatable) takes a merged results.json of an earlier run (e.g. a
committed one): a method with no folder yet starts from that run's records of the same label, so only its
missing samples run. Eval checks the run's identity (suite, model path, seed, chat) and reuses
a record only where its config equals the one the label resolves to now (every knob spelled
out, `methods.config_key`): a slim label whose preset has changed since runs again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import subprocess
import sys
import time

from sliminfer.config import SlimConfig
from sliminfer.eval.evaluate import write_reports
from sliminfer.eval.results import record_key
from sliminfer.methods import Method, config_key, kind_of, split_top_level
from sliminfer.report import read_json, write_json

# The CLI with SIGINT raising KeyboardInterrupt: eval then saves its table and exits 130.
CLI = """import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from sliminfer.cli.main import main
sys.exit(main(sys.argv[1:]))"""
GRACE_S = 60


def take_option(args: list[str], flag: str) -> tuple[str, list[str]]:
    """The value of `flag VALUE` in `args` and `args` without it (a missing flag exits)."""
    if flag not in args or args.index(flag) + 1 >= len(args):
        sys.exit(f"eval_parallel.py: the eval arguments need {flag} VALUE")
    at = args.index(flag)
    return args[at + 1], args[:at] + args[at + 2 :]


def method_folder(out: str, label: str) -> str:
    """OUT/methods/<label as a file name> (long labels shortened, a digest keeps them apart)."""
    name = re.sub(r"[^A-Za-z0-9._=+-]", "_", label)
    if len(name) > 80:
        name = f"{name[:60]}-{hashlib.sha1(label.encode()).hexdigest()[:12]}"
    return os.path.join(out, "methods", name)


def seed_from(merged_paths: list[str], methods: list[str], out: str) -> None:
    """Start each method's folder, if it has no results yet, from the records of the same label
    in `merged_paths`, one per result key, the first file's where several have it (eval then
    reuses those whose config still matches)."""
    merged = [read_json(path) for path in merged_paths]
    for label in methods:
        path = os.path.join(method_folder(out, label), "results.json")
        sources = [run for run in merged if label in run["settings"]["methods"]]
        records = list({record_key(r): r for run in reversed(sources) for r in run["records"] if r["method"] == label}.values())
        if not records or os.path.exists(path):
            continue
        settings = sources[0]["settings"]
        own = dict(settings, methods={label: settings["methods"][label]}, command=settings["method_commands"][label])
        own.pop("method_commands")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_json(path, {"settings": own, "environment": sources[0]["environment"], "records": records})
        print(f"eval_parallel.py: {label} resumes from {len(records)} records of {len(sources)} run(s)", flush=True)


def launch(eval_args: list[str], methods: list[str], out: str, gpus: list[str]) -> list[subprocess.Popen]:
    """One eval process per method. Each gets a share of the host's cores for torch's CPU threads
    (unless OMP_NUM_THREADS is set): by default every process would start one thread per core,
    and a dozen processes on 16 cores then thrash on their host-side work."""
    processes = []
    threads = str(max(1, (os.cpu_count() or 1) // len(methods)))
    for index, method in enumerate(methods):
        folder = method_folder(out, method)
        os.makedirs(folder, exist_ok=True)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpus[index % len(gpus)])
        env.setdefault("OMP_NUM_THREADS", threads)
        command = [sys.executable, "-c", CLI, "eval", *eval_args, "--methods", method, "--out", folder]
        log = open(os.path.join(folder, "eval.log"), "w", encoding="utf-8")  # noqa: SIM115 (lives with the process)
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        print(f"eval_parallel.py: GPU {env['CUDA_VISIBLE_DEVICES']}: {method} -> {folder}", flush=True)
    return processes


def wait(processes: list[subprocess.Popen], time_limit: float) -> list[int]:
    """Exit codes; past `time_limit` seconds (0: none) each process gets SIGINT, then a grace."""
    deadline = time.monotonic() + time_limit if time_limit else None
    while any(p.poll() is None for p in processes):
        if deadline is not None and time.monotonic() > deadline:
            for p in processes:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            deadline = None
            try:
                for p in processes:
                    p.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                for p in processes:
                    p.kill()
        time.sleep(1)
    return [p.wait() for p in processes]


def merge(out: str, command: list[str]) -> str:
    """Merge OUT/methods/*/results.json into OUT/results.json and write the reports; the table."""
    folders = sorted(os.scandir(os.path.join(out, "methods")), key=lambda entry: entry.stat().st_mtime)
    parts = [read_json(os.path.join(entry.path, "results.json"), default=None) for entry in folders]
    parts = [part for part in parts if part is not None]
    if not parts:
        sys.exit("eval_parallel.py: no method saved any result (see OUT/methods/*/eval.log)")
    settings = dict(parts[0]["settings"], command=command)
    settings["methods"] = {label: config for part in parts for label, config in part["settings"]["methods"].items()}
    settings["method_commands"] = {label: part["settings"]["command"] for part in parts for label in part["settings"]["methods"]}
    # A folder seeded by --resume-from may hold records of a config its label no longer means.
    records = []
    for part in parts:
        current = {label: config_key(config) for label, config in part["settings"]["methods"].items()}
        records += [record for record in part["records"] if config_key(record["config"]) == current[record["method"]]]
    write_json(os.path.join(out, "results.json"), {"settings": settings, "environment": parts[0]["environment"], "records": records})
    methods = [
        Method(label, kind_of(label), SlimConfig.from_dict(config) if config else None)
        for label, config in settings["methods"].items()
    ]
    title = f"sliminfer eval: {settings['suite']} on {settings['model']}"
    _, table, _ = write_reports(out, records, methods, settings["tasks"], settings["lengths"], title)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", default="0", help="comma-separated GPU ids, methods assigned round-robin")
    parser.add_argument("--time-limit", type=float, default=0.0, help="seconds before the processes are interrupted")
    parser.add_argument("--merge-only", metavar="OUT", help="only merge OUT/methods/* into OUT and write the reports")
    parser.add_argument(
        "--resume-from", metavar="RESULTS", action="append", default=[], help="a merged results.json whose records new method folders start from (repeatable)"
    )
    parser.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then sliminfer eval's arguments")
    args = parser.parse_args()
    command = ["python3", "benchmarks/eval_parallel.py", *sys.argv[1:]]
    if args.merge_only:
        print(merge(args.merge_only, command))
        return 0
    eval_args = args.eval_args[1:] if args.eval_args[:1] == ["--"] else args.eval_args
    methods_text, eval_args = take_option(eval_args, "--methods")
    out, eval_args = take_option(eval_args, "--out")
    methods = split_top_level(methods_text)
    if args.resume_from:
        seed_from(args.resume_from, methods, out)
    processes = launch(eval_args, methods, out, args.gpus.split(","))
    codes = wait(processes, args.time_limit)
    print(f"eval_parallel.py: exit codes {dict(zip(methods, codes, strict=True))}", flush=True)
    print(merge(out, command))
    return 0 if all(code in (0, 130) for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
