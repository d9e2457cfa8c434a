# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The core package imports nothing from Odoo."""

import ast
import pathlib

CORE = pathlib.Path(__file__).resolve().parents[2] / "core"


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or "")


def test_core_imports_no_odoo():
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for name in _imported_modules(path):
            assert name.split(".")[0] != "odoo", f"{path.name} imports {name}"
            # Relative imports stay inside the core: the addon's package imports Odoo.
            assert not name.startswith(".."), f"{path.name} imports {name}"
