"""Loading never reaches a model hub, without changing the process's hub settings for the user."""

import os
import subprocess
import sys


def test_importing_sliminfer_leaves_hf_hub_offline_unset():
    code = "import os, sliminfer.cli.main, sliminfer.generate, sliminfer.loading; print(os.environ.get('HF_HUB_OFFLINE'))"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
