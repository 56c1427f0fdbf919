"""The report's prose: the parts of the Markdown template ``report_template.md``
beside this file (``<!-- part: name -->`` markers, ``${placeholders}`` for
what the report computes)."""

import os.path as osp
import re
import string
from typing import Dict

__all__ = ['TEMPLATE', 'template_parts', 'paragraph']

# The prose of the report, with ${placeholders} for what tools/study/report.py computes.
TEMPLATE = osp.join(osp.dirname(osp.abspath(__file__)), 'report_template.md')
_PART_MARKER = re.compile(r'^<!-- part: (\w+) -->\n', re.M)


def template_parts(path: str = TEMPLATE) -> Dict[str, string.Template]:
    """The parts of the report template (see its head): name -> template."""
    with open(path, encoding='utf-8') as f:
        pieces = _PART_MARKER.split(f.read())
    return {
        name: string.Template(text.rstrip('\n')) for name, text in zip(pieces[1::2], pieces[2::2])
    }


def paragraph(text: str) -> str:
    """An optional paragraph: its text and the blank line after it."""
    return text + '\n\n' if text else ''
