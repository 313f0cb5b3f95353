"""The arrows run one way, through one seam.

``prefetch_generator_jax`` builds on ``prefetch_generator``, never the reverse,
and of the core's internals it imports only ``prefetch_generator._extension_api``.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(package):
    for path in sorted((ROOT / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                yield from ((path.name, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield path.name, node.module


def test_the_jax_package_crosses_into_the_core_only_through_its_seam():
    crossings = {
        (name, module)
        for name, module in imported_modules("prefetch_generator_jax")
        if module.split(".")[0] == "prefetch_generator"
    }
    assert crossings  # the check sees the imports
    allowed = {"prefetch_generator", "prefetch_generator._extension_api"}
    assert {(name, module) for name, module in crossings if module not in allowed} == set()


def test_the_core_never_imports_the_jax_package():
    assert [
        (name, module)
        for name, module in imported_modules("prefetch_generator")
        if module.split(".")[0] == "prefetch_generator_jax"
    ] == []
