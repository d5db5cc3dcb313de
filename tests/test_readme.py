"""The README's set-up commands and CI stay the same commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    install_and_run, install_and_test = blocks[0], blocks[1]
    assert install_and_run.endswith("mpdit bench")
    assert "pytest" in install_and_test
    assert install_and_test in (ROOT / ".ci" / "run").read_text()
