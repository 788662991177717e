"""Creating a Workflow loads every installed plugin; none may drag in a heavy library."""

from __future__ import annotations

import subprocess
import sys


def test_creating_a_workflow_does_not_import_pydantic_ai() -> None:
    code = (
        "import sys; from durable import Workflow; Workflow('x', db='memory://'); "
        "print('pydantic_ai' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
