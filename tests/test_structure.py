"""The package's shape: an acyclic import graph, later stages independent of training, functions
that fit on a screen, modules under 500 lines, and a command line that starts without torch."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnlab"
INDEPENDENT_OF_TRAINING = (
    "cnnlab.inference",
    "cnnlab.explain",
    "cnnlab.runtime",
    "cnnlab.run",
    "cnnlab.report",
    "cnnlab.transfer",  # training's fine-tuning imports transfer: it must stay below training
)
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 79, 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imported(name: str) -> set[str]:
    """The cnnlab modules `name` imports anywhere in its file (functions and branches included)."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            source = ".".join(p for p in (base, node.module) if p)
            for alias in node.names:  # `from pkg import submodule` imports pkg.submodule
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
    return {m for m in found if m in MODULES and m != name}


IMPORTS = {name: _imported(name) for name in MODULES}


def _with_parents(module: str) -> set[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _import_chain(start: str, is_target) -> list[str] | None:
    """The shortest chain of imports (parent packages included) from `start` to a target."""
    came_from, frontier = {start: None}, [start]
    while frontier:
        module = frontier.pop(0)
        if is_target(module):
            chain = [module]
            while came_from[chain[-1]]:
                chain.append(came_from[chain[-1]])
            return chain[::-1]
        for target in sorted(set().union(*map(_with_parents, IMPORTS[module]))):
            if target not in came_from:
                came_from[target] = module
                frontier.append(target)
    return None


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(IMPORTS)
    assert not cycles, "import cycles (each line one cycle's modules):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def _is_training(module: str) -> bool:
    return module == "cnnlab.training" or module.startswith("cnnlab.training.")


def test_inference_explain_runtime_and_run_never_reach_training():
    chains = []
    for name in MODULES:
        if name.startswith(tuple(p + s for p in INDEPENDENT_OF_TRAINING for s in ("", "."))):
            chain = _import_chain(name, _is_training)
            if chain:
                chains.append(" -> ".join(chain))
    assert not chains, "these import cnnlab.training:\n" + "\n".join(chains)


def test_only_the_compare_command_reaches_the_comparison_harness():
    """cnnlab.compare sits above training and inference (it trains and scores models): nothing
    below it may import it, only its own modules and its command."""
    allowed = ("cnnlab.compare", "cnnlab.commands.compare")
    readers = ("cnnlab.compare", "cnnlab.compare.outputs")  # the report reads a comparison back
    chains = []
    for name in MODULES:
        if name == "cnnlab" or name.startswith(tuple(a + s for a in allowed for s in ("", "."))):
            continue
        chain = _import_chain(
            name, lambda m: m.split(".")[:2] == ["cnnlab", "compare"] and m not in readers
        )
        if chain:
            chains.append(" -> ".join(chain))
    assert not chains, "these import cnnlab.compare:\n" + "\n".join(chains)


def _fresh_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_inference_and_explain_loads_no_training_module():
    loaded = _fresh_python(
        "import sys, cnnlab.inference, cnnlab.explain\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['cnnlab', 'training']))"
    )
    assert loaded == "[]", f"import cnnlab.inference, cnnlab.explain loaded {loaded}"


# What `cnnlab COMMAND --help` must not import: each takes from a tenth of a second to seconds.
HEAVY = ("torch", "torchvision", "optuna", "sklearn", "scipy", "matplotlib", "bokeh")


def test_help_is_built_without_torch():
    """Every command's --help, explain's and ops' included (their choices come from cnnlab.specs),
    imports none of HEAVY: tests/test_startup.py times them."""
    from cnnlab.commands import COMMANDS

    code = (
        "import sys\nfrom cnnlab.cli import main\n"
        "try:\n    main(sys.argv[1:] + ['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}), file=sys.stderr)"
    )
    for command in ["", *COMMANDS]:
        argv = [sys.executable, "-c", code, *([command] if command else [])]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "--help" in done.stdout, done.stderr
        assert done.stderr.strip() == "[]", f"`cnnlab {command} --help` imported {done.stderr}"


def test_functions_fit_on_a_screen_and_modules_stay_small():
    long_functions = [
        f"{MODULES[name].relative_to(PACKAGE.parent)}:{node.lineno} {node.name}() "
        f"{node.end_lineno - node.lineno + 1} lines"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    long_modules = [
        f"{path.relative_to(PACKAGE.parent)} {lines} lines"
        for path in MODULES.values()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long_functions + long_modules, (
        f"functions of 80 lines or more, modules over {MAX_MODULE_LINES} lines:\n"
        + "\n".join(long_functions + long_modules)
    )


# docs/ARCHITECTURE.md's layers, bottom to top: a module imports only from its own layer or below.
# The package root holds the version and lazy attributes only, so every layer may read it.
LAYERS = (
    ("cnnlab", "cnnlab.errors", "cnnlab.registry", "cnnlab.fileio"),
    ("cnnlab.specs",),
    ("cnnlab.ops",),
    ("cnnlab.layers",),
    ("cnnlab.models",),
    ("cnnlab.data",),
    ("cnnlab.metrics", "cnnlab.binary_metrics", "cnnlab.calibration", "cnnlab.evaluation"),
    ("cnnlab.runtime",),
    ("cnnlab.run",),
    ("cnnlab.transfer",),
    ("cnnlab.training",),
    ("cnnlab.tuning",),
    ("cnnlab.inference",),
    ("cnnlab.explain",),
    ("cnnlab.compare",),
    ("cnnlab.report",),
    ("cnnlab.api",),
    ("cnnlab.commands", "cnnlab.cli", "cnnlab.__main__"),
)


def _layer(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, group in enumerate(LAYERS)
        for prefix in group
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of LAYERS (docs/ARCHITECTURE.md): add it"
    return max(matches)[1]  # the longest prefix: cnnlab.run.x is in cnnlab.run, not cnnlab


def test_every_module_imports_only_from_its_layer_or_below():
    upward = [
        f"{module} -> {target}"
        for module, targets in IMPORTS.items()
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert not upward, "imports of a higher layer (docs/ARCHITECTURE.md):\n" + "\n".join(upward)


def test_the_torch_pins_accept_pytorchs_cpu_only_builds():
    """README: a CPU-only torch (2.14.1+cpu) installed first satisfies the project's pins, by
    pip's PEP 440 rules, so `pip install -e .` keeps it."""
    import tomllib

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    pins = {
        requirement.name: requirement.specifier
        for requirement in map(Requirement, pyproject["project"]["dependencies"])
    }
    for name in ("torch", "torchvision"):
        (version,) = [spec.version for spec in pins[name]]
        assert pins[name].contains(f"{version}+cpu"), (name, pins[name])
