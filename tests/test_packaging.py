"""Packaging: every source folder is a package, so that a (non-editable) install ships all of it."""

from __future__ import annotations

from pathlib import Path

import bitcompose


def test_every_source_folder_is_a_package() -> None:
    root = Path(bitcompose.__file__).parent
    folders = {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(root)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == [], f"folders without __init__.py are left out of a wheel: {missing}"
