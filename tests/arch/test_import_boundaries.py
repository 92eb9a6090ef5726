"""The pure set imports only torch and itself; heavy libraries stay in their one package."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ["alignrl.types", "alignrl.registry", "alignrl.ops", "alignrl.objectives", "alignrl.advantages", "alignrl.merging", "alignrl.anchors", "alignrl.divergences", "alignrl.rewards", "alignrl.rewards.normalize"]
BLOCKED = ["ray", "deepspeed", "vllm", "transformers", "datasets", "yaml"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_without_heavy_dependencies(module):
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in BLOCKED)
        + f"import {module}\n"
        + "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


OWNERS = {"deepspeed": "alignrl/engine", "vllm": "alignrl/rollout"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_heavy_dependencies_are_imported_only_by_their_owner():
    offenders = []
    for path in (ROOT / "alignrl").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        for lib, owner in OWNERS.items():
            if lib in _imports(path) and not rel.startswith(owner):
                offenders.append(f"{rel} imports {lib} (only {owner}/ may)")
    assert not offenders, "\n".join(offenders)
