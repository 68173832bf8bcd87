"""The packages' import rules, checked over the source with ``ast``.

Layers point one way: variants -> config -> store -> data, losses, decoding -> evaluate -> train
-> profile -> grid -> report -> commands, the neutral helpers below all of harness; `variants`
imports no `harness` package.
The README's package map states the same rules per package; a test keeps the two in step.
Function-local imports count too: hiding an import inside a function does not remove the
dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: what the neutral helper modules may never import
NEUTRAL_FORBIDDEN = ["variants", "harness.config", "harness.data", "harness.losses", "harness.decoding",
                     "harness.evaluate", "harness.train", "harness.grid", "harness.commands", "harness.profile",
                     "harness.report", "harness.store"]

#: package -> packages it may never import (any import of them or their submodules)
FORBIDDEN = {
    "variants": ["harness"],
    # the neutral helpers import no other harness package
    **{helper: NEUTRAL_FORBIDDEN for helper in ("harness.atomic", "harness.devices", "harness.locks",
                                                "harness.processes", "harness.tables", "harness.stats")},
    "harness.config": ["harness.data", "harness.losses", "harness.decoding", "harness.evaluate", "harness.train",
                       "harness.grid", "harness.commands", "harness.profile", "harness.report", "harness.store"],
    "harness.data": ["harness.evaluate", "harness.losses", "harness.decoding", "harness.train", "harness.grid",
                     "harness.commands", "harness.report", "harness.profile", "harness.store"],
    "harness.losses": ["harness.evaluate", "harness.data", "harness.decoding", "harness.train", "harness.grid",
                       "harness.commands", "harness.report", "harness.profile", "harness.store"],
    "harness.decoding": ["harness.evaluate", "harness.data", "harness.losses", "harness.train", "harness.grid",
                         "harness.commands", "harness.report", "harness.profile", "harness.store"],
    # what training and `harness decode` share: a cell's model, data, checkpoints, decoding them
    "harness.evaluate": ["harness.train", "harness.profile", "harness.grid", "harness.report", "harness.commands"],
    "harness.train": ["harness.grid", "harness.commands", "harness.report", "harness.profile"],
    # the store's migrations re-key cells by the id harness.config.cell_id gives them
    "harness.store": ["harness.data", "harness.losses", "harness.decoding", "harness.evaluate",
                      "harness.train", "harness.grid", "harness.commands", "harness.profile", "harness.report"],
    "harness.grid": ["harness.commands", "harness.report"],
    "harness.profile": ["harness.report", "harness.grid", "harness.commands"],
    "harness.report": ["harness.commands"],
    # decoding checkpoints is harness.evaluate's, not training's
    "harness.commands.decode": ["harness.train"],
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, at any depth of the file."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(root: Path = ROOT) -> list[str]:
    found = []
    for top in ("harness", "variants"):
        for path in sorted((root / top).rglob("*.py")):
            name = module_name(path, root)
            for package, banned in FORBIDDEN.items():
                if not _within(name, package):
                    continue
                for mod in sorted(imported_modules(path, root)):
                    for b in banned:
                        if _within(mod, b):
                            found.append(f"{path.relative_to(root)}: {name} imports {mod} "
                                         f"({package} may not import {b})")
    return found


def test_layers_point_one_way():
    assert violations() == []


def test_the_checker_sees_function_local_and_relative_imports(tmp_path):
    pkg = tmp_path / "harness" / "train"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text("def f():\n    from ..grid import cells\n    import harness.report\n")
    found = violations(tmp_path)
    assert any("imports harness.grid.cells" in v for v in found)
    assert any("imports harness.report" in v for v in found)


def test_every_command_is_a_module_under_harness_commands():
    from harness.cli import COMMANDS

    for name, (module, _) in COMMANDS.items():
        assert module == f"harness.commands.{name.replace('-', '_')}", name
        assert (ROOT / "harness" / "commands" / f"{name.replace('-', '_')}.py").is_file(), name


def error_returns(root: Path = ROOT) -> list[str]:
    """Places in ``harness/commands`` that report a user's mistake other than by raising
    :class:`UserError`: returning exit status 2 by hand, printing ``error:`` lines with
    ``print_error`` (``harness.cli``'s one printer), or returning an error instead of raising it."""
    found = []
    for path in sorted((root / "harness" / "commands").glob("*.py")):
        if path.name == "common.py":  # defines UserError, file_error and print_error
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and node.value.value == 2:
                found.append(f"{where}: returns exit status 2; raise UserError instead")
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Call) \
                    and isinstance(node.value.func, ast.Name) and node.value.func.id in ("UserError", "file_error"):
                found.append(f"{where}: returns {node.value.func.id}(...); raise it")
            if isinstance(node, ast.Name) and node.id == "print_error" \
                    or isinstance(node, ast.alias) and node.name == "print_error":
                found.append(f"{where}: uses print_error; raise UserError and let harness.cli print it")
    return found


def test_commands_raise_never_return_errors():
    assert error_returns() == []


def test_the_error_checker_sees_returned_errors(tmp_path):
    commands = tmp_path / "harness" / "commands"
    commands.mkdir(parents=True)
    (commands / "x.py").write_text("from .common import print_error, file_error\n"
                                   "def run(args):\n    if args.a:\n        return 2\n"
                                   "    if args.b:\n        return file_error('f', 'bad')\n"
                                   "    print_error('bad')\n")
    found = error_returns(tmp_path)
    assert len(found) == 4, found  # the import and the call of print_error, return 2, return file_error


def private_imports(root: Path = ROOT) -> list[str]:
    """``from module import _name`` in the project's modules: a private name belongs to its
    module; what another module needs is public (torch's and other libraries' private names
    are their business, not checked here)."""
    found = []
    for top in ("harness", "variants"):
        for path in sorted((root / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                    continue
                if not node.level and not (node.module or "").split(".")[0] in ("harness", "variants"):
                    continue
                for a in node.names:
                    if a.name.startswith("_"):
                        found.append(f"{path.relative_to(root)}:{node.lineno}: imports the private "
                                     f"{a.name} from {'.' * node.level}{node.module or ''}")
    return found


def test_no_module_imports_a_private_name_from_another():
    assert private_imports() == []


#: the neutral helper modules, "helpers" in the README's package map
HELPERS = ("harness.atomic", "harness.devices", "harness.locks", "harness.processes", "harness.tables",
           "harness.stats")


def readme_map(root: Path = ROOT) -> dict[str, set[str]]:
    """The README's package map: package -> what it says the package may import."""
    import re

    out = {}
    for line in (root / "README.md").read_text().splitlines():
        m = re.match(r"- `((?:variants|harness\.\w+))` — .*; may import: (.*)$", line)
        if m:
            allowed = set(re.findall(r"`([\w.]+)`", m.group(2)))
            out[m.group(1)] = allowed | (set(HELPERS) if "helpers" in m.group(2) else set())
    return out


def test_the_readme_package_map_says_what_the_rules_say():
    documented = readme_map()
    packages = list(documented)
    assert set(packages) >= {p for p in FORBIDDEN if p not in HELPERS and p.count(".") < 2} | {"harness.commands"}
    for package in packages:
        banned = FORBIDDEN.get(package, [])
        allowed = {p for p in [*packages, *HELPERS] if p != package and not any(_within(p, b) for b in banned)}
        assert documented[package] == allowed, package
