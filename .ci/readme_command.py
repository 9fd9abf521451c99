"""Print one of the README's two copy-paste commands (``main`` or ``test``).

The README marks each command with an HTML comment ``<!-- command: NAME -->`` right before its
fenced block, so CI runs exactly what a user copies.
"""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(text: str) -> dict:
    pattern = re.compile(r"<!-- command: (\w+) -->\s*```(?:bash|sh)?\n(.*?)```", re.S)
    return {name: body.strip() for name, body in pattern.findall(text)}


if __name__ == "__main__":
    commands = readme_commands(README.read_text(encoding="utf-8"))
    name = sys.argv[1]
    if name not in commands:
        sys.exit(f"README.md has no '<!-- command: {name} -->' block")
    print(commands[name])
