"""Nothing unsafe is loaded: model weights only from safetensors (or GGUF), no pickle, YAML only with safe_load,
no Ray dashboard served by a run. A static scan of every module, so a new call site cannot slip in unnoticed."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "alignrl").rglob("*.py"))


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield owner, name, {k.arg: k.value for k in node.keywords}, node.lineno


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_models_load_from_safetensors_or_gguf_only():
    unsafe = [_where(p, line) for p in SOURCES for owner, name, kw, line in _calls(p)
              if name == "from_pretrained" and owner.startswith("AutoModel")
              and not ("gguf_file" in kw or (isinstance(kw.get("use_safetensors"), ast.Constant)
                                             and kw["use_safetensors"].value is True))]
    assert unsafe == [], f"AutoModel*.from_pretrained without use_safetensors=True: {unsafe}"
    assert sum(1 for p in SOURCES for owner, name, *_ in _calls(p) if name == "from_pretrained"
               and owner.startswith("AutoModel")) >= 5  # the scan sees the call sites


def _safe_loaders(path: Path) -> set[str]:
    """Classes of the module that subclass yaml.SafeLoader (or CSafeLoader)."""
    return {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)
            and any(isinstance(b, ast.Attribute) and b.attr in ("SafeLoader", "CSafeLoader") for b in node.bases)}


def test_no_pickle_and_only_safe_yaml():
    bad = []
    for p in SOURCES:
        safe = _safe_loaders(p) | {"SafeLoader", "CSafeLoader"}
        for owner, name, kw, line in _calls(p):
            loader = kw.get("Loader")
            loader = loader.id if isinstance(loader, ast.Name) else loader.attr if isinstance(loader, ast.Attribute) else ""
            if owner == "yaml" and name == "load" and loader in safe:
                continue
            if owner == "torch" and name == "load" and not (
                    isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                bad.append(f"torch.load without weights_only=True at {_where(p, line)}")
            if owner == "pickle" and name in ("load", "loads"):
                bad.append(f"pickle.{name} at {_where(p, line)}")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                bad.append(f"yaml.{name} at {_where(p, line)}")
    assert bad == []


def test_a_local_ray_serves_no_dashboard():
    inits = [(p, kw, line) for p in SOURCES for owner, name, kw, line in _calls(p) if owner == "ray" and name == "init"]
    assert inits
    for p, kw, line in inits:
        if "address" in kw and not (isinstance(kw["address"], ast.Constant) and kw["address"].value is None):
            continue  # joining an existing cluster: its dashboard is the cluster's own
        dash = kw.get("include_dashboard")
        assert isinstance(dash, ast.Constant) and dash.value is False, _where(p, line)
