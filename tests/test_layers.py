"""The package's layers (pix2pix_tf/__init__.py) hold: every import of one of its modules, at
module level or inside a function, points to the same layer or one below, and the groups of a
layer never import each other both ways. Parsed with `ast`, so nothing is imported to check."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from typing import Iterator, NamedTuple, Optional

import pytest

import pix2pix_tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Import(NamedTuple):
    where: str  # path:line
    source: str  # the importing module
    target: str  # the imported module of the package


def module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[:-len(".py")].replace(os.sep, ".")
    return relative[:-len(".__init__")] if relative.endswith(".__init__") else relative


def package_modules() -> dict[str, str]:
    """Every module of the package and the entry scripts beside it, by name: path."""
    scripts = [group for _, groups in pix2pix_tf.LAYERS for group in groups if group.endswith(".py")]
    found = {module_name(os.path.join(ROOT, name)): os.path.join(ROOT, name) for name in scripts}
    for folder, _, files in os.walk(os.path.join(ROOT, "pix2pix_tf")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                found[module_name(path)] = path
    return found


def imports_of(name: str, path: str, modules: dict[str, str]) -> Iterator[Import]:
    """The package modules `path` imports, wherever in the file the import stands."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    for node in ast.walk(tree):
        where = f"{os.path.relpath(path, ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parent = package.split(".")[:len(package.split(".")) + 1 - node.level] if node.level else []
            base = ".".join(parent + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] == "pix2pix_tf":
                yield Import(where, name, target)


def layer_of(module: str) -> tuple[int, str]:
    """The layer index and group of a module (see pix2pix_tf.LAYERS)."""
    parts = module.split(".")
    if parts[-1] == "__main__":
        group = "__main__"
    elif parts[0] != "pix2pix_tf":
        group = module + ".py"  # A script beside the package.
    else:
        group = parts[1] if len(parts) > 1 else "pix2pix_tf"
    if group == "pix2pix_tf":
        return 0, group  # The package's __init__.
    for index, (_, groups) in enumerate(pix2pix_tf.LAYERS):
        if group in groups:
            return index, group
    raise AssertionError(f"{module} belongs to no layer of pix2pix_tf.LAYERS")


def all_imports() -> list[Import]:
    modules = package_modules()
    found = [found for name, path in sorted(modules.items()) for found in imports_of(name, path, modules)]
    return list(dict.fromkeys(found))


def layer_name(index: int) -> str:
    return pix2pix_tf.LAYERS[index][0]


def upward(imports: list[Import]) -> list[str]:
    problems = []
    for found in imports:
        (low, _), (high, group) = layer_of(found.source), layer_of(found.target)
        if high > low:
            problems.append(f"{found.where}: {found.source} ({layer_name(low)}) imports {found.target} "
                            f"({group}, {layer_name(high)})")
    return problems


def group_cycles(imports: list[Import]) -> list[str]:
    """Imports between two groups of one layer that import each other."""
    edges: dict[tuple[str, str], list[str]] = {}
    for found in imports:
        (low, source), (high, target) = layer_of(found.source), layer_of(found.target)
        if low == high and source != target:
            edges.setdefault((source, target), []).append(found.where)
    return [f"{where}: {a} imports {b}, which imports {a} ({', '.join(edges[(b, a)])})"
            for (a, b), wheres in sorted(edges.items()) if (b, a) in edges for where in wheres]


def module_cycle(imports: list[Import]) -> Optional[list[str]]:
    """One cycle among the package's modules, as the imports that close it, or None."""
    graph: dict[str, list[Import]] = {}
    for found in imports:
        graph.setdefault(found.source, []).append(found)
    state: dict[str, int] = {}
    stack: list[Import] = []

    def visit(module: str) -> Optional[list[str]]:
        state[module] = 1
        for found in graph.get(module, []):
            target = found.target
            if state.get(target) == 1:
                start = next(i for i, f in enumerate(stack) if f.source == target) if target != module else len(stack)
                return [f"{f.where}: {f.source} imports {f.target}" for f in stack[start:] + [found]]
            if not state.get(target):
                stack.append(found)
                cycle = visit(target)
                stack.pop()
                if cycle:
                    return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if not state.get(module):
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def unexplained_deferred_imports(path: str) -> Iterator[str]:
    """Imports of the package inside a function with no comment saying why, on their line or
    above them (over blank lines and the other imports of their block)."""
    with open(path) as f:
        source = f.read()
    lines = source.splitlines()
    for function in ast.walk(ast.parse(source, path)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not any(name.split(".")[0] == "pix2pix_tf" for name in names):
                continue
            row = node.lineno - 1
            while row >= 0 and "#" not in lines[row] and (
                    row == node.lineno - 1 or not lines[row].strip()
                    or lines[row].lstrip().startswith(("import ", "from "))):
                row -= 1
            if row < 0 or "#" not in lines[row]:
                yield f"{os.path.relpath(path, ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}"


def test_imports_inside_functions_say_why():
    """A dependency is stated at the top of its module; one deferred into a function (TensorFlow
    for the TensorFlow-free runtime and for --help, an optional extra) says so where it stands."""
    problems = [found for path in package_modules().values() for found in unexplained_deferred_imports(path)]
    assert not problems, "Imports inside functions without a reason:\n" + "\n".join(problems)


def test_every_module_has_a_layer():
    for name in package_modules():
        layer_of(name)


def test_no_import_runs_up_a_layer():
    problems = upward(all_imports())
    assert not problems, "Imports from a higher layer:\n" + "\n".join(problems)


def test_groups_of_one_layer_do_not_import_each_other_both_ways():
    problems = group_cycles(all_imports())
    assert not problems, "Groups importing each other:\n" + "\n".join(problems)


def test_no_module_imports_itself_through_others():
    cycle = module_cycle(all_imports())
    assert not cycle, "An import cycle:\n" + "\n".join(cycle)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from pix2pix_tf.training import loop\n")
    modules = {"pix2pix_tf.training.loop": "", "pix2pix_tf.inference.probe": str(path)}
    (found,) = imports_of("pix2pix_tf.inference.probe", str(path), modules)
    assert found.target == "pix2pix_tf.training.loop" and found.where.endswith("probe.py:2")
    assert upward([found]) and "inference.probe (runtime) imports pix2pix_tf.training.loop" in upward([found])[0]
    assert list(unexplained_deferred_imports(str(path))) == [f"{os.path.relpath(path, ROOT)}:2: "
                                                             "from pix2pix_tf.training import loop"]
    path.write_text("def f():\n    import os  # Why.\n\n    from pix2pix_tf.training import loop\n")
    assert not list(unexplained_deferred_imports(str(path)))


RUNTIME = ("pix2pix_tf.serving.client", "pix2pix_tf.inference.sources", "pix2pix_tf.inference.tflite_runner",
           "pix2pix_tf.inference.artifacts", "pix2pix_tf.inference.onnx_runner")


@pytest.mark.parametrize("module", RUNTIME)
def test_the_runtime_loads_no_trainer_or_tooling(module):
    """What a Serving, TFLite or ONNX user imports carries neither the trainer nor the harness
    (nor TensorFlow: it is loaded only for the model forms that need it)."""
    probe = (f"import sys, {module}; "
             "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
             "[['pix2pix_tf', g] for g in ('benchmark', 'experiments', 'training', 'export', 'data', "
             "'evaluation', 'demo')] or m in ('tensorflow', 'keras')))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


COMMANDS = ("train.py", "export.py", "pix2pix_tf.translate", "pix2pix_tf.evaluate", "pix2pix_tf.demo",
            "pix2pix_tf.benchmark", "pix2pix_tf.benchmark.web", "pix2pix_tf.experiments.paper",
            "pix2pix_tf.experiments.multiscale", "pix2pix_tf.experiments.precision")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help_before_tensorflow_loads(command):
    """Each command reads its flags before it imports TensorFlow: with TensorFlow made
    unimportable, --help still prints the flags."""
    run = (f"runpy.run_path({os.path.join(ROOT, command)!r}, run_name='__main__')" if command.endswith(".py")
           else f"runpy.run_module({command!r}, run_name='__main__', alter_sys=True)")
    probe = ("import runpy, sys; sys.modules['tensorflow'] = sys.modules['keras'] = None; "
             f"sys.argv = ['x', '--help']; {run}")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--helpfull" in result.stdout + result.stderr, (result.stdout + result.stderr)[-2000:]


INSTALLED_COMMANDS = ("train", "export", "pix2pix_tf.translate", "pix2pix_tf.evaluate", "pix2pix_tf.demo")


@pytest.mark.slow  # Builds and installs the wheel with pip.
def test_the_installed_package_is_the_runtime_and_the_trainer_without_the_tooling(tmp_path):
    """The wheel a user installs carries every part but the tooling (the benchmark and the
    experiments stay in the repository), and what it carries runs without it: each runtime
    module imports and each installed command answers --help, from the installed copy."""
    source = tmp_path / "source"  # A copy, so that no build/ folder of the clone (stale files) goes in.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "node_modules", "build", "*.egg-info",
                                                                "__pycache__", "tests", "docs", "notebooks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "wheel"), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheel").glob("pix2pix_tf-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
        entry_points = archive.read(next(m for m in members if m.endswith("entry_points.txt"))).decode()
    shipped = {os.path.dirname(m).replace("/", ".") for m in members if m.startswith("pix2pix_tf/")}
    in_repository = {name.rpartition(".")[0] if not path.endswith("__init__.py") else name
                     for name, path in package_modules().items() if name.startswith("pix2pix_tf")}
    groups = dict(pix2pix_tf.LAYERS)["tooling"]
    tooling = {name for name in in_repository if name.partition(".")[2].split(".")[0] in groups}
    assert tooling and shipped == in_repository - tooling
    assert {"train.py", "export.py", "pix2pix_tf/export/web/index.html"} <= set(members)
    assert "pix2pix-benchmark" not in entry_points

    installed = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(installed), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    environment = {**os.environ, "PYTHONPATH": str(installed)}
    probe = f"import pix2pix_tf, {', '.join(RUNTIME)}; print(pix2pix_tf.__file__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == str(installed / "pix2pix_tf" / "__init__.py"), result.stderr[-2000:]
    for command in INSTALLED_COMMANDS:
        result = subprocess.run([sys.executable, "-m", command, "--help"], cwd=tmp_path, env=environment,
                                capture_output=True, text=True, timeout=120)
        assert "Traceback" not in result.stderr and "--helpfull" in result.stdout + result.stderr, \
            (command, result.stderr[-2000:])
