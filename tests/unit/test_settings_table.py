"""Every setting a process reads is documented once, in the README's one table."""

from __future__ import annotations

import re
from pathlib import Path

from healthapp.config import Base

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Settings") :]
    table = section[
        section.index("| variable |") : section.index("\n\n", section.index("| variable |"))
    ]
    names = []
    for row in table.splitlines()[2:]:
        names += re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    return names


def _environment_names() -> set[str]:
    names = set()
    for name, field in Base.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else name)
    return names


def test_each_setting_is_in_the_table_once() -> None:
    documented = _documented()
    assert sorted(n for n in set(documented) if documented.count(n) > 1) == []
    assert sorted(_environment_names() - set(documented)) == []
