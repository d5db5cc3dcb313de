"""The packages of mpdit/ import down a ladder of rungs: a package imports only packages on lower
rungs (and its own modules), so two packages cannot import each other, and no module cycle; at
module level or inside a function (read from the source, so a hidden import counts too)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mpdit"
# One rung per layer of the engine (docs/training.md, "Package layers"); packages on one rung do
# not import each other.
LAYERS = {"mpdit.network": 0, "mpdit.world": 0, "mpdit.options": 0, "mpdit.signals": 0,
          "mpdit.models": 1, "mpdit.diffusion": 1, "mpdit.io": 2,
          "mpdit.compat": 3, "mpdit.data": 3, "mpdit.evaluation": 4, "mpdit.audit": 4, "mpdit.inference": 5,
          "mpdit.training": 6, "mpdit.bench": 7, "mpdit.ablation": 7, "mpdit.cli": 8, "mpdit.__main__": 9,
          "mpdit": 9}


def module_name(path: Path) -> str:
    parts = ["mpdit", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def imports() -> dict:
    """{module: {imported mpdit module}} over every import statement in mpdit/."""
    found = {}
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "mpdit":  # a submodule, or the top package
                found.setdefault(name, set()).update(
                    f"mpdit.{a.name}" if (ROOT / a.name).is_dir() or (ROOT / f"{a.name}.py").exists() else "mpdit"
                    for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mpdit."):
                found.setdefault(name, set()).add(node.module)
            elif isinstance(node, ast.Import):
                found.setdefault(name, set()).update(a.name for a in node.names if a.name.startswith("mpdit."))
    return found


def test_every_package_has_a_layer():
    assert {package(module) for module in imports()} | {package(m) for ms in imports().values() for m in ms} \
        <= set(LAYERS)


def test_imports_point_strictly_down_between_packages():
    upward = sorted(f"{module} imports {target}" for module, targets in imports().items() for target in targets
                    if package(target) != package(module) and LAYERS[package(target)] >= LAYERS[package(module)])
    assert upward == []


def test_no_import_cycle_between_modules():
    graph = {module: {t for t in targets if t != module} for module, targets in imports().items()}

    def reaches(start, goal, seen=()):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, (*seen, nxt)))
                   for nxt in graph.get(start, ()))

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if a < b and reaches(b, a))
    assert cycles == []
