"""The structure the README's Architecture section promises, checked from the code itself:
arrows point one way (commands -> library), dvc.yaml's deps are each stage's static import
closure, and `multvae --help` loads no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("multvae", "stages")
WIRING = {"stages/cli.py"}  # registers commands, computes nothing: no stage depends on it


def module_path(name: str) -> Path | None:
    """The project file of a dotted module name, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports anywhere in it (top level, inside functions, under TYPE_CHECKING
    excluded), as dotted names; `from pkg import mod` counts as pkg.mod when that is a module."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for child in node.body for n in ast.walk(child))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names
                         if module_path(f"{node.module}.{alias.name}") is not None)
    return names


def closure(start: Path) -> set[str]:
    """Project files (relative paths) that running `start` may import, directly or not."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # a package's __init__ runs on import of its modules
                found = module_path(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return {str(p.relative_to(ROOT)) for p in seen} - WIRING


def command_modules() -> dict[str, Path]:
    """`multvae <command>` -> the file that defines it, from the app itself."""
    from stages.cli import app

    out = {}
    for info in app.registered_commands:
        callback = info.callback
        assert callback is not None
        name = info.name or callback.__name__.replace("_", "-")  # as Typer names it
        out[name] = ROOT / (callback.__module__.replace(".", "/") + ".py")
    return out


def stage_code_deps() -> dict[str, tuple[str, set[str]]]:
    """dvc.yaml stage -> (its command, the .py files among its deps)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        command = body["cmd"].split()[1]
        out[name] = (command, {d for d in body.get("deps", []) if str(d).endswith(".py")})
    return out


def dependency_faults(declared: dict[str, tuple[str, set[str]]]) -> list[str]:
    commands = command_modules()
    faults = []
    for stage, (command, deps) in declared.items():
        needed = closure(commands[command])
        faults += [f"{stage}: imports {m} but does not list it in deps" for m in sorted(needed - deps)]
        faults += [f"{stage}: lists {m} in deps but never imports it" for m in sorted(deps - needed)]
    return faults


def test_library_never_imports_the_command_layer():
    for path in sorted((ROOT / "multvae").rglob("*.py")):
        bad = sorted(n for n in imported_modules(path) if n.split(".")[0] == "stages")
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: the library must not import commands"


def test_package_init_files_hold_no_code():
    # They run whenever their package is imported, and the deps check leaves wiring-only files out.
    for path in [ROOT / "stages" / "__init__.py", ROOT / "stages" / "tools" / "__init__.py"]:
        body = ast.parse(path.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), path


def test_dvc_deps_are_each_stage_static_import_closure():
    faults = dependency_faults(stage_code_deps())
    assert not faults, "dvc.yaml deps differ from what the stages import:\n" + "\n".join(faults)


def test_a_module_dropped_from_a_stages_deps_is_caught():
    declared = stage_code_deps()
    command, deps = declared["evaluate"]
    declared["evaluate"] = (command, deps - {"multvae/model.py"})
    assert dependency_faults(declared) == ["evaluate: imports multvae/model.py but does not list it in deps"]


def test_function_level_imports_count():
    # stages/train.py imports the training loop inside the command function.
    assert "multvae/training.py" in closure(ROOT / "stages" / "train.py")


@pytest.mark.parametrize("argv", [["--help"], ["download", "--help"], ["prepare", "--help"]])
def test_help_and_data_commands_load_no_torch(argv):
    code = ("import sys; from typer.testing import CliRunner; from stages.cli import app; "
            f"r = CliRunner().invoke(app, {argv!r}); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'scipy.stats', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_every_command_has_a_whole_line_in_the_help():
    """`multvae --help` lists every command with a summary that is not cut mid-sentence."""
    from typer.testing import CliRunner

    from stages.cli import SUMMARIES, app

    text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}).output
    lines = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ") and line.split()}
    for command, summary in SUMMARIES.items():
        name = command.__name__.replace("_", "-")
        assert name in lines and lines[name].rstrip().endswith(summary), (name, lines.get(name))
        assert summary.endswith(".") and "..." not in lines[name]


def test_every_scoring_command_reads_the_folds_through_the_one_checked_loader():
    """evaluate, the baselines and the blends load the prepared folds with multvae.folds.load_folds
    (cut-offs and held-out users checked); none reads a fold by itself."""
    commands = {"evaluate.py": {"evaluate"}, "baselines.py": {"popularity", "ease", "rp3beta"},
                "blend.py": {"blend", "control_blend"}}
    for file, names in commands.items():
        tree = ast.parse((ROOT / "stages" / file).read_text())
        found = {}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                found[node.name] = {n.func.id for n in ast.walk(node)
                                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        assert set(found) == names, (file, sorted(found))
        for name, called in found.items():
            assert "load_folds" in called and "load_dataset" not in called, (file, name)
