"""Reading the project's user-editable data files: JSON, or TOML for a ``.toml`` file."""

from __future__ import annotations

import json
from pathlib import Path


def load_table(path) -> dict:
    """The content of a JSON file, or of a TOML file when ``path`` ends in ``.toml``.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        The content is not valid JSON/TOML (JSONDecodeError and TOMLDecodeError are ValueErrors).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            # here: tomllib (Python 3.11+) or tomli, only when a TOML file is read
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        return tomllib.loads(text)
    return json.loads(text)
