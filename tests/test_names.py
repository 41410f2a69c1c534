"""Names and layers: no module and function share a name; `import modelpress` stays light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_import_modelpress_loads_no_torch():
    assert _python("import modelpress, sys; print('torch' in sys.modules)") == "False"


def test_measure_subpackage_and_function_both_work():
    out = _python("import modelpress.measure.size, modelpress as mp; "
                  "print(callable(mp.measure), mp.measure.size.__name__, mp.measure.measure.__module__)")
    assert out == "True modelpress.measure.size modelpress.measure.measuring"


def test_artifact_modules_do_not_share_names_with_functions():
    out = _python("import modelpress.artifact as a, modelpress.artifact.saving, modelpress.artifact.loading, "
                  "modelpress.artifact.baking; print(a.save.__module__, a.load.__module__, a.bake.__module__)")
    assert out == "modelpress.artifact.saving modelpress.artifact.loading modelpress.artifact.baking"
