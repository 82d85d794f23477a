"""The README's config table and test command stay in sync with the code and CI."""

import re
from pathlib import Path

from sliminfer.config import SlimConfig, public_fields

ROOT = Path(__file__).resolve().parents[1]


def test_config_table_lists_every_field_with_its_default():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- config-table -->")[1].split("<!-- /config-table -->")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.M))
    defaults = SlimConfig().to_dict()
    assert list(rows) == [f.name for f in public_fields()]
    for key, shown in rows.items():
        assert shown.strip().strip("`") == str(defaults[key]).replace("'", ""), key


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "pytest" in line and line.startswith("pip install"))
    assert command in (ROOT / ".ci" / "run").read_text()
