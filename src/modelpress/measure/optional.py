"""Runtimes that are optional extras (OpenVINO, ExecuTorch): whether one is installed, and the one error
for a step that needs it when it is not.

Each runtime module keeps its own ``*_available()`` (tests replace it to simulate an absent runtime) and
``require_*()``; both are written with these two functions, so every runtime is found and refused alike.
"""

from __future__ import annotations

import importlib.util

from modelpress.errors import BadInputError

__all__ = ["is_installed", "not_installed"]


def is_installed(module: str) -> bool:
    """Whether the top-level package ``module`` can be imported (found, not imported: runtimes import slowly)."""
    return importlib.util.find_spec(module) is not None


def not_installed(owner: str, runtime: str, install_hint: str) -> BadInputError:
    """The error for ``owner`` needing ``runtime`` (a display name, e.g. ``"OpenVINO"``) that is not
    installed, naming the install command (on the command line: exit code 2)."""
    return BadInputError(f"`{owner}` needs {runtime}, which is not installed. Fix: {install_hint}, "
                         "or choose the onnxruntime runtime.")
