"""The layering of DESIGN.md, read from the source: dependencies point down, modules stay small.

Every import statement is found with ``ast``, including those inside functions (a lazy import
is still a dependency), and relative imports are resolved against the module's package.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "technic_panel"
BELOW_UI = ("engine", "data", "streaming", "live")
"""The layers that must work without a UI or a server: no panel, no bokeh, no ui, no api."""
UI_AND_SERVER = ("panel", "bokeh", "technic_panel.ui", "technic_panel.api")
MAX_LINES = 450
"""No module may be longer; past SPLIT_LINES a module is reported as due for a split."""
SPLIT_LINES = 400


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """Return the dotted name of the module at ``path`` (a package for ``__init__.py``)."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: Path = PACKAGE) -> set[str]:
    """Return every module ``path`` imports, anywhere in it, as absolute dotted names.

    ``from a import b`` yields both ``a`` and ``a.b``: ``b`` may be a submodule.
    """
    module = module_name(path, package)
    parent = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = parent.split(".")[: len(parent.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def offending(path: Path, banned: tuple[str, ...], package: Path = PACKAGE) -> list[str]:
    """Return the imports of ``path`` that are, or lie inside, one of ``banned``."""
    return sorted(name for name in imports(path, package)
                  if any(name == top or name.startswith(f"{top}.") for top in banned))


def modules(*layers: str) -> list[Path]:
    """Return every module file of the given sub-packages (all of the package without any)."""
    roots = [PACKAGE / layer for layer in layers] or [PACKAGE]
    return sorted(path for root in roots for path in root.rglob("*.py"))


def label(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    package = tmp_path / "technic_panel"
    (package / "engine").mkdir(parents=True)
    probe = package / "engine" / "probe.py"
    probe.write_text("from . import scoring\nfrom ..ui import dashboard\n\n"
                     "def later():\n    import bokeh.models\n")
    assert imports(probe, package) == {
        "technic_panel.engine", "technic_panel.engine.scoring", "technic_panel.ui",
        "technic_panel.ui.dashboard", "bokeh.models"}
    assert offending(probe, UI_AND_SERVER, package) == [
        "bokeh.models", "technic_panel.ui", "technic_panel.ui.dashboard"]


@pytest.mark.parametrize("layer", BELOW_UI)
def test_nothing_below_the_ui_imports_panel_bokeh_the_ui_or_the_api(layer):
    found = {label(path): bad for path in modules(layer)
             if (bad := offending(path, UI_AND_SERVER))}
    assert modules(layer) and found == {}


def test_the_model_never_imports_its_view():
    controller = PACKAGE / "ui" / "controller.py"
    assert offending(controller, ("technic_panel.ui.dashboard",)) == []


def test_the_engine_imports_neither_the_config_nor_the_streaming_layer():
    banned = ("technic_panel.config", "technic_panel.streaming")
    found = {label(path): bad for path in modules("engine") if (bad := offending(path, banned))}
    assert found == {}


def test_the_engine_and_the_data_know_nothing_of_live_scans():
    found = {label(path): bad for path in modules("engine", "data")
             if (bad := offending(path, ("technic_panel.live",)))}
    assert found == {}


def test_live_scans_use_the_streaming_core_but_only_the_manager_starts_them():
    """The manager dispatches to ``live.scan``; live never reaches back for the manager."""
    found = {label(path): bad for path in modules("live")
             if (bad := offending(path, ("technic_panel.streaming.manager",)))}
    assert found == {}
    starters = {label(path) for path in modules("streaming")
                if offending(path, ("technic_panel.live",))}
    assert starters == {"technic_panel/streaming/manager.py"}


def test_no_module_outgrows_one_idea():
    lengths = {label(path): len(path.read_text().splitlines()) for path in modules()}
    due = {name: n for name, n in sorted(lengths.items()) if n > SPLIT_LINES}
    if due:
        warnings.warn(f"modules past {SPLIT_LINES} lines, due for a split: {due}",
                      stacklevel=1)
    assert {name: n for name, n in due.items() if n > MAX_LINES} == {}


def test_the_data_layer_imports_neither_the_engine_nor_what_sits_above_it():
    banned = ("technic_panel.engine", "technic_panel.streaming", "technic_panel.config",
              "technic_panel.policy")
    found = {label(path): bad for path in modules("data") if (bad := offending(path, banned))}
    assert found == {}
