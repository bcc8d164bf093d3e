"""Rewrite the configuration table in README.md from server/config.py (a test checks they match)."""

import re
from pathlib import Path

from hyperserve.server.config import markdown_table

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
pattern = re.compile(r"\| flag \| environment \| default \| meaning \|\n(?:\|.*\|\n)+")
if not pattern.search(text):
    raise SystemExit("README.md has no configuration table to replace")
readme.write_text(pattern.sub(lambda _: markdown_table() + "\n", text, count=1))
print("README.md configuration table updated")
