"""The issue-13 figures from the tensor-parallel bench folders: `tp_gpu.sh` runs it after each part.

    python3 benchmarks/tp_summary.py OUT_DIR   (OUT_DIR holds llama-3.1-70b-tp2/, llama-3.1-8b-tp1/,
                                                llama-3.1-8b-tp2/ and kept.json; any may be missing)

Writes OUT_DIR/summary.json and OUT_DIR/summary.md: per 70B length, slim's TTFT speedup over hf
on the same GPUs, its schedule's FLOP ideal and decode ms/token of both; the 8B slim TTFT on 1 vs
2 GPUs; whether the ranks kept the same positions. Targets: 70B >= 2.8x at 128k and within 5% of
the FLOP ideal, decode no slower than hf; 8B 2 GPUs >= 1.7x faster than 1.
"""

from __future__ import annotations

import json
import os
import sys

from sliminfer.report import markdown_table, read_json, write_json


def rows(folder: str) -> list[dict]:
    data = read_json(os.path.join(folder, "results.json")) or {}
    return data.get("rows", [])


def main(out_dir: str) -> None:
    summary: dict = {"llama-3.1-70b": [], "llama-3.1-8b": []}
    big = rows(os.path.join(out_dir, "llama-3.1-70b-tp2"))
    for row in big:
        if row["method"] == "hf":
            continue
        hf = next((r for r in big if r["method"] == "hf" and r["length"] == row["length"]), None)
        speedup = row["ttft_speedup_vs_hf"]
        summary["llama-3.1-70b"].append({
            "length": row["length"],
            "method": row["method"],
            "ttft_s": row["ttft_s"],
            "hf_ttft_s": hf and hf["ttft_s"],
            "ttft_speedup_vs_hf": speedup,
            "flop_ideal_speedup": row["flop_ideal_speedup"],
            "share_of_ideal": speedup and speedup / row["flop_ideal_speedup"],
            "decode_ms_per_token": row["decode_ms_per_token"],
            "hf_decode_ms_per_token": hf and hf["decode_ms_per_token"],
        })
    one = {r["length"]: r for r in rows(os.path.join(out_dir, "llama-3.1-8b-tp1")) if r["method"] == "slim"}
    for row in rows(os.path.join(out_dir, "llama-3.1-8b-tp2")):
        if row["method"] == "slim" and row["length"] in one:
            summary["llama-3.1-8b"].append({
                "length": row["length"],
                "slim_ttft_1_gpu_s": one[row["length"]]["ttft_s"],
                "slim_ttft_2_gpus_s": row["ttft_s"],
                "speedup_2_over_1": one[row["length"]]["ttft_s"] / row["ttft_s"],
            })
    kept = read_json(os.path.join(out_dir, "kept.json"))
    if kept:
        summary["kept_check"] = {k: kept[k] for k in ("model", "prompt_tokens", "ranks", "kept_positions_identical", "decode_tokens_identical")}
    write_json(os.path.join(out_dir, "summary.json"), summary)
    lines = ["# Tensor parallelism (issue 13): summary", ""]
    if summary["llama-3.1-70b"]:
        lines += ["Llama-3.1-70B architecture (random bf16 weights), 2 GPUs, slim vs hf with the same TP:", ""]
        headers = ("prompt tokens", "method", "TTFT s", "hf TTFT s", "TTFT x hf", "FLOP-ideal x", "share of ideal", "decode ms/tok", "hf decode ms/tok")
        body = [[r["length"], r["method"], r["ttft_s"], _dash(r["hf_ttft_s"]), _dash(r["ttft_speedup_vs_hf"]), r["flop_ideal_speedup"],
                 _dash(r["share_of_ideal"]), r["decode_ms_per_token"], _dash(r["hf_decode_ms_per_token"])] for r in summary["llama-3.1-70b"]]
        lines += [markdown_table(headers, body), ""]
    if summary["llama-3.1-8b"]:
        lines += ["Llama-3.1-8B architecture, slim TTFT on 1 GPU vs 2 GPUs (TP 2):", ""]
        headers = ("prompt tokens", "1 GPU s", "2 GPUs s", "2 over 1 x")
        body = [[r["length"], r["slim_ttft_1_gpu_s"], r["slim_ttft_2_gpus_s"], r["speedup_2_over_1"]] for r in summary["llama-3.1-8b"]]
        lines += [markdown_table(headers, body), ""]
    if kept:
        lines.append(f"Kept positions per layer identical across ranks ({kept['model']}, {kept['prompt_tokens']} tokens, "
                     f"{kept['ranks']} ranks): {kept['kept_positions_identical']}; decode tokens identical: {kept['decode_tokens_identical']}.")
    with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print(json.dumps(summary, indent=1))


def _dash(value: float | None) -> float | str:
    return "-" if value is None else value


if __name__ == "__main__":
    main(sys.argv[1])
