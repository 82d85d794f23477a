"""Loading never reaches a model hub, without changing the process's hub settings for the user."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_importing_sliminfer_leaves_hf_hub_offline_unset():
    code = "import os, sliminfer.cli.main, sliminfer.generate, sliminfer.loading; print(os.environ.get('HF_HUB_OFFLINE'))"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


@pytest.mark.slow
def test_a_process_that_loses_the_dequantization_race_uses_the_winners_folder(tmp_path, monkeypatch):
    """Two processes converting one GGUF at once (one eval process per method): the loser's
    rename fails because the winner's folder is there; it must use that folder, not crash."""
    from sliminfer import loading

    monkeypatch.setenv("SLIMINFER_CACHE", str(tmp_path))
    real_rename = Path.rename

    def winner_first(self: Path, target: Path) -> Path:
        Path(target).mkdir(parents=True)
        (Path(target) / "config.json").write_text("{}")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", winner_first)
    folder = loading._dequantized_folder(loading.default_gguf_path())
    assert (folder / "config.json").read_text() == "{}"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]
