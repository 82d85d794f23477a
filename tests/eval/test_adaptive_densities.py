"""benchmarks/adaptive_densities.py: the 32k densities an adaptive eval computed, for timing."""

import json


def _write(path, densities_by_length):
    records = [
        {"length": length, "sparse_density": density}
        for length, densities in densities_by_length.items()
        for density in densities
    ]
    path.write_text(json.dumps({"records": records}))


def test_prints_each_files_mean_density_at_32k_sorted_and_distinct(load_benchmark, tmp_path, capsys):
    script = load_benchmark("adaptive_densities")
    _write(tmp_path / "a.json", {32768: [0.2, 0.3], 16384: [0.9]})
    _write(tmp_path / "b.json", {32768: [0.1, None, 0.2]})  # a dense prompt has no density
    _write(tmp_path / "c.json", {32768: [0.25]})  # the same mean as a.json: timed once
    _write(tmp_path / "d.json", {16384: [0.5]})  # no 32k records: nothing to time
    assert script.main([str(tmp_path / "*.json")]) == 0
    assert capsys.readouterr().out.strip() == "0.15,0.25"
