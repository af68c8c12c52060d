"""The layout's import rules, checked on every module's imports (lazy ones inside functions included).

They keep the layers honest: the core and the sync engine never reach up into finance or the
dashboard (the application hands them hooks instead), sources never import each other, Streamlit
stays in the dashboard, and pages draw without touching the database.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("collector", "providers", "importers", "dashboard")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def imports_of(path: Path) -> set[str]:
    """Every module name ``path`` imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _hits(module: str, banned: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imports_of(MODULES[module]) if any(n == b or n.startswith(b + ".") for b in banned))


def _under(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


def test_the_rules_see_every_package() -> None:
    for prefix in ("collector.core", "collector.sync", "providers", "importers", "dashboard.app_pages"):
        assert len(_under(prefix)) >= 3, prefix


@pytest.mark.parametrize("module", _under("collector.core") + _under("collector.sync"))
def test_core_and_sync_never_import_finance_dashboard_or_streamlit(module: str) -> None:
    assert _hits(module, ("collector.finance", "dashboard", "streamlit", "collector.app", "collector.cli")) == []


@pytest.mark.parametrize("module", _under("providers"))
def test_providers_never_import_importers(module: str) -> None:
    assert _hits(module, ("importers", "dashboard", "collector.finance")) == []


@pytest.mark.parametrize("module", _under("importers"))
def test_importers_never_import_providers(module: str) -> None:
    assert _hits(module, ("providers", "dashboard", "collector.finance")) == []


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith("dashboard")])
def test_nothing_outside_the_dashboard_imports_streamlit(module: str) -> None:
    assert _hits(module, ("streamlit",)) == []


@pytest.mark.parametrize("module", _under("dashboard.app_pages"))
def test_pages_import_nothing_from_sqlalchemy(module: str) -> None:
    assert _hits(module, ("sqlalchemy",)) == []


def test_the_rule_checker_sees_lazy_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from collector.finance import budgets\n    import streamlit as st\n")
    assert {"collector.finance", "collector.finance.budgets", "streamlit"} <= imports_of(probe)


@pytest.mark.parametrize("module", _under("collector.otel"))
def test_the_otel_receiver_imports_only_core(module: str) -> None:
    ours = {n for n in imports_of(MODULES[module]) if n.split(".")[0] in PACKAGES}
    assert sorted(n for n in ours if not n.startswith(("collector.core", "collector.otel"))) == []
