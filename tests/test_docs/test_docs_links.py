"""The docs cannot silently rot: links, file paths, anchors and metafiles must point at what exists.

Checked in README.md, docs/**/*.md and configs/**/README.md: every relative link (markdown and HTML) resolves to a
file or folder inside the repository, and its ``#anchor`` to a heading of the linked page; every path mentioned
under configs/, tools/, tests/, rass_mmseg/, docs/ or requirements/ exists; no page points outside the repository
or mentions issue numbers; every docs page is one click from the README. Each configs/*/metafile.yaml parses, has
mmseg's Collections / Models layout and lists exactly the configs of its folder.
"""
import glob
import os.path as osp
import re
from typing import Dict, List, Set

import pytest
import yaml

from tests.utils import REPO

PAGES = sorted({osp.join(REPO, 'README.md'),
                *glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True),
                *glob.glob(osp.join(REPO, 'configs', '**', 'README.md'), recursive=True)})
METAFILES = sorted(glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yaml')))

MARKDOWN_LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
HTML_LINK = re.compile(r'(?:href|src)="([^"]+)"')
REPO_PATH = re.compile(r'(?<![\w/.\-:])((?:configs|tools|tests|rass_mmseg|docs|requirements)/[\w./\-]*)')
EXTERNAL = ('http://', 'https://', 'mailto:')


def rel(path: str) -> str:
    return osp.relpath(path, REPO)


def read(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def headings(path: str) -> Set[str]:
    """GitHub's anchors of the page's headings (code blocks skipped)."""
    anchors, fenced = set(), False
    for line in read(path).splitlines():
        if line.lstrip().startswith('```'):
            fenced = not fenced
        elif not fenced and re.match(r'#{1,6} ', line):
            title = line.lstrip('#').strip().lower()
            anchors.add(re.sub(r'[^\w\- ]', '', title).replace(' ', '-'))
    return anchors


def links(path: str) -> List[str]:
    text = read(path)
    return [link for link in MARKDOWN_LINK.findall(text) + HTML_LINK.findall(text) if not link.startswith(EXTERNAL)]


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_relative_links_resolve_inside_the_repository(page):
    broken = []
    for link in links(page):
        target, _, anchor = link.partition('#')
        path = osp.normpath(osp.join(osp.dirname(page), target)) if target else page
        if not (path == REPO or path.startswith(REPO + osp.sep)) or not osp.exists(path):
            broken.append(f'{link} (no such file in the repository)')
        elif anchor and path.endswith('.md') and anchor not in headings(path):
            broken.append(f'{link} (no heading #{anchor} in {rel(path)})')
    assert not broken, f'{rel(page)}: broken links: {broken}'


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_every_repository_path_mentioned_exists(page):
    missing = sorted({path.rstrip('.') for path in REPO_PATH.findall(read(page))
                      if not osp.exists(osp.join(REPO, path.rstrip('.')))})
    assert not missing, f'{rel(page)} mentions paths that do not exist: {missing}'


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_no_paths_outside_the_repository_and_no_issue_numbers(page):
    text = read(page)
    assert not re.search(r'\.\./shared|/work/|/root/|/home/', text), f'{rel(page)} points outside the repository'
    assert not re.search(r'\bissues?\s*#?\d', text, re.IGNORECASE), f'{rel(page)} mentions an issue number'


def test_every_docs_page_is_one_click_from_the_readme():
    readme = osp.join(REPO, 'README.md')
    linked = {osp.normpath(osp.join(REPO, link.partition('#')[0])) for link in links(readme)}
    pages = set(glob.glob(osp.join(REPO, 'docs', '**', '*.md'), recursive=True))
    pages |= set(glob.glob(osp.join(REPO, 'configs', '*', 'README.md')))
    assert not sorted(rel(p) for p in pages - linked), 'pages the README does not link to'


def load_metafile(path: str) -> Dict:
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize('metafile', METAFILES, ids=rel)
def test_metafile_lists_exactly_the_configs_of_its_folder(metafile):
    meta = load_metafile(metafile)
    assert set(meta) == {'Collections', 'Models'}
    collections = {c['Name']: c for c in meta['Collections']}
    for collection in collections.values():
        assert osp.isfile(osp.join(REPO, collection['README'])), collection['README']
        assert collection['Paper']['URL'].startswith('https://')
    folder = osp.dirname(metafile)
    names = []
    for entry in meta['Models']:
        assert {'Name', 'In Collection', 'Results', 'Config', 'Metadata'} <= set(entry), entry.get('Name')
        assert entry['In Collection'] in collections, entry['Name']
        assert {'Task', 'Dataset', 'Metrics'} <= set(entry['Results']), entry['Name']
        assert isinstance(entry['Results']['Metrics'], dict), entry['Name']
        assert isinstance(entry['Metadata'], dict) and entry['Metadata'].get('Architecture'), entry['Name']
        config = osp.join(REPO, entry['Config'])
        assert osp.isfile(config), f'{entry["Config"]} does not exist'
        assert osp.dirname(config) == folder and osp.basename(config) == entry['Name'] + '.py', entry['Name']
        if 'Code' in entry and not entry['Code'].startswith(EXTERNAL):
            assert osp.exists(osp.join(REPO, entry['Code'])), entry['Code']
        names.append(entry['Name'])
    configs = sorted(osp.basename(p)[:-3] for p in glob.glob(osp.join(folder, '*.py')))
    assert sorted(names) == configs, 'the metafile must list every config of its folder once'


def test_every_config_folder_has_a_readme_and_a_metafile():
    for folder in ('rass', 'scr', 'protocols'):
        assert osp.isfile(osp.join(REPO, 'configs', folder, 'README.md'))
        assert osp.isfile(osp.join(REPO, 'configs', folder, 'metafile.yaml'))
