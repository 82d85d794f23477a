import dataclasses
import json

import pytest
import torch

from sliminfer.attention import use_sliminfer_attention
from sliminfer.cache import SlimCache
from sliminfer.calibration.probe import ProbedPrompt, layer_block_scores, needle_token_spans
from sliminfer.calibration.run import check_lengths, check_output_path, no_more_generous
from sliminfer.calibration.search import (
    Candidate,
    candidates,
    kept_after,
    pareto_front,
    pin_source,
    ranked_choices,
    recall,
)
from sliminfer.cli.main import main
from sliminfer.config import SlimConfig, load_config_file
from sliminfer.errors import UserError
from sliminfer.models import ModelShape
from sliminfer.prefill import slim_prefill
from sliminfer.scoring import forced_blocks
from tiny import TINY_SLIM, random_ids

CONFIG = SlimConfig(block_size=4, unit_size=2, window=4, sink_tokens=1, min_prompt_tokens=0, min_keep_tokens=0)
SHAPE = ModelShape(hidden=64, layers=4, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=256)


def prompt_finding(needle_block: int, finder_layers: set[int], n_blocks: int = 20, num_layers: int = 4) -> ProbedPrompt:
    """A probe result where only `finder_layers` rank the needle's block first; the others
    rank recent blocks first (they point away from the needle)."""
    scores = torch.stack([
        torch.arange(n_blocks, dtype=torch.float32) + (100.0 if layer in finder_layers else 0.0) * (torch.arange(n_blocks) == needle_block)
        for layer in range(num_layers)
    ])
    forced = torch.zeros(n_blocks, dtype=torch.bool)
    forced[0] = forced[-1] = True
    return ProbedPrompt("passkey", 80, 0, n_blocks * 4, scores / scores.sum(1, keepdim=True), ((needle_block,),), forced)


def test_recall_counts_needles_that_survive_every_cut():
    probed = [prompt_finding(3, {2}), prompt_finding(5, {1, 2})]
    assert recall(probed, [(0.25, (2,))], CONFIG) == 1.0
    assert recall(probed, [(0.25, (1,))], CONFIG) == 0.5
    assert recall(probed, [(0.25, (0,))], CONFIG) == 0.0
    assert recall(probed, [(0.5, (2,)), (0.25, (0,))], CONFIG) == 0.0
    kept = kept_after(probed[0], [(0.25, (2,))], CONFIG)
    assert {0, 19, 3} <= kept and len(kept) == 5


def test_search_decouples_score_layers_from_the_cut():
    """Only layer 2 finds the needles: the cheapest schedule at full recall cuts at 3, scored by 2."""
    probed = [prompt_finding(block, {2}) for block in (3, 7, 12)]
    found, singles = candidates(probed, CONFIG, SHAPE, 80)
    assert singles[0.25] == [0.0, 0.0, 1.0, 0.0]
    cheapest = min((c for c in found if c.recall == 1.0), key=lambda c: c.flop_fraction)
    # Keep 0.1 leaves only the two forced blocks of 20; 0.15 adds the needle's.
    assert cheapest.keep_schedule == ((3, 0.15),) and cheapest.score_layers == ((2,),)
    best = ranked_choices(found, probed, CONFIG, 1.0, 1.0)[0]
    # Within any budget the choice keeps the needles even at half its keep: 0.15 -> 0.075 would not.
    assert best.score_layers[0] == (2,) and best.margin == 1.0
    config = best.config(CONFIG)
    assert config.preserve_layers == best.keep_schedule[0][0] and config.score_layers == best.score_layers
    front = pareto_front(found)
    assert all(a.flop_fraction <= b.flop_fraction and a.recall < b.recall for a, b in zip(front, front[1:], strict=False))
    assert ranked_choices(found, probed, CONFIG, 1.0, max_flop_fraction=0.01) == []
    budget = sorted(c.flop_fraction for c in found if c.recall == 1.0)[1]
    within = ranked_choices(found, probed, CONFIG, 1.0, budget)
    assert within and all(c.flop_fraction <= budget for c in within)
    assert [c.margin for c in within] == sorted((c.margin for c in within), reverse=True)


def test_pins_come_from_the_deepest_cut_only_when_its_layers_find_more():
    singles = {0.1: [0.2, 0.5, 0.9, 0.5], 0.25: [1.0, 1.0, 1.0, 1.0]}
    two_cuts = Candidate(((2, 0.5), (3, 0.1)), ((1,), (2,)), 1.0, 0.4)
    assert pin_source(two_cuts, singles) == "deepest"  # layer 2 finds 0.9 at keep 0.1, layer 1 0.5
    assert pin_source(dataclasses.replace(two_cuts, score_layers=((1,), (3,))), singles) == "cut"  # a tie keeps the cut's own
    assert pin_source(dataclasses.replace(two_cuts, score_layers=((0, 2), (1,))), singles) == "cut"
    assert pin_source(Candidate(((3, 0.1),), ((2,),), 1.0, 0.4), singles) == "cut"


def test_candidate_round_trips_through_json():
    candidate = Candidate(((3, 0.25),), ((2,),), 0.97, 0.5)
    assert candidate.to_dict() == {"keep_schedule": [[3, 0.25]], "score_layers": [[2]], "recall": 0.97, "flop_fraction": 0.5}


def test_needle_token_spans_cover_every_occurrence():
    text = "ab 123 cd 123"
    offsets = [(0, 0), (0, 2), (2, 3), (3, 6), (6, 9), (9, 10), (10, 13)]
    assert needle_token_spans(text, offsets, ("123",)) == [[3, 6]]
    with pytest.raises(UserError, match="lost its needle"):
        needle_token_spans(text, offsets, ("999",))


@torch.inference_mode()
def test_probe_scores_are_what_a_cut_would_rank_by(tiny_llama):
    """Layer 0's probe scores choose exactly the blocks slim prefill keeps at a cut at layer 1."""
    n = 203
    ids = random_ids(n, seed=9)
    config = dataclasses.replace(TINY_SLIM, keep_schedule=((1, 0.25),))
    scores = layer_block_scores(tiny_llama, ids, config)
    assert scores.shape == (4, 13) and torch.allclose(scores.sum(1), torch.ones(4))
    cache = SlimCache(4)
    with use_sliminfer_attention(tiny_llama.model):
        result = slim_prefill(tiny_llama.model, ids, cache, config)
    kept = (result.kept_positions[1][0, :: config.block_size] // config.block_size).tolist()
    forced = forced_blocks(n, config.block_size, config.sink_tokens, config.window)
    prompt = ProbedPrompt("passkey", n, 0, n, scores, ((kept[1],),), forced)
    assert sorted(kept_after(prompt, [(0.25, (0,))], config)) == kept


def test_bad_lengths_and_outputs_are_one_line_errors(tiny_llama, tmp_path):
    short = dataclasses.replace(tiny_llama, max_context=2048)
    with pytest.raises(UserError, match="calibration needs >= 4096"):
        check_lengths(short, (1024,))
    with pytest.raises(UserError, match="longer than the model's context"):
        check_lengths(dataclasses.replace(tiny_llama, max_context=8192), (16384,))
    with pytest.raises(UserError, match="does not exist"):
        check_output_path(str(tmp_path / "missing" / "preset.json"))


def test_cli_rejects_an_unwritable_output_before_loading(capsys, tmp_path):
    assert main(["calibrate", "--out", str(tmp_path / "nope" / "p.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert main(["calibrate", "--target-recall", "1.5", "--out", str(tmp_path / "p.json")]) == 2
    assert "--target-recall 1.5: must be in (0, 1]" in capsys.readouterr().err


def test_preset_files_are_read_by_config_loading(tmp_path):
    path = tmp_path / "preset.json"
    config = SlimConfig(preserve_layers=4, keep_schedule=((4, 0.2),), score_layers=((3,),))
    path.write_text(json.dumps({"config": config.to_dict(), "calibration": {"model": "x"}}))
    assert load_config_file(str(path)) == config


@pytest.mark.slow
def test_calibrate_on_the_embedded_model_writes_a_preset_generate_reads(tmp_path, capsys):
    out = tmp_path / "preset.json"
    code = main([
        "calibrate", "--lengths", "2k", "--prompts", "3", "--verify", "1", "--tries", "3",
        "--target-recall", "0.6", "--reference-length", "8k", "--out", str(out),
    ])
    assert code == 0, capsys.readouterr().err
    preset = json.loads(out.read_text())
    calibration = preset["calibration"]
    assert calibration["probe"]["lengths"] == [2048] and len(calibration["layer_recall"]["0.25"]) == 30
    command = calibration["command"]
    assert command[:4] == ["sliminfer", "calibrate", "--model", "default"] and command[command.index("--lengths") + 1] == "2k"
    assert calibration["chosen"]["recall"] >= 0.6 and calibration["verification"][-1]["passed"]
    config = load_config_file(str(out))
    assert [list(c) for c in config.keep_schedule] == calibration["chosen"]["keep_schedule"]
    assert config.pin_scores == calibration["pin_scores"] in ("cut", "deepest")
    assert "chosen" in capsys.readouterr().out


def test_after_a_failed_try_only_more_generous_schedules_are_tried():
    base = SlimConfig(min_keep_tokens=0)
    loser = Candidate(((12, 0.1),), ((11,),), 0.98, 0.52)
    assert no_more_generous(Candidate(((12, 0.1),), ((10,),), 0.98, 0.52), loser, base, 24, 32768)
    assert no_more_generous(Candidate(((8, 0.33), (10, 0.1)), ((7,), (9,)), 1.0, 0.37), loser, base, 24, 32768)
    assert not no_more_generous(Candidate(((12, 0.15),), ((11,),), 0.98, 0.53), loser, base, 24, 32768)
    assert not no_more_generous(Candidate(((13, 0.1),), ((11,),), 0.98, 0.55), loser, base, 24, 32768)
