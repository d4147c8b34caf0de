"""The README's code runs as written: every ``python`` block is a whole program."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    proc = subprocess.run(
        # -W error makes ResourceWarnings fatal too. Not -X dev: asyncio's debug mode logs
        # "slow callback" when a busy CI machine delays the loop, which is no fault of the code.
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.strip(), "each block prints what it did"


def test_every_test_the_guarantees_cite_exists() -> None:
    """The Guarantees section maps promises to tests; a renamed or deleted test must not leave it
    pointing at nothing."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Guarantees") : readme.index("## Layout")]
    cited = set(re.findall(r"::(test_\w+)|`(test_\w+)`", section))
    names = {a or b for a, b in cited}
    defined = set()
    for path in (ROOT / "tests").glob("*.py"):
        defined |= set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))
    assert len(names) > 20
    assert names <= defined, sorted(names - defined)
