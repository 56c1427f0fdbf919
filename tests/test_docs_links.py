"""The pages a reader follows: every relative link and image in README.md and
docs/*.md resolves (file, and heading anchor where one is given), and the
README's quick-start commands are the ones CI runs."""

import glob
import os.path as osp
import re

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGES = [osp.join(ROOT, 'README.md')] + sorted(glob.glob(osp.join(ROOT, 'docs', '*.md')))

# [text](target) and ![alt](target), target up to the first space or ')';
# code spans and fenced blocks are removed first (they show syntax, not links).
LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
FENCE = re.compile(r'^(```|~~~).*?^\1', re.S | re.M)
CODE_SPAN = re.compile(r'`[^`\n]*`')


def _prose(text: str) -> str:
    return CODE_SPAN.sub('', FENCE.sub('', text))


def _anchors(path: str) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-',
    repeats numbered."""
    seen, anchors = {}, set()
    for line in FENCE.sub('', open(path, encoding='utf-8').read()).splitlines():
        match = re.match(r'#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not match:
            continue
        slug = re.sub(r'[^\w\- ]', '', match.group(1).replace('`', '').lower()).replace(' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if not count else f'{slug}-{count}')
    return anchors


def _links(page: str):
    for target in LINK.findall(_prose(open(page, encoding='utf-8').read())):
        if re.match(r'[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
            continue
        yield target


@pytest.mark.parametrize('page', PAGES, ids=lambda p: osp.relpath(p, ROOT))
def test_relative_links_resolve(page):
    links = list(_links(page))
    broken = []
    for target in links:
        path, _, anchor = target.partition('#')
        resolved = osp.normpath(osp.join(osp.dirname(page), path)) if path else page
        if not osp.exists(resolved):
            broken.append(f'{target} (no file {osp.relpath(resolved, ROOT)})')
        elif anchor and resolved.endswith('.md') and anchor not in _anchors(resolved):
            broken.append(f'{target} (no heading #{anchor} in {osp.relpath(resolved, ROOT)})')
    assert not broken, f'{osp.relpath(page, ROOT)}: broken links: {broken}'


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [PAGES[0]]
    while todo:
        page = todo.pop()
        if page in reached or not osp.isfile(page):
            continue
        reached.add(page)
        for target in _links(page):
            path = target.partition('#')[0]
            if path.endswith('.md'):
                todo.append(osp.normpath(osp.join(osp.dirname(page), path)))
    unreached = sorted(osp.relpath(p, ROOT) for p in set(PAGES) - reached)
    assert not unreached, f'no link path from README.md to {unreached}'


def _quick_start_commands() -> list:
    readme = open(PAGES[0], encoding='utf-8').read()
    section = readme.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    block = re.search(r'```(?:bash|sh)\n(.*?)```', section, re.S).group(1)
    return [line.split('#', 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_quick_start_is_what_ci_runs():
    """The README's test command is one .ci/run runs, and every make target the
    quick start names exists."""
    commands = _quick_start_commands()
    ci = [
        line.strip()
        for line in open(osp.join(ROOT, '.ci', 'run'))
        if line.strip() and not line.startswith('#')
    ]
    makefile = open(osp.join(ROOT, 'Makefile')).read()
    assert 'make test' in commands and 'make test' in ci, (commands, ci)
    for command in commands:
        assert command.startswith('make '), command
        target = command.split()[1]
        assert re.search(rf'^{target}:', makefile, re.M), f'no Makefile target {target!r}'
