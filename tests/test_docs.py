"""What the READMEs promise a new user: how to get the command on PATH, and each recipe's command and run time."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_says_how_to_get_narspeech_on_path():
    readme = (ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in readme and ".venv/bin/narspeech" in readme


def test_each_recipe_readme_opens_with_its_command_and_time():
    for readme in sorted((ROOT / "egs").glob("*/*/README.md")):
        head = "\n".join(readme.read_text().splitlines()[:12])
        recipe = readme.parent.relative_to(ROOT)
        assert "./run.sh" in head or f"{recipe}/run.sh" in head, f"{readme}: no run command at the top"
        assert re.search(r"\d+\s*(min|h)\b", head) or "not measured here" in head, f"{readme}: no run time at the top"
