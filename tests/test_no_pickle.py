"""Static check: nothing in the code base unpickles, and models are loaded only through skops with
an explicit list of trusted types.

Why: the tutorial stored the model with pickle, so anyone who can write to Redis could run code in
the job and in the server. A grep would miss ``from pickle import loads as l`` and trip over
comments, so this walks the syntax tree of every Python file of the repo and resolves import
aliases. The checker is itself tested on code that breaks each rule.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from online_ml.harness.paths import ROOT

SKIP_DIRS = {".venv", ".state", ".git", "node_modules", "__pycache__", ".pytest_cache", "vendor"}

# calls that deserialise with pickle (or a pickle-based format), by their full dotted name
UNPICKLERS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
    "cloudpickle.load", "cloudpickle.loads", "dill.load", "dill.loads", "joblib.load",
    "pandas.read_pickle", "numpy.load", "shelve.open", "skops.io.load", "skops.io.loads",
}
ALLOWED_SKOPS_CALLER = ("online_ml/model_store.py", "loads")


def python_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py")
                  if not SKIP_DIRS & set(p.relative_to(ROOT).parts))


class Calls(ast.NodeVisitor):
    """Every call with its dotted name resolved through the module's imports."""

    def __init__(self):
        self.aliases: dict[str, str] = {}
        self.calls: list[tuple[str, ast.Call, str | None]] = []  # (name, node, enclosing function)
        self._function: list[str] = []

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.asname:
                self.aliases[a.asname] = a.name
            else:
                self.aliases[a.name.split(".")[0]] = a.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name] = f"{node.module}.{a.name}" if node.module else a.name

    def _visit_function(self, node) -> None:
        self._function.append(node.name)
        self.generic_visit(node)
        self._function.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def dotted(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func)
        if name:
            name = name.replace("np.", "numpy.", 1) if name.startswith("np.") else name
            name = name.replace("pd.", "pandas.", 1) if name.startswith("pd.") else name
            self.calls.append((name, node, self._function[-1] if self._function else None))
        self.generic_visit(node)


def calls_of(source: str) -> Calls:
    visitor = Calls()
    visitor.visit(ast.parse(source))
    return visitor


def violations(source: str, path: str = "<test>") -> list[str]:
    found = []
    for name, node, function in calls_of(source).calls:
        if name not in UNPICKLERS:
            continue
        where = f"{path}:{node.lineno} {name}"
        if name == "numpy.load":
            allow = next((k.value for k in node.keywords if k.arg == "allow_pickle"), None)
            if allow is None or (isinstance(allow, ast.Constant) and allow.value is False):
                continue  # numpy refuses pickled object arrays by default
            found.append(f"{where}(allow_pickle=...)")
        elif name.startswith("skops.io."):
            if (path, function) != ALLOWED_SKOPS_CALLER:
                found.append(f"{where}: load models through online_ml.model_store.loads")
        else:
            found.append(where)
    return found


@pytest.mark.parametrize("source", [
    "import pickle\npickle.loads(b)",
    "import pickle as p\np.load(f)",
    "from pickle import loads as l\nl(b)",
    "import joblib\njoblib.load('m.joblib')",
    "import cloudpickle\ncloudpickle.loads(b)",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "from numpy import load\nload('a.npy', allow_pickle=flag)",
    "import pandas as pd\npd.read_pickle('x')",
    "import skops.io as sio\nsio.loads(b, trusted=True)",
])
def test_checker_catches(source):
    assert violations(source), f"the checker missed: {source!r}"


@pytest.mark.parametrize("source", [
    "import numpy as np\nnp.load('a.npy')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=False)",
    "import json\njson.loads(s)",
    "# pickle.loads(b) in a comment\nx = 'pickle.loads(b)'",
])
def test_checker_allows(source):
    assert violations(source) == []


def test_nothing_in_the_code_base_unpickles():
    files = python_files()
    assert len(files) > 10 and any(p.name == "stream.py" for p in files)
    found = [v for p in files
             for v in violations(p.read_text(), p.relative_to(ROOT).as_posix())]
    assert found == [], "deserialisation that can run code:\n" + "\n".join(found)


def test_model_store_loads_with_skops_and_an_explicit_trusted_list():
    path = ROOT / "online_ml" / "model_store.py"
    tree = ast.parse(path.read_text())
    visitor = calls_of(path.read_text())
    loads_calls = [node for name, node, function in visitor.calls
                   if name == "skops.io.loads" and function == "loads"]
    assert len(loads_calls) == 1, "model_store.loads must call skops.io.loads exactly once"
    trusted = next((k.value for k in loads_calls[0].keywords if k.arg == "trusted"), None)
    assert trusted is not None, "skops.io.loads without trusted= would refuse or trust blindly"
    assert not isinstance(trusted, ast.Constant), "trusted= must be a list of types, not a constant"

    # the function checks the blob's types against the module's TRUSTED_TYPES before loading
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "loads")
    names = {n.id for n in ast.walk(func) if isinstance(n, ast.Name)}
    assert "TRUSTED_TYPES" in names
    assert any(name == "skops.io.get_untrusted_types" and function == "loads"
               for name, _, function in visitor.calls)

    # TRUSTED_TYPES: literal strings of estimators, numpy and plain data; nothing that runs code
    assign = next(n for n in tree.body if isinstance(n, ast.Assign)
                  and any(getattr(t, "id", None) == "TRUSTED_TYPES" for t in n.targets))
    types = [e.value for e in assign.value.elts if isinstance(e, ast.Constant)]
    assert len(types) == len(assign.value.elts), "TRUSTED_TYPES must be literal strings"
    allowed_roots = ("sklearn.", "numpy.", "builtins.")
    # the project's own estimators, named one by one (plain arrays and floats; loading one sets
    # its attributes, no code of the blob runs)
    own_estimators = {"online_ml.softmax.OnlineSoftmax"}
    assert all(t.startswith(allowed_roots) or t in own_estimators for t in types), types
    dangerous = {"builtins.eval", "builtins.exec", "builtins.getattr", "builtins.__import__",
                 "builtins.open", "builtins.compile", "builtins.type", "builtins.object"}
    assert not dangerous & set(types)
