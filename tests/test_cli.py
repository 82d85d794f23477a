"""CLI contract: exit code 2 with one line naming the problem; --json keys; the entry point runs."""

import json
import subprocess
import sys

import pytest

from sliminfer.cli.main import main

pytestmark = pytest.mark.slow

JSON_KEYS = {
    "text", "prompt_tokens", "new_tokens", "ttft_s", "total_s", "method", "config",
    "kept_tokens_per_layer", "kv_cache_bytes",
}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(capsys, expected, *argv):
    code, _, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "error:" in lines[0] and expected in lines[0], err


def test_missing_model_path(capsys):
    assert_user_error(capsys, "model '/no/such/model' not found", "generate", "--model", "/no/such/model", "--prompt", "hi")


def test_unknown_model_type(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert_user_error(capsys, "model type 'gpt2' is not supported", "generate", "--model", str(tmp_path), "--prompt", "hi")


def test_missing_prompt_file(capsys):
    assert_user_error(capsys, "prompt file 'nope.txt' does not exist", "generate", "--prompt-file", "nope.txt")


def test_bad_config_values(capsys, tmp_path):
    assert_user_error(capsys, "gamma=3: must be in [0, 1]", "generate", "--prompt", "hi", "--set", "gamma=3")
    assert_user_error(capsys, "keep_schedule layer 40: must be < the model's 30 layers",
                      "generate", "--prompt", "hi", "--set", "keep_schedule=40:0.2")
    assert_user_error(capsys, "unknown config key(s) ['speed']", "generate", "--prompt", "hi", "--set", "speed=2")
    assert_user_error(capsys, "max_new_tokens=0", "generate", "--prompt", "hi", "--max-new-tokens", "0")


def test_empty_and_too_long_prompts(capsys, tmp_path):
    assert_user_error(capsys, "prompt is empty", "generate", "--prompt", "")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\t \n")
    assert_user_error(capsys, "prompt is empty", "generate", "--prompt-file", str(blank))
    long_prompt = tmp_path / "long.txt"
    long_prompt.write_text("apple banana " * 5000)
    assert_user_error(capsys, "but the model's context is 8192 tokens", "generate", "--prompt-file", str(long_prompt))


def test_json_output_has_the_contract_keys(capsys):
    code, out, _ = run_cli(capsys, "generate", "--prompt", "The capital of France is", "--max-new-tokens", "4", "--json", "--method", "full")
    assert code == 0
    result = json.loads(out)
    assert JSON_KEYS <= set(result)
    assert result["method"] == "full" and result["new_tokens"] <= 4 and len(result["kept_tokens_per_layer"]) == 30
    assert "Paris" in result["text"]


def test_a_file_that_is_not_gguf_fails_before_any_conversion(capsys, tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_text("not a model")
    code, _, err = run_cli(capsys, "generate", "--model", str(fake), "--prompt", "hi")
    assert code == 2 and "is not a GGUF file" in err and "de-quantizing" not in err


def test_short_prompts_are_labelled_unpruned(capsys):
    code, _, err = run_cli(capsys, "generate", "--prompt", "The capital of France is", "--max-new-tokens", "2")
    assert code == 0 and "[slim, unpruned (< min_prompt_tokens)]" in err


def test_info_reports_model_and_default_config(capsys):
    code, out, _ = run_cli(capsys, "info")
    info = json.loads(out)
    assert code == 0 and info["model"]["layers"] == 30 and info["default_config"]["block_size"] == 64


def test_entry_point_streams_text_and_reads_stdin():
    done = subprocess.run(
        [sys.executable, "-m", "sliminfer.cli.main", "generate", "--max-new-tokens", "3", "--method", "full"],
        input="The capital of France is", capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Paris" in done.stdout and "TTFT" in done.stderr
