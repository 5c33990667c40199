"""The packages' import rules (docs/DESIGN.md): `vtl` never imports torch, `extract` or `probe`;
`probe` never imports `extract` (probing must not need the decoding or backbone stack). Read
from the sources, so an import inside a function counts too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"vtl": {"torch", "extract", "probe"}, "probe": {"extract"}}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_what_its_layer_forbids(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    broken = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in files
        if imported_packages(path) & FORBIDDEN[package]
    }
    assert broken == {}


def test_the_rule_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from extract.weights import HASH_REGEX\n    import torch.nn\n")
    assert imported_packages(module) == {"extract", "torch"}
