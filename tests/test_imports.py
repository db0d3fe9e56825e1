"""The import rules (docs/ARCHITECTURE.md), read off every .py file's syntax tree:

- a stage (`sft`, `reward`, `ppo`, `dpo`, `rloo`) imports only `rlhf`, itself and third-party packages: so `sft`
  never imports `reward` or `ppo`, `dpo` reads preferences through `rlhf.preferences` (not `reward.data`) and `rloo`
  its prompts and parents through `rlhf.rollout_prompts` / `rlhf.chain` (not `ppo`);
- the core (`rlhf`) imports no stage, except its command dispatch, rlhf/cli.py;
- `bench/` never imports `tests/`.

An import is an `import` statement anywhere in a file (inside functions too), a call to
`importlib.import_module` / `__import__` with a literal name, or a "module:function" string naming one of our
modules (how rlhf/cli.py registers its commands).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

STAGES = ("sft", "reward", "ppo", "dpo", "rloo")
PACKAGES = ("rlhf", *STAGES)
STAGE_DISPATCH = {"rlhf/cli.py"}  # the one core module that may name the stages
# a "module:function" registry string ("sft.train:cli"); a dotted name alone is no import ("ppo.kl_to_sft" is a
# metric, "sft" a step name)
MODULE_STRING = re.compile(r"^(?P<top>[a-z_]\w*)(?:\.\w+)*:\w+$")


def python_files(root: Path, *dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (root / d).rglob("*.py"))


def imported(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, dotted module name) for every import in the file, relative ones resolved against its package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module])))
            else:  # from . import a, b: the modules a and b of this package
                found += [(node.lineno, ".".join([*base, alias.name])) for alias in node.names]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = MODULE_STRING.match(node.value)
            if m and m["top"] in PACKAGES:
                found.append((node.lineno, node.value.split(":")[0]))
    return sorted(found)


def _is_dynamic_import(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


def violations(dirs: tuple[str, ...], allowed, root: Path = REPO) -> list[str]:
    """`file:line: imports X` for every import of one of our packages that `allowed(file, top)` refuses."""
    out = []
    for path in python_files(root, *dirs):
        rel = path.relative_to(root).as_posix()
        for line, name in imported(path, root):
            top = name.split(".")[0]
            if top in PACKAGES and not allowed(rel, top):
                out.append(f"{rel}:{line}: imports {name}")
    return out


def test_stages_import_only_the_core_and_themselves():
    found = violations(STAGES, lambda rel, top: top in ("rlhf", rel.split("/")[0]))
    assert not found, "a stage may import only rlhf and itself:\n" + "\n".join(found)


def test_the_core_imports_no_stage_outside_its_command_dispatch():
    found = violations(("rlhf",), lambda rel, top: top == "rlhf" or rel in STAGE_DISPATCH)
    assert not found, "rlhf imports no stage (only rlhf/cli.py names them):\n" + "\n".join(found)


def bench_imports_of_tests(root: Path = REPO) -> list[str]:
    """bench/ scripts put bench/ on sys.path and import its modules by name: a tests/ module name, or tests/ on
    sys.path, would make a bench depend on the test suite."""
    test_modules = {p.stem for p in (root / "tests").glob("*.py")} - {
        p.stem for p in (root / "bench").glob("*.py")
    }
    found = []
    for path in python_files(root, "bench"):
        rel = path.relative_to(root).as_posix()
        for line, name in imported(path, root):
            if name.split(".")[0] in {"tests", *test_modules}:
                found.append(f"{rel}:{line}: imports {name} (tests/)")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("insert", "append"):
                if any(isinstance(c, ast.Constant) and c.value == "tests" for c in ast.walk(node)):
                    found.append(f"{rel}:{node.lineno}: puts tests/ on sys.path")
    return sorted(found)


def test_bench_never_imports_tests():
    found = bench_imports_of_tests()
    assert not found, "bench/ never imports tests/:\n" + "\n".join(found)


def test_the_rules_see_every_kind_of_import(tmp_path):
    """The parser itself: statements anywhere, relative imports, import_module calls and registry strings count;
    a step name or a metric name does not."""
    (tmp_path / "rlhf").mkdir()
    (tmp_path / "rlhf" / "x.py").write_text(
        "import os\n"
        "from . import models\n"
        "def f():\n"
        "    import sft.train\n"
        "    from ppo.config import PPOStageConfig\n"
        "import importlib\n"
        "importlib.import_module('reward.score')\n"
        "COMMANDS = {'ppo': ('ppo.train:cli', 'help')}\n"
        "STEP, METRIC = 'sft', 'ppo.kl_to_sft'\n"
    )
    assert imported(tmp_path / "rlhf" / "x.py", tmp_path) == [
        (1, "os"),
        (2, "rlhf.models"),
        (4, "sft.train"),
        (5, "ppo.config"),
        (6, "importlib"),
        (7, "reward.score"),
        (8, "ppo.train"),
    ]
    assert violations(("rlhf",), lambda rel, top: top == "rlhf", tmp_path) == [
        "rlhf/x.py:4: imports sft.train",
        "rlhf/x.py:5: imports ppo.config",
        "rlhf/x.py:7: imports reward.score",
        "rlhf/x.py:8: imports ppo.train",
    ]
