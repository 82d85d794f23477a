"""LongBench reader, templates, truncation and scoring on hand-written fixtures and real multi_news."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sliminfer.errors import UserError
from sliminfer.eval import longbench
from sliminfer.eval.longbench import (
    LongBenchSource,
    fill_template,
    read_jsonl,
    truncate_middle,
    truncated_prompt,
)
from sliminfer.eval.results import ResultStore
from sliminfer.eval.runner import Answer, plan_work, run_eval, score_answer
from sliminfer.methods import Method

LONGBENCH_DATA_ENV = "SLIMINFER_LONGBENCH_DATA"
"""A folder of LongBench JSONL files (as `sliminfer eval --suite longbench --data`) for the real-data check."""


def test_fixture_round_trip(fixtures_dir):
    records = list(read_jsonl(str(fixtures_dir / "hotpotqa.jsonl")))
    assert [r["_id"] for r in records] == ["hq-1", "hq-2"]
    assert set(longbench.FIELDS) <= set(records[0])
    prompt = fill_template("hotpotqa", records[0])
    assert prompt.startswith("Answer the question based on the given passages.")
    assert "Passage 1:\nTarsk" in prompt
    assert prompt.endswith("Question: Which city is the harbour of Tarsk in?\nAnswer:")


def test_newline_markers_become_line_breaks_unless_kept(fixtures_dir):
    record = next(read_jsonl(str(fixtures_dir / "multi_news.jsonl")))
    converted = fill_template("multi_news", record)
    assert "NEWLINE_CHAR" not in converted
    assert "met on Monday.\n\nIt approved" in converted
    assert fill_template("multi_news", record, newline_markers=True).count("NEWLINE_CHAR") == 6


def test_every_english_task_has_template_length_and_metric():
    assert set(longbench.DATASET2PROMPT) == set(longbench.DATASET2MAXLEN) == set(longbench.DATASET2METRIC)
    assert longbench.DATASET2MAXLEN["multi_news"] == 512
    assert longbench.DATASET2METRIC["multi_news"] == "rouge"


def test_truncate_middle_keeps_both_ends():
    ids = list(range(100))
    head, tail = truncate_middle(ids, 10)
    assert head == [0, 1, 2, 3, 4] and tail == [95, 96, 97, 98, 99]
    assert truncate_middle(ids, 100) == (ids, [])
    head, tail = truncate_middle(ids, 7)  # odd budget: int(7 / 2) = 3 each side, as LongBench
    assert len(head) == len(tail) == 3


def test_truncated_prompt_keeps_instruction_and_question(codec):
    prompt = "INSTRUCTION " + " ".join(f"w{i}" for i in range(1000)) + " QUESTION"
    cut = truncated_prompt(prompt, 50, codec)
    assert cut.startswith("INSTRUCTION w0") and cut.endswith("w999 QUESTION")
    assert len(cut.split(" ")) <= 50
    assert truncated_prompt("short prompt", 50, codec) == "short prompt"


def test_source_fits_the_budget_and_sets_task_rules(fixtures_dir, codec):
    source = LongBenchSource(str(fixtures_dir), codec, overhead_tokens=lambda sample: 5)
    sample = source.sample("hotpotqa", 40 + 32 + 5, 0)  # room for 40 prompt tokens
    assert len(codec.encode(sample.prompt)) <= 40
    assert sample.prompt.endswith("Answer:") and sample.expected == ("Velora",)
    assert sample.max_new_tokens == 32 and sample.chat_allowed
    trec = source.sample("trec", 4096, 0)
    assert not trec.chat_allowed and trec.first_line_only and "Individual" in trec.all_classes
    assert source.sample("passage_count", 4096, 0).expected == ("2",)
    assert source.available("hotpotqa") == 2
    with pytest.raises(UserError, match="too short"):
        source.sample("multi_news", 500, 0)
    with pytest.raises(UserError, match="does not exist"):
        source.available("qasper")
    with pytest.raises(UserError, match="supported English tasks"):
        source.available("dureader")


def test_scoring_rules_per_task(fixtures_dir, codec):
    source = LongBenchSource(str(fixtures_dir), codec)
    assert score_answer(source.sample("trec", 4096, 0), "\nIndividual\nCity") == 1.0  # first line only
    assert score_answer(source.sample("hotpotqa", 4096, 1), "Dunvel.") == 1.0  # best of the references
    assert score_answer(source.sample("hotpotqa", 4096, 1), "It was Mira Dunvel.") == pytest.approx(2 / 3)
    assert score_answer(source.sample("passage_retrieval_en", 4096, 0), "Paragraph 2") == 1.0
    assert score_answer(source.sample("passage_count", 4096, 0), "2") == 1.0
    assert score_answer(source.sample("lcc", 4096, 0), "return x + 1\n") == 1.0


def test_bad_jsonl_is_a_user_error(tmp_path):
    (tmp_path / "hotpotqa.jsonl").write_text('{"context": "c", "answers": ["a"]}\nnot json\n')
    with pytest.raises(UserError, match="hotpotqa.jsonl:2"):
        list(read_jsonl(str(tmp_path / "hotpotqa.jsonl")))
    (tmp_path / "qasper.jsonl").write_text(json.dumps({"input": "q"}) + "\n")
    with pytest.raises(UserError, match="missing"):
        list(read_jsonl(str(tmp_path / "qasper.jsonl")))


class LeadBackend:
    """Answers with the first 60 words of the prompt's news: the classic lead baseline."""

    def answer(self, sample, method):
        news = sample.prompt.split("News:\n", 1)[1]
        text = " ".join(news.split()[:60])
        return Answer(text, sample.prompt, len(sample.prompt.split(" ")), 60, "length", 0.0, 1.0)


def test_real_multi_news_end_to_end(tmp_path, codec):
    data = Path(os.environ.get(LONGBENCH_DATA_ENV, ""))
    if not os.environ.get(LONGBENCH_DATA_ENV) or not (data / "multi_news.jsonl").exists():
        pytest.skip(f"no LongBench multi_news.jsonl in ${LONGBENCH_DATA_ENV}")
    source = LongBenchSource(str(data), codec)
    work = plan_work(source, ["multi_news"], [2048], samples=2)
    assert work == [("multi_news", 2048, 0), ("multi_news", 2048, 1)]
    store = ResultStore(str(tmp_path), {"suite": "longbench"}, {})
    run_eval(work, [Method("full", "full", None)], source, LeadBackend(), store)
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert len(records) == 2
    for record in records:
        assert record["prompt_tokens"] <= 2048 - 512
        assert 0.05 < record["score"] < 0.6  # ROUGE-L of a lead summary: clearly above 0, below a match
