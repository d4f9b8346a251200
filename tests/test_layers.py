"""The layers of docs/ARCHITECTURE hold, checked on every import statement of the package (lazy imports inside
functions included) and, for the client, on what a fresh interpreter actually loads:

- ``client/`` imports no ``airflow`` (usable from any script);
- ``engines/`` imports no ``airflow`` and nothing above it (operators, hooks, sensors, triggers);
- ``emulator/`` imports nothing else of the provider (it shares no code with the client it tests) except
  ``pubsub_proto/``, the protocol's message definitions (checked against the spec's table on their own);
- ``pubsub_proto/`` imports nothing of the provider;
- no provider module outside ``emulator/`` imports the emulator;
- operators do not import each other (shared glue lives in ``operators/_*.py``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_sfint"
NAME = PACKAGE.name


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` names a module
    return found


MODULES = {_module(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    while module not in MODULES and "." in module:  # `from pkg.mod import name`: the module, not the name
        module = module.rsplit(".", 1)[0]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _airflow(target: str) -> bool:
    return target == "airflow" or target.startswith("airflow.")


def _violations(rule: str) -> list[str]:
    out = []
    for module, imported in MODULES.items():
        layer = _layer(module)
        for target in sorted(imported):
            ours = target == NAME or target.startswith(NAME + ".")
            other = _layer(target) if ours else ""
            bad = False
            if rule == "client" and layer == "client":
                bad = _airflow(target) or (ours and other not in ("client", "pubsub_proto", ""))
            elif rule == "engines" and layer == "engines":
                bad = _airflow(target) or (ours and other not in ("client", "engines", "pubsub_proto", ""))
            elif rule == "emulator" and layer == "emulator":
                bad = ours and other not in ("emulator", "pubsub_proto")
            elif rule == "pubsub_proto" and layer == "pubsub_proto":
                bad = _airflow(target) or (ours and other != "pubsub_proto")
            elif rule == "no-emulator" and layer != "emulator" and module != f"{NAME}.emulator":
                bad = ours and other == "emulator"
            elif rule == "operators" and layer == "operators":
                name = module.split(".")[-1]
                sibling = target.split(".")[2] if ours and other == "operators" and target.count(".") >= 2 else ""
                sibling = sibling if f"{NAME}.operators.{sibling}" in MODULES else ""
                bad = bool(sibling) and not sibling.startswith("_") and sibling != name
            if bad:
                out.append(f"{module} imports {target}")
    return out


@pytest.mark.parametrize("rule", ["client", "engines", "emulator", "pubsub_proto", "no-emulator", "operators"])
def test_layer_rule(rule: str) -> None:
    assert MODULES, "no modules found"
    assert _violations(rule) == []


def test_the_rules_see_a_violation() -> None:
    """The checker itself: an operator importing another, and the client importing Airflow, are caught."""
    MODULES[f"{NAME}.operators.fake"] = {f"{NAME}.operators.bulk_ingest", f"{NAME}.operators._state"}
    MODULES[f"{NAME}.client.fake"] = {"airflow.sdk"}
    try:
        assert _violations("operators") == [f"{NAME}.operators.fake imports {NAME}.operators.bulk_ingest"]
        assert _violations("client") == [f"{NAME}.client.fake imports airflow.sdk"]
    finally:
        del MODULES[f"{NAME}.operators.fake"], MODULES[f"{NAME}.client.fake"]


def test_the_client_and_engines_load_without_airflow() -> None:
    code = (
        "import sys, importlib, pkgutil\n"
        f"import {NAME}.client as c, {NAME}.engines as e\n"
        "for pkg in (c, e):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
