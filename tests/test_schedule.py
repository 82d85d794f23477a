import pytest

from sliminfer.config import SlimConfig
from sliminfer.errors import ConfigError
from sliminfer.schedule import LayerPlan

BASE = dict(block_size=64, unit_size=8, window=32, sink_tokens=4, min_prompt_tokens=0, min_keep_tokens=0)


def plan(n=4096, layers=32, **overrides):
    return LayerPlan.build(SlimConfig(**{**BASE, **overrides}), n, layers)


def test_full_is_the_empty_plan():
    full = LayerPlan.build(None, 1000, 4)
    assert full == LayerPlan.full(1000, 4)
    assert not full.pruned and full.cuts == () and full.kept_tokens == (1000,) * 4
    assert full.prefill_fraction == 1.0 and full.score_layers == frozenset()


def test_short_prompts_get_the_full_plan():
    assert not plan(n=1000, min_prompt_tokens=1001).pruned


def test_one_cut_keeps_its_share_from_the_cut_on():
    p = plan(preserve_layers=8, keep_schedule=((8, 0.25),))
    assert p.kept_tokens == (4096,) * 8 + (1024,) * 24
    assert p.score_layers == {7} and p.cut_at(8).kept_blocks == 16 and p.cut_at(7) is None
    assert p.prefill_fraction == pytest.approx((8 * 4096 + 24 * 1024) / (32 * 4096))


def test_score_layers_are_separate_from_the_cut():
    p = plan(preserve_layers=6, keep_schedule=((6, 0.25), (12, 0.1)), score_layers=((3,), (5, 11)))
    assert [c.score_layers for c in p.cuts] == [(3,), (5, 11)]
    assert p.score_layers == {3, 5, 11}
    assert p.last_use(5) == 12 and p.last_use(3) == 6
    assert [c.decode_score_layer for c in p.cuts] == [3, 11]


def test_decode_groups_leave_the_decode_score_layers_resident():
    assert plan(preserve_layers=8, keep_schedule=((8, 0.25),)).decode_groups()[0][1] == tuple(range(8, 32))
    two = plan(layers=4, preserve_layers=1, keep_schedule=((1, 0.5), (3, 0.25)))
    assert [layers for _, layers in two.decode_groups()] == [(1,), (3,)]
    scored = plan(layers=6, preserve_layers=2, keep_schedule=((2, 0.5), (4, 0.25)), score_layers=((0,), (3,)))
    assert [layers for _, layers in scored.decode_groups()] == [(2,), (4, 5)]


def test_lagged_layers_end_at_the_first_decode_score_layer():
    config = SlimConfig(**BASE, preserve_layers=6, keep_schedule=((6, 0.25),), score_layers=((3,),),
                        kv_offload="cpu", offload_preserve_layers=True, decode_budget=0.25)
    assert LayerPlan.build(config, 4096, 24).lagged_layers(config) == (0, 1, 2)
    assert plan(keep_schedule=((8, 0.25),)).lagged_layers(SlimConfig()) == ()


@pytest.mark.parametrize("n", [4000, 4033, 5000])
def test_min_keep_tokens_floor_holds_with_a_partial_last_block(n):
    p = plan(n=n, preserve_layers=8, keep_schedule=((8, 0.01),), min_keep_tokens=1024)
    assert 1024 <= p.kept_tokens[-1] < 1024 + 64


@pytest.mark.parametrize(
    ("score_layers", "message"),
    [
        (((8,),), "must be distinct layers in [0, 8)"),
        (((3,), (4,)), "one entry per keep_schedule cut"),
        (((-1,),), "must be distinct layers"),
        (((3, 3),), "must be distinct layers"),
        ((), None),
    ],
)
def test_score_layers_are_validated(score_layers, message):
    if message is None:
        SlimConfig(keep_schedule=((8, 0.25),), score_layers=score_layers)
        return
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        SlimConfig(keep_schedule=((8, 0.25),), score_layers=score_layers)


def test_score_layers_shorthand_and_json_round_trip():
    config = SlimConfig().with_overrides(["preserve_layers=6", "keep_schedule=6:0.25,12:0.1", "score_layers=3+5,11"])
    assert config.score_layers == ((3, 5), (11,))
    assert SlimConfig.from_dict(config.to_dict()) == config
    assert SlimConfig().with_overrides(["score_layers=[[3]]"]).score_layers == ((3,),)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("unit_pool_kernel=2", "must be odd"),
        ("head_aggregation=median", "must be one of"),
        ("score_combine=min", "must be one of"),
        ("keep_mass=1.0", "must be in"),
        ("head_topk=0", "must be an integer >= 1"),
    ],
)
def test_bad_scoring_knobs_name_the_key(assignment, message):
    with pytest.raises(ConfigError, match=message):
        SlimConfig().with_overrides([assignment])


def test_keep_mass_refuses_sized_buffers():
    with pytest.raises(ConfigError, match="keep_mass"):
        SlimConfig(keep_mass=0.9, decode_budget=0.5)


def test_decode_selection_reads_the_plans_decode_score_layer():
    """A cut at layer 2 scored by layers 0 and 1: decode scores with the deeper one (1), which
    stays resident, and manages the cut's layers."""
    import torch

    from sliminfer.offload.selection import DecodePlan

    config = SlimConfig(**{**BASE, "block_size": 4, "unit_size": 2, "window": 2, "sink_tokens": 1},
                        preserve_layers=2, keep_schedule=((2, 0.5),), score_layers=((0, 1),), decode_budget=0.5)
    kept = torch.tensor([[b * 4 + t for b in (0, 2, 5, 7) for t in range(4)]])
    positions = [torch.arange(32)[None]] * 2 + [kept] * 2
    plan = DecodePlan.from_prefill(positions, config)
    (group,) = plan.groups
    assert group.score_layer == 1 and group.layers == (2, 3)
    assert group.candidates.tolist() == [0, 2, 5, 7]
    assert plan.forward_state().score_layers == {1}
