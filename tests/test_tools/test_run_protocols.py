"""The protocol runner: a smoke run (SegFormer row, 1 iteration) and the update of the docs page's table."""
import importlib.util
import os.path as osp

import pytest

from tests.utils import repo_path


def load_runner():
    spec = importlib.util.spec_from_file_location('run_protocols', repo_path('tools', 'run_protocols.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_the_table_into_the_doc_markers(tmp_path):
    doc = tmp_path / '5_protocols.md'
    doc.write_text('# mine\nkeep this\n<!-- protocols:begin -->\nold table\n<!-- protocols:end -->\nand this\n')
    table = load_runner().main(['--work-dir', str(tmp_path / 'runs'), '--models', 'segformer', '--iters', '1',
                                '--val-images', '1', '--fps-images', '1', '--doc', str(doc)])
    rows = [line for line in table.splitlines() if line.startswith('| SegFormer')]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip('|').split('|')]
    assert all(0 <= float(c) <= 100 for c in cells[1:4])  # DT, R2S, FT mIoU
    assert cells[4] == '0.44M (0.44M)' and float(cells[5]) > float(cells[6]) > 0  # R2S is slower
    text = doc.read_text()
    assert text.startswith('# mine\nkeep this\n<!-- protocols:begin -->\n') and text.endswith(
        '<!-- protocols:end -->\nand this\n')
    assert 'old table' not in text and table in text
    assert (tmp_path / 'runs' / 'protocol_table.md').read_text().strip() == table


def test_doc_without_markers_is_refused_and_left_alone(tmp_path):
    doc = tmp_path / 'page.md'
    doc.write_text('no markers here\n')
    with pytest.raises(ValueError, match='expected one <!-- protocols:begin --> line'):
        load_runner().update_doc(str(doc), 'table')
    assert doc.read_text() == 'no markers here\n'


def test_doc_without_markers_is_refused_before_any_training(tmp_path):
    doc = tmp_path / 'page.md'
    doc.write_text('no markers here\n')
    with pytest.raises(ValueError, match='expected one <!-- protocols:begin --> line'):
        load_runner().main(['--work-dir', str(tmp_path / 'runs'), '--doc', str(doc)])
    assert not (tmp_path / 'runs').exists()


def test_the_default_target_is_the_protocols_page_and_the_old_option_name_still_works():
    runner = load_runner()
    assert runner.parse_args([]).doc == repo_path('docs', 'en', 'user_guides', '5_protocols.md')
    runner.read_doc(runner.parse_args([]).doc)  # the page exists and holds one pair of markers
    assert runner.parse_args(['--readme', 'other.md']).doc == 'other.md'
    assert runner.parse_args(['--no-doc']).doc is None
    assert osp.isfile(runner.DEFAULT_DOC)
