"""The gateway and the bureau depend on each other in one direction: the bureau is a
client of the gateway (its channel, request ids, PAN masking, the job file format) and
the gateway imports nothing of the bureau. Read from the installed sources, as shipped.
"""
import ast
import pathlib

import cardgate.bureau
import cardgate.gateway


def _imports(package):
    """(file, line, imported module, inside a function) of every import in a package."""
    root = pathlib.Path(package.__path__[0])
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else \
                    [f"{package.__name__}.(relative){node.module or ''}"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                yield path.relative_to(root), node.lineno, name, id(node) in nested


def test_the_gateway_imports_nothing_of_the_bureau():
    found = [f"{f}:{line} imports {name}" for f, line, name, _ in _imports(cardgate.gateway)
             if name.startswith("cardgate.bureau")]
    assert not found, "gateway -> bureau: " + "; ".join(found)


def test_the_bureau_uses_the_gateway():
    assert any(name.startswith("cardgate.gateway") for _, _, name, _ in _imports(cardgate.bureau))


def test_the_gateway_imports_its_own_modules_at_the_top():
    """An import inside a function hides the order modules depend on (and dodges cycles)."""
    found = [f"{f}:{line} imports {name}" for f, line, name, inside in _imports(cardgate.gateway)
             if inside and name.startswith("cardgate")]
    assert not found, "; ".join(found)
