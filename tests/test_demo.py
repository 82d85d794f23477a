"""`sliminfer demo` on the embedded model: both methods find the pass key, slim computes less."""

import re

import pytest

from sliminfer.cli.main import main

pytestmark = pytest.mark.slow


def test_demo_finds_the_pass_key_with_both_methods(capsys):
    code = main(["demo"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if re.match(r"\| (full|slim) \|", line)}
    assert code == 0, out
    assert set(rows) == {"full", "slim"} and all(row.rstrip(" |").endswith("yes") for row in rows.values())
    assert "L0-29: " in rows["full"] and "L8-29: " in rows["slim"]
