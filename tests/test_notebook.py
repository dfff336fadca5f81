"""The notebook workaround's guard: the installed Panel is inside the range it is tested with."""

from __future__ import annotations

import re
from pathlib import Path

import panel as pn
import pytest

from technic_panel.ui.notebook import TESTED_PANEL, check_panel_version

ROOT = Path(__file__).resolve().parent.parent
LOW, HIGH = (".".join(map(str, bound)) for bound in TESTED_PANEL)


def test_the_installed_panel_is_inside_the_tested_range():
    check_panel_version(pn.__version__)


@pytest.mark.parametrize("version", [LOW + ".0", "1.9.4", "1.9.5.dev3+g1234abc"])
def test_versions_inside_the_range_pass(version):
    check_panel_version(version)


@pytest.mark.parametrize("version", ["1.4.5", HIGH + ".0", HIGH + ".0rc1", "2.0.0", "main"])
def test_versions_outside_the_range_fail_naming_the_range(version):
    with pytest.raises(ImportError, match=re.escape(f"panel>={LOW},<{HIGH}, not panel {version}")):
        check_panel_version(version)


@pytest.mark.parametrize("path", ["pyproject.toml", "environment.yml"])
def test_the_dependency_pins_are_the_tested_range(path):
    assert f"panel>={LOW},<{HIGH}" in (ROOT / path).read_text()
