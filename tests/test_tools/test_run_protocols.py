"""The protocol runner: a smoke run (SegFormer and RASS rows, 1 iteration, on the session's made tiny SD), the figure
of tools/analysis_tools/visualize_rass.py on its runs, and the update of the docs page's table."""
import collections
import contextlib
import io
import os
import os.path as osp
import shlex

import pytest

from tests.utils import link_textures, load_tool, repo_path, run_in_process


def load_runner():
    return load_tool('analysis_tools/run_protocols')


TINY_SD_ARGS = ('--iters 2 --batch-size 2 --crop 32 --ldm-iters 2 --ldm-batch-size 2 --ldm-crop 8')


@pytest.fixture
def tools_in_process(monkeypatch, tmp_path, made_tiny_sd):
    """The runner's tool calls (``_run``: ``python tools/SCRIPT ARGS`` in a subprocess) run the same scripts in this
    process, their output captured as the subprocess's would be: about 20 tool calls, each saving an interpreter
    start. The call of tools/misc/make_tiny_sd.py is checked and answered with the session's made folder (that tool is
    tested in test_make_tiny_sd.py). ``test_a_failing_tool_call_names_the_command`` checks the subprocess path."""
    runner = load_runner()
    monkeypatch.chdir(tmp_path)  # the configs' relative data/textures: one shared copy linked here
    link_textures(str(tmp_path))

    def run(script, *arguments, name=None):
        if script == 'misc/make_tiny_sd.py':
            config, out_flag, out, *recipe = arguments
            assert (config, out_flag, recipe) == (runner.TINY_SD_CONFIG, '--out', shlex.split(TINY_SD_ARGS))
            assert not osp.exists(out)
            os.symlink(osp.join(made_tiny_sd[0], 'tiny_sd'), out)
            return ''
        path = repo_path('tools', script)
        output = io.StringIO()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            # train.py / test.py take --cfg-options; export_adapter.py builds no Runner
            run_in_process(path, *arguments, cwd=str(tmp_path), runner_tool='--cfg-options' in arguments)
        if name is not None:
            runner.TIMES[name] = runner.TIMES.get(name, 0.0) + 1.0
        return output.getvalue()

    monkeypatch.setattr(runner, '_run', run)
    return runner


def test_smoke_run_writes_the_table_into_the_doc_markers_and_the_figure_draws(tmp_path, tools_in_process):
    doc = tmp_path / '5_protocols.md'
    doc.write_text('# mine\nkeep this\n<!-- protocols:begin -->\nold table\n<!-- protocols:end -->\nand this\n')
    common = ['--work-dir', str(tmp_path / 'runs'), '--iters', '1', '--tiny-sd', str(tmp_path / 'tiny_sd')]
    table = tools_in_process.main([*common, '--models', 'segformer', 'rass', '--val-images', '1', '--fps-images', '1',
                                '--update-docs', str(doc), '--tiny-sd-args', TINY_SD_ARGS])
    rows = [line for line in table.splitlines() if line.startswith('| SegFormer')]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip('|').split('|')]
    assert all(0 <= float(c) <= 100 for c in cells[1:4])  # DT, R2S, FT mIoU
    assert cells[4] == '-' and cells[5] == '0.44M (0.44M)' and float(cells[6]) > float(cells[7]) > 0  # R2S is slower
    rass_row = [line for line in table.splitlines() if line.startswith('| RASS')][0]
    rass = [c.strip() for c in rass_row.strip('|').split('|')]
    assert all(0 <= float(c) <= 100 for c in rass[1:5])  # DT, R2S, FT (without SCR), RASS (SCR merged)
    for name in ('dt_rass', 'ft_rass', 'rass_scr', 'scr'):
        assert (tmp_path / 'runs' / name / 'iter_1.pth').is_file(), name
    assert (tmp_path / 'runs' / 'scr' / 'exported_scr_adapter' / 'rass_adapter.json').is_file()
    assert 'Wall time' in table and 'Tiny SD' in table and 'PSNR on the LQ images' in table
    text = doc.read_text()
    assert text.startswith('# mine\nkeep this\n<!-- protocols:begin -->\n') and text.endswith(
        '<!-- protocols:end -->\nand this\n')
    assert 'old table' not in text and table in text
    assert (tmp_path / 'runs' / 'protocol_table.md').read_text().strip() == table
    visualize = load_tool('analysis_tools/visualize_rass')
    out = tmp_path / 'figure.png'
    visualize.main([*common, '--num-images', '2', '--out', str(out)])
    from PIL import Image
    width, height = Image.open(out).size
    assert out.stat().st_size < 300_000 and height > width  # 2 images x (a result row + 2 attention rows)


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
        load_runner().main(['--work-dir', str(tmp_path / 'runs'), '--update-docs', str(doc)])
    assert not (tmp_path / 'runs').exists()


def test_update_docs_targets_the_protocols_page_and_the_old_option_names_still_work():
    runner = load_runner()
    assert runner.parse_args(['--update-docs']).doc == repo_path('docs', 'en', 'user_guides', '5_protocols.md')
    runner.read_doc(runner.parse_args(['--update-docs']).doc)  # the page exists and holds one pair of markers
    assert runner.parse_args(['--readme', 'other.md']).doc == 'other.md'
    assert runner.parse_args(['--doc', 'other.md']).doc == 'other.md'
    assert runner.parse_args(['--no-doc']).doc is None
    assert runner.parse_args([]).doc is None  # no docs page unless asked
    assert osp.isfile(runner.DEFAULT_DOC)


def test_the_docs_page_is_written_only_with_update_docs(tmp_path, monkeypatch):
    """The runner's steps stubbed: without --update-docs only WORK_DIR/protocol_table.md is written."""
    runner = load_runner()
    written = []
    monkeypatch.setattr(runner, 'prepare_tiny_sd', lambda args: dict(scr='scr.py', rass='rass.py', rass_lq='lq.py'))
    monkeypatch.setattr(runner, 'train_all', lambda args, wrappers: collections.defaultdict(lambda: 'iter_1.pth'))
    monkeypatch.setattr(runner, 'test_miou', lambda *args, **kwargs: 1.0)
    monkeypatch.setattr(runner, 'test_output', lambda *args, **kwargs: '')
    monkeypatch.setattr(runner, 'measure', lambda args, wrappers: {})
    monkeypatch.setattr(runner, 'build_table', lambda *args: 'TABLE')
    monkeypatch.setattr(runner, 'update_doc', lambda doc, table: written.append((doc, table)))
    common = ['--work-dir', str(tmp_path), '--models', 'segformer']
    assert runner.main(common) == 'TABLE'
    assert written == [] and (tmp_path / 'protocol_table.md').read_text() == 'TABLE\n'
    runner.main([*common, '--update-docs'])
    assert written == [(runner.DEFAULT_DOC, 'TABLE')]


def test_the_help_documents_the_options_of_a_short_run(capsys):
    with pytest.raises(SystemExit):
        load_runner().parse_args(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    for option in ('--iters', '--val-images', '--models', '--update-docs'):
        assert option in text
    assert 'A short run: --iters 2 --val-images 4 --models segformer' in text


def test_test_results_are_reused_only_while_the_checkpoint_and_options_are_unchanged(tmp_path, monkeypatch):
    runner = load_runner()
    calls = []
    monkeypatch.setattr(runner, 'test_output', lambda *a, **k: calls.append(a) or 'mIoU: 12.5\n')
    args = runner.parse_args(['--work-dir', str(tmp_path), '--no-doc'])
    checkpoint = tmp_path / 'iter_1.pth'
    checkpoint.write_bytes(b'1')
    assert runner.test_miou(args, 'a.py', str(checkpoint)) == runner.test_miou(args, 'a.py', str(checkpoint)) == 12.5
    assert len(calls) == 1
    checkpoint.write_bytes(b'22')  # retrained
    runner.test_miou(args, 'a.py', str(checkpoint))
    runner.test_miou(args, 'a.py', str(checkpoint), ['model.x=1'])
    runner.test_miou(args, 'b.py', str(checkpoint))
    assert len(calls) == 4


def test_a_failing_tool_call_names_the_command():
    with pytest.raises(RuntimeError, match=r'tools/no_such_tool\.py --flag failed:\n.*No such file'):
        load_runner()._run('no_such_tool.py', '--flag')
