import json

import pytest

from sliminfer.config import PRESETS, SlimConfig, load_config_file, preset_for
from sliminfer.errors import ConfigError


def test_defaults_are_valid_and_round_trip():
    config = SlimConfig()
    assert SlimConfig.from_dict(config.to_dict()) == config
    assert json.loads(json.dumps(config.to_dict()))["keep_schedule"] == [[8, 0.25]]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"unit_size": 7}, "unit_size=7: must divide block_size=64"),
        ({"block_size": 0}, "block_size=0: must be an integer >= 1"),
        ({"gamma": 1.5}, "gamma=1.5: must be in [0, 1]"),
        ({"window": -1}, "window=-1"),
        ({"unit_pooling": "median"}, "unit_pooling='median': must be one of"),
        ({"keep_schedule": [[4, 0.5]]}, "must be >= preserve_layers=8"),
        ({"keep_schedule": [[8, 0.2], [12, 0.3]]}, "must not increase with depth"),
        ({"keep_schedule": [[12, 0.2], [8, 0.1]]}, "must strictly increase"),
        ({"keep_schedule": [[8, 0.0]]}, "must be in (0, 1]"),
        ({"keep_schedule": 5}, "must be a list of (layer, keep_fraction) pairs"),
        ({"decode_budget": 0}, "decode_budget=0"),
        ({"decode_budget": 2.5}, "must be whole"),
        ({"kv_offload": "disk"}, "kv_offload='disk'"),
        ({"offload_preserve_layers": True}, "offload_preserve_layers=true: needs kv_offload=cpu"),
        ({"offload_preserve_layers": 1, "kv_offload": "cpu"}, "offload_preserve_layers=1: must be true or false"),
        ({"bogus": 1}, "unknown config key(s) ['bogus']"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        SlimConfig.from_dict(overrides)
    assert message in str(error.value)


def test_with_overrides_parses_json_and_schedule_shorthand():
    config = SlimConfig().with_overrides(["keep_schedule=8:0.3,16:0.1", "gamma=0.5", "unit_pooling=score_max"])
    assert config.keep_schedule == ((8, 0.3), (16, 0.1))
    assert config.gamma == 0.5 and config.unit_pooling == "score_max"
    assert SlimConfig().with_overrides(["keep_schedule=[[9, 0.2]]"]).keep_schedule == ((9, 0.2),)
    with pytest.raises(ConfigError, match="expected key=value"):
        SlimConfig().with_overrides(["gamma"])
    with pytest.raises(ConfigError, match="expected layer:keep pairs"):
        SlimConfig().with_overrides(["keep_schedule=8:x"])


def test_check_model_rejects_layers_past_the_model():
    with pytest.raises(ConfigError, match="keep_schedule layer 8: must be < the model's 4 layers"):
        SlimConfig(preserve_layers=2, keep_schedule=((8, 0.2),)).check_model(4)
    with pytest.raises(ConfigError, match="preserve_layers=8: must be < the model's 6 layers"):
        SlimConfig().check_model(6)


def test_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"gamma": 0.25, "keep_schedule": [[8, 0.5]]}))
    assert load_config_file(str(path)).gamma == 0.25
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(str(tmp_path / "missing.json"))
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(str(path))


def test_presets_fit_their_models():
    for model_type, layers, hidden in [*PRESETS, ("mistral", 40, 5120), ("llama", 2, 64)]:
        preset_for(model_type, layers, hidden).check_model(layers)
    assert preset_for("qwen2", 24, 896).score_layers == ((7,), (11,))
    assert preset_for("qwen2", 24, 1024) == SlimConfig(preserve_layers=6, keep_schedule=((6, 0.25),))


def test_only_acting_sparse_knobs_are_part_of_a_results_identity():
    from sliminfer.methods import config_key

    def key(**overrides):
        return config_key(SlimConfig(**overrides).to_dict())

    # Off: no sparse knob acts, so a preset that sets one keeps its dense records.
    assert key() == key(sparse_mass=0.85, sparse_estimate="last_queries", sparse_min_tokens=0)
    assert "sparse_mass" not in SlimConfig().acting_dict() and "gamma" in SlimConfig().acting_dict()
    # Adaptive reads the mass, not the density; fixed the density, not the mass.
    assert key(sparse_prefill="adaptive") != key(sparse_prefill="adaptive", sparse_mass=0.85)
    assert key(sparse_prefill="adaptive") == key(sparse_prefill="adaptive", sparse_density=0.3)
    assert key(sparse_prefill="fixed") != key(sparse_prefill="fixed", sparse_density=0.3)
    assert key(sparse_prefill="fixed") == key(sparse_prefill="fixed", sparse_mass=0.85)
    assert key(sparse_prefill="fixed") != key(sparse_prefill="adaptive")
    # Every other knob acts.
    assert key() != key(window=16)
