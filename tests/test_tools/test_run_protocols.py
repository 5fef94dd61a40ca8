"""The protocol runner: a smoke run (SegFormer row, 1 iteration) and the README update."""
import importlib.util

import pytest

from tests.conftest import repo_path


def load_runner():
    spec = importlib.util.spec_from_file_location('run_protocols', repo_path('tools', 'run_protocols.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_writes_the_table_into_the_readme_markers(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('# mine\nkeep this\n<!-- protocols:begin -->\nold table\n<!-- protocols:end -->\nand this\n')
    table = load_runner().main(['--work-dir', str(tmp_path / 'runs'), '--models', 'segformer', '--iters', '1',
                                '--val-images', '1', '--fps-images', '1', '--readme', str(readme)])
    rows = [line for line in table.splitlines() if line.startswith('| SegFormer')]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip('|').split('|')]
    assert all(0 <= float(c) <= 100 for c in cells[1:4])  # DT, R2S, FT mIoU
    assert cells[4] == '0.44M (0.44M)' and float(cells[5]) > float(cells[6]) > 0  # R2S is slower
    text = readme.read_text()
    assert text.startswith('# mine\nkeep this\n<!-- protocols:begin -->\n') and text.endswith(
        '<!-- protocols:end -->\nand this\n')
    assert 'old table' not in text and table in text
    assert (tmp_path / 'runs' / 'protocol_table.md').read_text().strip() == table


def test_readme_without_markers_is_refused_and_left_alone(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('no markers here\n')
    with pytest.raises(ValueError, match='expected one <!-- protocols:begin --> line'):
        load_runner().update_readme(str(readme), 'table')
    assert readme.read_text() == 'no markers here\n'
