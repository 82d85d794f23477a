"""`SlimConfig`: every knob of the method in one validated, frozen dataclass.

Layers are counted from 0. A schedule entry `(layer, keep)` means: layer `layer` and all later
layers run on at most `keep` x (prompt tokens), where the blocks to keep are scored from the
attention of earlier layers (their last `window` queries against their keys): by default the
layer just before the cut, or the layers `score_layers` names for it. Which layers score and
where the prompt is cut are separate choices because models differ in which layers find what
the question needs. Layers before `preserve_layers` always see every token, so every cut layer
is >= `preserve_layers`. `schedule.LayerPlan` turns a config into per-layer decisions.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

UNIT_POOLINGS = ("key_mean", "score_max", "score_mean")
BLOCK_SCORINGS = ("max", "mean")
HEAD_AGGREGATIONS = ("mean", "max", "topk")
SCORE_COMBINES = ("max", "sum")
KV_OFFLOADS = ("none", "cpu")
SPARSE_PREFILLS = ("off", "fixed", "adaptive")
SPARSE_LAYERS = ("dense", "all")
SPARSE_ESTIMATES = ("last_queries", "block_means")
SPARSE_KNOBS = ("sparse_density", "sparse_mass", "sparse_min_tokens", "sparse_layers", "sparse_estimate")
"""The knobs of `sparse_prefill` (inert while it is off)."""
PIN_SCORES = ("cut", "deepest")

Schedule = tuple[tuple[int, float], ...]
ScoreLayers = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class SlimConfig:
    """The SlimInfer knobs. Defaults suit 24-32 layer models; see `preset_for` for families.

    Attributes:
        preserve_layers: leading layers that see every prompt token, so information can diffuse.
        block_size: tokens per block, the unit of keeping/dropping and of KV transfer.
        unit_size: tokens per token unit, the unit of scoring; must divide `block_size`.
        keep_schedule: `((layer, keep_fraction), ...)`, layers strictly increasing and
            >= `preserve_layers`, fractions in (0, 1] non-increasing: progressive pruning.
        window: the last prompt tokens, always kept, whose queries score the units.
        sink_tokens: the first prompt tokens, always kept (attention sinks).
        unit_pooling: `score_max` (default) pools per-token attention probabilities over the
            unit by their max, `score_mean` by their mean; `key_mean` scores one representative
            (mean) key per unit (the paper), which averages a short needle away.
        block_scoring: a block's score from its units' scores: `max` (the paper) or `mean`.
        score_layers: per cut of `keep_schedule`, the layers whose window attention scores it,
            e.g. `((3,), (9, 11))`; any layers before the cut (they already ran: no predictor).
            Empty: each cut is scored by the layer just before it.
        score_combine: how the scores of several score layers combine, each first normalized
            to sum 1 over the blocks it saw: `max` (a block one layer finds survives) or `sum`.
        head_aggregation: how the query heads' unit scores combine into one per unit (pruning
            drops a token for every head at once): `mean`, `max`, or `topk` (mean of the
            `head_topk` heads that score the unit highest).
        head_topk: heads averaged per unit with `head_aggregation="topk"`.
        unit_pool_kernel: odd width of an average pool over neighbouring units' scores before
            blocks are scored (SnapKV-style smoothing, so a block next to a salient unit is
            lifted too); 1 = off.
        keep_mass: 0 = off. Otherwise a cut keeps the fewest blocks whose normalized scores
            sum to at least this share of all its blocks' scores, but never more than the
            schedule's keep fraction (the cap) nor fewer than `min_keep_tokens` (the floor).
            Kept counts then depend on the prompt, so it cannot be combined with decode-time
            selection or offload, whose buffers are sized from the schedule.
        min_prompt_tokens: prompts shorter than this run unpruned: short prefills are cheap,
            and a cut there leaves too little context around the needles.
        min_keep_tokens: every cut keeps at least this many prompt tokens, whatever its keep
            fraction: what a question needs from its context (a few needles, their
            surroundings) does not shrink with the prompt, so short prompts keep a larger share.
            A fractional `decode_budget` never goes below this many tokens either.
        decode_budget: prompt blocks each slim layer attends to per decode step; <= 1 is a
            fraction of the blocks that layer retained (at least `min_keep_tokens` worth), > 1
            an absolute block count. 1.0 = all
            retained blocks (exact: no decode-time selection).
        decode_pin: the share of each layer group's active blocks (beyond the sink and window
            blocks) pinned for the whole decode to the blocks prefill's window, the question,
            ranked highest at the group's cut; the rest are re-chosen every step by the current
            token. One decode query is a noisier finder than the question's window, and the
            blocks an answer needs are the question's (0 = every slot per step, 1 = a static set).
        pin_scores: which of prefill's window scores rank the pinned blocks: `cut`, the group's
            own cut; `deepest`, first the blocks the deepest cut kept, by that cut's scores, then
            those the next shallower cut kept, and so on (with several cuts the deeper score
            layers are usually the better finders, and they already ran: no predictor).
        gamma: overlap threshold of the swap policy; a new active set is swapped in only when
            |new & resident| / |new| < gamma. 0 never swaps (keeps the first choice).
        max_swap_blocks: most prompt blocks a managed layer swaps in per decode step (the
            best-ranked missing ones; the others are deferred to later steps, if still wanted);
            0 = no limit. A fixed cap is what lets a CUDA graph replay a step that swaps, and
            bounds the bytes a step copies. The first step's fill is never capped.
        cuda_graph_decode: on CUDA, replay each decode step as a captured CUDA graph once its
            shapes are fixed (at once without a KV manager; with decode-time selection or
            offload from the second step, when every slot is filled: swaps then run inside the
            graph, at most `max_swap_blocks` per layer and step); removes the Python launch
            overhead that dominates eager decoding. With `kv_offload="cpu"` a graphed step reads
            the blocks its score layer chose one step earlier (the copy overlaps the step).
        kv_offload: `cpu` keeps the retained prompt KV of slim layers in pinned CPU memory and
            only the active blocks on the accelerator; `none` keeps everything on it. Like
            `decode_budget`, it applies only to pruned prompts (>= `min_prompt_tokens`).
        offload_preserve_layers: with `kv_offload="cpu"`, also move the preserve layers' prompt
            KV to CPU memory (all but the score layer before the first cut, whose keys decode
            selection reads); they then attend to `decode_budget` x all prompt blocks per step,
            chosen by that score layer one step earlier (the first set by prefill's window).
        sparse_prefill: `off`, `fixed` or `adaptive`: block-sparse causal attention in the
            layers `sparse_layers` names, for prompts of at least `sparse_min_tokens` tokens
            (`attention/sparse.py`). Each query block attends to the sink, its local band and
            itself, and to the key blocks the estimate (`sparse_estimate`) ranks highest: a share
            `sparse_density` of its causal blocks (`fixed`) or the fewest holding `sparse_mass`
            of the estimated attention (`adaptive`). The final query block (the scoring window)
            stays dense.
        sparse_density: the share of causal key blocks `fixed` keeps per query block.
        sparse_mass: the share of the estimated attention `adaptive` keeps per query block. How
            flat a model's estimates are sets the density a mass buys, so it is per model: 0.95
            keeps answers on both real models measured (RULER 16k / 32k, EVAL.md section 0.11);
            the Qwen2.5-Coder-1.5B preset uses 0.85 (density 0.228 at 32k instead of 0.40, RULER
            1.005 of slim without sparse prefill over 480 prompts; 0.8 kept 1.009 too).
        sparse_min_tokens: prompts (or compacted sequences) shorter than this stay dense: the
            estimate and the mask cost more than they save on short prefills.
        sparse_layers: `dense`: the layers before the first cut (every prompt token); `all`: the
            slim layers too.
        sparse_estimate: how key blocks are ranked: `block_means` (the default), per query
            block, its mean query against each key block's mean key (on real models within 0.5%
            of the best ranking; RULER 0.98-1.01 of slim with `adaptive` on both real models);
            `last_queries`, one ranking per head from the layer's last 64 queries' attention,
            shared by every query block: 1.8 ms per layer cheaper at 128k, but 3-5 points of
            attention lower and RULER 0.80 of slim on the 1.5B (BENCHMARKS.md sections 6.1-6.4).
        prefill_chunk_tokens: prefill runs each layer's MLP, whose activations are the largest
            (3 x intermediate size per token), on at most this many tokens at a time, which
            bounds peak memory on long prompts at no cost in speed; 0 = all tokens at once.
    """

    preserve_layers: int = 8
    block_size: int = 64
    unit_size: int = 8
    keep_schedule: Schedule = ((8, 0.25),)
    window: int = 32
    sink_tokens: int = 4
    unit_pooling: str = "score_max"
    block_scoring: str = "max"
    score_layers: ScoreLayers = ()
    score_combine: str = "max"
    head_aggregation: str = "mean"
    head_topk: int = 2
    unit_pool_kernel: int = 1
    keep_mass: float = 0.0
    min_prompt_tokens: int = 3072
    min_keep_tokens: int = 1024
    decode_budget: float = 1.0
    decode_pin: float = 0.5
    pin_scores: str = "cut"
    gamma: float = 0.0
    max_swap_blocks: int = 8
    kv_offload: str = "none"
    cuda_graph_decode: bool = True
    offload_preserve_layers: bool = False
    sparse_prefill: str = "off"
    sparse_density: float = 0.15
    sparse_mass: float = 0.95
    sparse_min_tokens: int = 16384
    sparse_layers: str = "dense"
    sparse_estimate: str = "block_means"
    prefill_chunk_tokens: int = 16384

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_schedule", _as_schedule(self.keep_schedule))
        object.__setattr__(self, "score_layers", _as_score_layers(self.score_layers))
        _check_int("preserve_layers", self.preserve_layers, 0)
        _check_int("block_size", self.block_size, 1)
        _check_int("unit_size", self.unit_size, 1)
        if self.block_size % self.unit_size:
            raise ConfigError(
                f"unit_size={self.unit_size}: must divide block_size={self.block_size}"
            )
        _check_int("window", self.window, 1)
        _check_int("sink_tokens", self.sink_tokens, 0)
        _check_int("min_prompt_tokens", self.min_prompt_tokens, 0)
        _check_int("min_keep_tokens", self.min_keep_tokens, 0)
        _check_choice("unit_pooling", self.unit_pooling, UNIT_POOLINGS)
        _check_choice("block_scoring", self.block_scoring, BLOCK_SCORINGS)
        _check_choice("kv_offload", self.kv_offload, KV_OFFLOADS)
        _check_schedule(self.keep_schedule, self.preserve_layers)
        _check_score_layers(self.score_layers, self.keep_schedule)
        _check_choice("score_combine", self.score_combine, SCORE_COMBINES)
        _check_choice("head_aggregation", self.head_aggregation, HEAD_AGGREGATIONS)
        _check_int("head_topk", self.head_topk, 1)
        _check_int("unit_pool_kernel", self.unit_pool_kernel, 1)
        if self.unit_pool_kernel % 2 == 0:
            raise ConfigError(f"unit_pool_kernel={self.unit_pool_kernel}: must be odd (centred on each unit)")
        mass = self.keep_mass
        if not isinstance(mass, (int, float)) or isinstance(mass, bool) or not 0.0 <= mass < 1.0:
            raise ConfigError(f"keep_mass={mass!r}: must be in [0, 1) (0 = off)")
        budget = self.decode_budget
        if not isinstance(budget, (int, float)) or isinstance(budget, bool) or budget <= 0:
            raise ConfigError(f"decode_budget={budget!r}: must be a fraction in (0, 1] or a block count > 1")
        if budget > 1 and not float(budget).is_integer():
            raise ConfigError(f"decode_budget={budget!r}: values above 1 are block counts and must be whole")
        _check_share("decode_pin", self.decode_pin, zero_allowed=True)
        _check_choice("pin_scores", self.pin_scores, PIN_SCORES)
        _check_bool("cuda_graph_decode", self.cuda_graph_decode)
        _check_bool("offload_preserve_layers", self.offload_preserve_layers)
        if self.offload_preserve_layers and self.kv_offload != "cpu":
            raise ConfigError("offload_preserve_layers=true: needs kv_offload=cpu")
        _check_int("prefill_chunk_tokens", self.prefill_chunk_tokens, 0)
        _check_choice("sparse_prefill", self.sparse_prefill, SPARSE_PREFILLS)
        _check_choice("sparse_layers", self.sparse_layers, SPARSE_LAYERS)
        _check_choice("sparse_estimate", self.sparse_estimate, SPARSE_ESTIMATES)
        _check_int("sparse_min_tokens", self.sparse_min_tokens, 0)
        _check_share("sparse_density", self.sparse_density, zero_allowed=False)
        _check_share("sparse_mass", self.sparse_mass, zero_allowed=False)
        _check_int("max_swap_blocks", self.max_swap_blocks, 0)
        if not isinstance(self.gamma, (int, float)) or not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma={self.gamma!r}: must be in [0, 1]")
        if self.keep_mass and (self.kv_offload != "none" or self.decode_budget != 1.0):
            raise ConfigError(
                f"keep_mass={self.keep_mass}: adaptive keep needs kv_offload=none and decode_budget=1.0 "
                "(their buffers are sized from the schedule)"
            )

    @property
    def cut_score_layers(self) -> ScoreLayers:
        """Per cut, the layers that score it (`score_layers`, or the layer before each cut)."""
        return self.score_layers or tuple((layer - 1,) for layer, _ in self.keep_schedule)

    @property
    def cut_layers(self) -> tuple[int, ...]:
        """The layers at whose input the token set shrinks."""
        return tuple(layer for layer, _ in self.keep_schedule)

    def check_model(self, num_layers: int) -> None:
        """Raise `ConfigError` if the schedule does not fit a model with `num_layers` layers."""
        if self.preserve_layers >= num_layers:
            raise ConfigError(
                f"preserve_layers={self.preserve_layers}: must be < the model's {num_layers} layers"
            )
        for layer, _ in self.keep_schedule:
            if layer >= num_layers:
                raise ConfigError(
                    f"keep_schedule layer {layer}: must be < the model's {num_layers} layers"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every knob (schedule as a list of [layer, keep] pairs)."""
        out = {f.name: getattr(self, f.name) for f in public_fields()}
        out["keep_schedule"] = [[layer, keep] for layer, keep in self.keep_schedule]
        out["score_layers"] = [list(layers) for layers in self.score_layers]
        return out

    def acting_dict(self) -> dict[str, Any]:
        """`to_dict` without the knobs that cannot act under this config: every sparse-prefill
        knob while `sparse_prefill="off"`, `sparse_mass` under `fixed`, `sparse_density` under
        `adaptive`. Two configs that run alike give the same dict, so a result's identity
        (`methods.config_key`) does not change when a preset sets a knob it does not use."""
        out = self.to_dict()
        inert = {
            "off": SPARSE_KNOBS,
            "fixed": ("sparse_mass",),
            "adaptive": ("sparse_density",),
        }[self.sparse_prefill]
        for key in inert:
            del out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: SlimConfig | None = None) -> SlimConfig:
        """Build from a dict, starting from `base` (default: the class defaults).

        Unknown keys raise `ConfigError` naming the valid ones.
        """
        names = {f.name for f in public_fields()}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown}: valid keys are {sorted(names)}")
        return dataclasses.replace(base or cls(), **data)

    def with_overrides(self, assignments: list[str]) -> SlimConfig:
        """Apply CLI-style `key=value` strings (values parsed as JSON, else kept as text).

        `keep_schedule` also accepts `layer:keep,layer:keep`, e.g. `8:0.25,16:0.15`, and
        `score_layers` one entry per cut, layers joined by `+`, e.g. `3+5,11`.
        """
        updates: dict[str, Any] = {}
        for item in assignments:
            key, sep, text = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--set {item!r}: expected key=value")
            updates[key.strip()] = parse_value(key.strip(), text.strip())
        return SlimConfig.from_dict(updates, base=self)


def public_fields() -> list[dataclasses.Field]:
    """The user-facing knobs, in declaration order."""
    return list(dataclasses.fields(SlimConfig))


def parse_value(key: str, text: str) -> Any:
    """Parse one `--set` value: schedule shorthand, JSON, or a plain string."""
    if key == "keep_schedule" and ":" in text:
        try:
            return tuple(
                (int(layer), float(keep))
                for layer, keep in (pair.split(":") for pair in text.split(",") if pair)
            )
        except ValueError:
            raise ConfigError(
                f"keep_schedule={text!r}: expected layer:keep pairs, e.g. 8:0.25,16:0.15"
            ) from None
    if key == "score_layers" and not text.startswith("["):
        try:
            return tuple(tuple(int(layer) for layer in cut.split("+")) for cut in text.split(",") if cut)
        except ValueError:
            raise ConfigError(
                f"score_layers={text!r}: expected layers per cut joined by '+', cuts by ',', e.g. 3+5,11"
            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config_file(path: str, base: SlimConfig | None = None) -> SlimConfig:
    """Read a JSON config file (a subset of keys is fine) on top of `base`.

    A `sliminfer calibrate` preset holds the keys under "config" (beside its "calibration"
    evidence); that form is read too.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r}: expected a JSON object of config keys")
    return SlimConfig.from_dict(data, base=base)


def preset_for(model_type: str, num_layers: int, hidden_size: int) -> SlimConfig:
    """The default config for a model: a preset of its family and size if there is one, else
    scaled from depth.

    The scaled default preserves the first quarter of the layers and keeps a quarter of the
    prompt after them (about 2.6-3x fewer prefill FLOPs at 32k+); `sliminfer calibrate` finds a
    schedule for a model that has no preset.
    """
    preset = PRESETS.get((model_type, num_layers, hidden_size))
    if preset is not None:
        return preset
    preserve = max(1, round(num_layers / 4))
    return SlimConfig(preserve_layers=preserve, keep_schedule=((preserve, 0.25),))


def _as_schedule(value: Any) -> Schedule:
    try:
        return tuple((int(layer), float(keep)) for layer, keep in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"keep_schedule={value!r}: must be a list of (layer, keep_fraction) pairs"
        ) from None


def _as_score_layers(value: Any) -> ScoreLayers:
    try:
        return tuple(tuple(int(layer) for layer in cut) for cut in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"score_layers={value!r}: must be one list of layer numbers per keep_schedule cut, e.g. [[3], [9, 11]]"
        ) from None


def _check_score_layers(score_layers: ScoreLayers, schedule: Schedule) -> None:
    if not score_layers:
        return
    if len(score_layers) != len(schedule):
        raise ConfigError(
            f"score_layers={[list(c) for c in score_layers]}: needs one entry per keep_schedule cut "
            f"({len(schedule)})"
        )
    for layers, (cut, _) in zip(score_layers, schedule, strict=True):
        if not layers or any(not 0 <= layer < cut for layer in layers) or len(set(layers)) != len(layers):
            raise ConfigError(
                f"score_layers {list(layers)} for the cut at layer {cut}: must be distinct layers in [0, {cut}) "
                "(a cut is scored by layers that already ran)"
            )


def _check_int(key: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}")


def _check_share(key: str, value: Any, zero_allowed: bool) -> None:
    """A share in [0, 1] (`zero_allowed`) or (0, 1]."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (0.0 <= value if zero_allowed else 0.0 < value) or value > 1.0:
        raise ConfigError(f"{key}={value!r}: must be in {'[' if zero_allowed else '('}0, 1]")


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false")


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: must be one of {list(allowed)}")


def _check_schedule(schedule: Schedule, preserve_layers: int) -> None:
    previous_layer, previous_keep = -1, 1.0
    for layer, keep in schedule:
        if layer < max(1, preserve_layers):
            raise ConfigError(
                f"keep_schedule layer {layer}: must be >= preserve_layers={preserve_layers} and >= 1 "
                "(a cut is scored by the layer before it)"
            )
        if layer <= previous_layer:
            raise ConfigError(f"keep_schedule layers {[s[0] for s in schedule]}: must strictly increase")
        if not (0.0 < keep <= 1.0) or math.isnan(keep):
            raise ConfigError(f"keep_schedule keep {keep!r} at layer {layer}: must be in (0, 1]")
        if keep > previous_keep:
            raise ConfigError(
                f"keep_schedule keeps {[s[1] for s in schedule]}: must not increase with depth"
            )
        previous_layer, previous_keep = layer, keep


PRESETS: dict[tuple[str, int, int], SlimConfig] = {
    # Keyed by (model type, layers, hidden size): one family's sizes differ in depth or width.
    # SmolLM2-135M (the embedded default, 30 layers): tuned with `sliminfer eval`, see README.
    ("llama", 30, 576): SlimConfig(preserve_layers=8, keep_schedule=((8, 0.2),)),
    # Llama-3.x-8B (32 layers) and Qwen2.5-7B (28 layers): speed-tuned on random weights.
    ("llama", 32, 4096): SlimConfig(preserve_layers=8, keep_schedule=((8, 0.25),)),
    ("qwen2", 28, 3584): SlimConfig(preserve_layers=7, keep_schedule=((7, 0.25),)),
    # Qwen2.5-Coder-0.5B-Instruct (24 layers), from the RULER runs in
    # benchmarks/results/h200/qwen0.5b-ruler-calibrated (EVAL.md section 0.4): 1.02 of full over
    # eight RULER tasks at 8k-32k for 0.45 of full's prefill FLOPs at 32k. Layer 7 keeps half the
    # prompt (it finds ~all needles at that keep), layer 11, the first layer that finds ~all
    # needles at keep 0.1, picks the final quarter; calibrate's own pick (10:0.1 by 9, same
    # cost) kept full's average but lost qa answers.
    ("qwen2", 24, 896): SlimConfig(
        preserve_layers=8, keep_schedule=((8, 0.5), (12, 0.25)), score_layers=((7,), (11,)), unit_pool_kernel=3
    ),
    # Qwen2.5-Coder-1.5B-Instruct (28 layers): calibrate v2's pick (needle, vartrack and qa
    # probes; benchmarks/results/h200/qwen1.5b-ruler-v3/preset.json, EVAL.md section 0.6), 0.48
    # of full's prefill FLOPs at 32k: 1.00 of full on RULER over 169 samples, 32k only partly
    # measured. Early layers find number needles by their key but not the names along a
    # variable chain, which layer 9 finds at keep 0.5 and layer 17 at keep 0.1. With a decode
    # budget the first group pins the second cut's choice (`pin_scores="deepest"`, layer 17 finds
    # better than 9): budget 0.25 keeps 0.970 of budget 1.0 over 240 RULER samples, 0.954 with
    # the cut's own pins (benchmarks/results/h200/qwen1.5b-v6, EVAL.md section 0.10). Its
    # block-mean estimates are flatter than the 0.5B's, so adaptive sparse prefill takes a lower
    # mass for the same share of true attention: 0.85 computes 0.228 of the blocks at 32k (0.40
    # at 0.95) and keeps 1.005 of slim's RULER score at 16k / 32k over 480 prompts, 0.8 kept
    # 1.009 at 0.185 (benchmarks/results/h200/qwen1.5b-v7-30, EVAL.md section 0.11).
    ("qwen2", 28, 1536): SlimConfig(
        preserve_layers=10,
        keep_schedule=((10, 0.5), (18, 0.1)),
        score_layers=((9,), (17,)),
        unit_pool_kernel=3,
        pin_scores="deepest",
        sparse_mass=0.85,
    ),
}
