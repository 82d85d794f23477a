"""The model side of an evaluation: prompt format, token counting and answering via `generate`."""

from __future__ import annotations

from ..errors import UserError
from ..generate import SamplingParams, encode_prompt, generate
from ..loading import LoadedModel
from ..methods import Method
from ..metrics import sparse_prefill_density
from .longbench import TokenCodec
from .runner import Answer
from .sample import ChatFormatter, Sample, render


class ModelBackend:
    """Answers samples with a loaded model, greedily, in completion or chat style.

    Chat style wraps the prompt as one user message of the model's chat template and starts
    the assistant turn with the answer prefix; the text is then tokenized as given, so the
    token count used to size prompts is exactly what the model sees.
    """

    def __init__(self, loaded: LoadedModel, chat: bool = False) -> None:
        tokenizer = loaded.tokenizer
        if tokenizer is None:
            raise UserError(
                f"model {loaded.name!r} has no tokenizer: sliminfer eval needs one to build prompts"
            )
        if chat and not tokenizer.chat_template:
            raise UserError(f"model {loaded.name!r} has no chat template: drop --chat")
        self.loaded = loaded
        self.chat: ChatFormatter | None = self._chat_formatter() if chat else None
        self.codec = TokenCodec(
            encode=lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
            decode=lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
        )

    def _chat_formatter(self) -> ChatFormatter:
        tokenizer = self.loaded.tokenizer

        def wrap(text: str) -> str:
            messages = [{"role": "user", "content": text}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

        return wrap

    def render(self, sample: Sample) -> str:
        return render(sample, self.chat)

    def count_tokens(self, sample: Sample) -> int:
        """Tokens of the rendered prompt, special tokens included (0 for an empty text)."""
        text = self.render(sample)
        return len(encode_prompt(self.loaded, text)) if text else 0

    def answer(self, sample: Sample, method: Method) -> Answer:
        prompt = self.render(sample)
        result = generate(
            self.loaded,
            prompt,
            method=method.kind,
            config=method.config,
            sampling=SamplingParams(max_new_tokens=sample.max_new_tokens, stop=sample.stop),
        )
        kept = result.kept_tokens_per_layer
        sparse = sparse_prefill_density(result.attention_density_per_layer)
        return Answer(
            text=result.text,
            prompt=prompt,
            prompt_tokens=result.prompt_tokens,
            new_tokens=result.new_tokens,
            finish_reason=result.finish_reason,
            ttft_s=result.ttft_s,
            prefill_fraction=sum(kept) / (len(kept) * result.prompt_tokens) if kept else 1.0,
            sparse_density=sparse[0] if sparse else None,
            decode_ms_per_token=result.decode_ms_per_token,
            top_block_hit_rate=result.kv.top_block_hit_rate,
        )
