"""README's configuration reference and the settings model (`dockyard.config.Settings`) name the same
settings, and every default the reference gives as a value is the model's default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"
_CODE = re.compile(r"`([^`]*)`")
# A default cell part that is exactly one value: `5`, `true`, `[]`, `0` (off).
_ONE_VALUE = re.compile(r"`([^`]*)`(?: \([^)]*\))?")


def _cells(line: str) -> list[str]:
    # A pipe inside a cell is written `\|`.
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def reference() -> list[tuple[list[str], str]]:
    """(setting names, default cell) of every row of the table under "## Configuration"."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out = []
    for line in rows:
        names_cell, default_cell, _meaning = _cells(line)
        names = [n for n in _CODE.findall(names_cell) if not n.startswith("--")]
        out.append((names, default_cell))
    return out


def test_every_setting_in_the_reference_exists_and_every_setting_is_in_it() -> None:
    documented = [name for names, _ in reference() for name in names]
    assert len(documented) == len(set(documented)), "a setting is listed twice"
    model = set(Settings.model_fields)
    assert sorted(set(documented) - model) == [], "in the README, not in the settings model"
    assert sorted(model - set(documented)) == [], "in the settings model, not in the README"
    # ... under the names the reference gives them: DOCKYARD_<NAME>, and the same name in the TOML file.
    assert Settings.model_config.get("env_prefix") == "DOCKYARD_"
    assert [n for n, f in Settings.model_fields.items() if f.alias or f.validation_alias] == []


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(repr, value)) + "]"
    return str(value)


@pytest.mark.parametrize(("names", "cell"), reference(), ids=lambda v: v if isinstance(v, str) else "/".join(v))
def test_defaults_given_as_values_are_the_models(names: list[str], cell: str) -> None:
    parts = [cell] * len(names)  # one cell for them all ("unset"), or one part per setting
    sep = " / " if " / " in cell else ", "
    if len(names) > 1 and sep in cell:
        parts = [p.strip() for p in cell.split(sep)]
        assert len(parts) == len(names), f"{names}: one default per setting"
    for name, part in zip(names, parts, strict=True):
        match = _ONE_VALUE.fullmatch(part)
        if match is None:  # described in words: "unset", "generated", "from each request's Host"
            continue
        field = Settings.model_fields[name]
        default = field.get_default(call_default_factory=True)
        if default is None:  # the model's None means "derived"; the reference shows what it derives
            continue
        written = match.group(1)
        if isinstance(default, Path):
            assert Path(written) == default, name
        else:
            assert written == _as_text(default), name
