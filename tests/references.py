"""The authors' public code of the transferability scores, kept verbatim in
tests/third_party/reference_scores (each file names its source), loaded by path: our scores are
tested against it on the same small inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REFERENCES = Path(__file__).parent / "third_party" / "reference_scores"


def reference(name: str):
    """The module `name` of tests/third_party/reference_scores (not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location(f"reference_{name}", REFERENCES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
