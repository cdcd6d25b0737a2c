"""Copy the template's table lists into the Tutor plugin (packaging/tutor/panorama_elt.py).

The plugin is a single file that Tutor loads alone, so it carries the Open edX tables of
panorama_settings.yaml.template itself; run this after changing the template's tables
(tests/test_tutor_plugin.py fails until the two agree):

    venv/bin/python scripts/sync_tutor_plugin.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "panorama_settings.yaml.template"
PLUGIN = ROOT / "packaging" / "tutor" / "panorama_elt.py"
BEGIN, END = "# --- tables: begin ---\n", "# --- tables: end ---\n"


def template_tables(text: str) -> dict[str, str]:
    """Each datasource type's `tables:` block, as the template writes it (comments kept)."""
    blocks: dict[str, str] = {}
    for source in re.split(r"^(?=- type: )", text, flags=re.MULTILINE)[1:]:
        kind = source.split("\n", 1)[0].removeprefix("- type:").strip()
        start = source.index("\n  tables:\n") + 1
        blocks[kind] = source[start:]
    return blocks


def tables_code(text: str) -> str:
    """The Python block the plugin holds between its markers."""
    lines = [BEGIN, "TABLES = {\n"]
    for kind, block in template_tables(text).items():
        if '"""' in block or "\\" in block:
            raise SystemExit(f"{TEMPLATE.name}: the {kind} tables cannot go in a string literal")
        lines.append(f'    "{kind}": """\\\n{block}""",\n')
    lines += ["}\n", END]
    return "".join(lines)


def synced(plugin: str, template: str) -> str:
    """The plugin's source with its tables block replaced by the template's."""
    head, rest = plugin.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + tables_code(template) + tail


def main() -> int:
    plugin = PLUGIN.read_text(encoding="utf-8")
    new = synced(plugin, TEMPLATE.read_text(encoding="utf-8"))
    if new != plugin:
        PLUGIN.write_text(new, encoding="utf-8")
        print(f"{PLUGIN.relative_to(ROOT)}: tables copied from {TEMPLATE.name}")
    else:
        print(f"{PLUGIN.relative_to(ROOT)}: tables already as in {TEMPLATE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
