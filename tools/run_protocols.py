"""Run the paper's DT / R2S / FT protocols on the embedded texture dataset and write the result table.

    python tools/run_protocols.py [--work-dir work_dirs/protocols] [--doc docs/en/user_guides/5_protocols.md]

Trains (skipping any run whose checkpoint exists): the tiny SegFormer and Mask2Former baselines on clean
textures (DT) and fine-tuned on degraded ones (FT), the tiny SCR restorer, tiny RASS on clean textures, and
RASS on degraded textures starting from the merged SCR adapter (the RASS method). Tests every model on the
same seeded on-the-fly LQ validation set: DT (clean model), R2S (SCR, then the clean model) and FT. Measures
parameters and FPS with tools/benchmark.py. Writes a markdown table to WORK_DIR/protocol_table.md and between the
``<!-- protocols:begin -->`` and ``<!-- protocols:end -->`` markers of a docs page (``--doc``, by default
docs/en/user_guides/5_protocols.md; nothing else in the file is touched; ``--no-doc`` leaves every docs page alone).
``--iters 2 --val-images 4`` is the smoke version the tests run.
"""
import argparse
import importlib.util
import os.path as osp
import platform
import re
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
BEGIN, END = '<!-- protocols:begin -->', '<!-- protocols:end -->'
#: The docs page whose protocol markers receive the table by default.
DEFAULT_DOC = osp.join(REPO, 'docs', 'en', 'user_guides', '5_protocols.md')


def cfg(*parts: str) -> str:
    return osp.join(REPO, 'configs', *parts)


#: name -> (config, extra --cfg-options) of every training run; FT runs start from their DT checkpoint.
TRAIN_RUNS = {
    'dt_segformer': (cfg('protocols', 'dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py'), []),
    'ft_segformer': (cfg('protocols', 'ft-segformer_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
                     ['load_from={dt_segformer}']),
    'dt_mask2former': (cfg('protocols', 'dt-mask2former_mit-tiny_1xb4-300it_textures-128x128.py'), []),
    'ft_mask2former': (cfg('protocols', 'ft-mask2former_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
                       ['load_from={dt_mask2former}']),
    'scr': (cfg('scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py'), []),
    'dt_rass': (cfg('rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py'), []),
    'ft_rass': (cfg('rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py'),
                ["model.backbone.merge_adapters=['{scr_adapter}']"]),
}
LQ_TEST = {
    'SegFormer (tiny MiT)': cfg('protocols', 'ft-segformer_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
    'Mask2Former (tiny MiT)': cfg('protocols', 'ft-mask2former_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
    'RASS (tiny SD)': cfg('rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-lq-128x128.py'),
}
R2S_TEST = {
    'SegFormer (tiny MiT)': cfg('protocols', 'r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py'),
    'Mask2Former (tiny MiT)': cfg('protocols', 'r2s_scr-tiny-sd_mask2former-mit-tiny_textures-lq-128x128.py'),
    'RASS (tiny SD)': cfg('protocols', 'r2s_scr-tiny-sd_rass-tiny-sd-segformer-head_textures-lq-128x128.py'),
}
RUN_OF = {'SegFormer (tiny MiT)': 'segformer', 'Mask2Former (tiny MiT)': 'mask2former', 'RASS (tiny SD)': 'rass'}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/protocols', help='root of all runs')
    parser.add_argument('--iters', type=int, default=300, help='training iterations of every run')
    parser.add_argument('--val-images', type=int, default=None, help='test on the first N val images only')
    parser.add_argument('--fps-images', type=int, default=20, help='timed images per benchmark round')
    doc = parser.add_mutually_exclusive_group()
    # --readme: the option's former name, kept so that existing commands keep working
    doc.add_argument('--doc', '--readme', dest='doc', default=DEFAULT_DOC, metavar='PATH',
                     help='markdown file to update between the protocol markers (default: %(default)s)')
    doc.add_argument('--no-doc', dest='doc', action='store_const', const=None,
                     help='write WORK_DIR/protocol_table.md only')
    parser.set_defaults(doc=DEFAULT_DOC)
    models = sorted(set(RUN_OF.values()))
    parser.add_argument('--models', nargs='+', choices=models, default=models, help='segmentors to run (default: all)')
    return parser.parse_args(argv)


def _common_options(args: argparse.Namespace) -> List[str]:
    options = [f'train_cfg.max_iters={args.iters}', f'train_cfg.val_interval={args.iters + 1}',
               f'default_hooks.checkpoint.interval={args.iters}', f'param_scheduler.0.end={args.iters}',
               'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
               'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False']
    if args.val_images:
        options.append(f'test_dataloader.dataset.indices={args.val_images}')
    return options


def _run(script: str, *arguments: str) -> str:
    command = [sys.executable, osp.join(REPO, 'tools', script), *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f'{" ".join(command)} failed:\n{output[-3000:]}')
    return output


def train_all(args: argparse.Namespace) -> Dict[str, str]:
    """Train every run (skipping finished ones); returns name -> checkpoint, plus the SCR adapter folder."""
    paths: Dict[str, str] = {}
    for name, (config, extra) in TRAIN_RUNS.items():
        if name != 'scr' and name.split('_', 1)[1] not in args.models:
            continue
        work_dir = osp.join(args.work_dir, name)
        checkpoint = osp.join(work_dir, f'iter_{args.iters}.pth')
        if not osp.isfile(checkpoint):
            options = [o.format(**paths) for o in extra]
            print(f'[train] {name}: {osp.relpath(config, REPO)}', flush=True)
            _run('train.py', config, '--work-dir', work_dir, '--cfg-options', *_common_options(args), *options)
        paths[name] = checkpoint
        if name == 'scr':
            paths['scr_adapter'] = osp.join(work_dir, f'scr_adapter_iter_{args.iters}')
    return paths


def test_miou(args: argparse.Namespace, config: str, checkpoint: str, options: Sequence[str] = ()) -> float:
    output = _run('test.py', config, checkpoint, '--work-dir', osp.join(args.work_dir, 'tests'), '--cfg-options',
                  *_common_options(args), *options)
    found = re.findall(r'mIoU: ([0-9.]+)', output)
    if not found:
        raise RuntimeError(f'no mIoU in the output of tools/test.py {config}:\n{output[-2000:]}')
    return float(found[-1])


def _benchmark_module():
    spec = importlib.util.spec_from_file_location('rass_benchmark', osp.join(REPO, 'tools', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def measure(args: argparse.Namespace) -> Dict[str, dict]:
    """Params and FPS (128x128, CPU) of each clean model and of its R2S pipeline, measured side by side."""
    benchmark = _benchmark_module()
    results = {}
    for label, r2s in R2S_TEST.items():
        if RUN_OF[label] not in args.models:
            continue
        clean = TRAIN_RUNS[f'dt_{RUN_OF[label]}'][0]
        argv = [clean, '--compare', r2s, '--shape', '128', '128', '--num-images', str(args.fps_images),
                '--rounds', '3', '--warmup', '2', '--compare-cfg-options', 'model.restorer_checkpoint=None',
                'model.segmentor_checkpoint=None']
        single, pipeline = benchmark.main(argv)
        results[label] = dict(single=single, r2s=pipeline)
    return results


def build_table(args: argparse.Namespace, miou: Dict[str, Dict[str, float]], speed: Dict[str, dict]) -> str:
    machine = (f'{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, '
               f'{args.iters} training iterations per run')
    lines = [f'Tiny protocol on the embedded textures ({machine}); mIoU on the 20 seeded LQ validation images'
             f'{f" (first {args.val_images})" if args.val_images else ""}, FPS at 128x128:', '',
             '| model | DT | R2S | FT | params (trainable) | FPS | R2S FPS |', '|---|---|---|---|---|---|---|']
    for label, scores in miou.items():
        single, r2s = speed[label]['single'], speed[label]['r2s']
        lines.append(f'| {label} | {scores["DT"]:.2f} | {scores["R2S"]:.2f} | {scores["FT"]:.2f} | '
                     f'{single["total"] / 1e6:.2f}M ({single["trainable"] / 1e6:.2f}M) | {single["fps"]:.1f} | '
                     f'{r2s["fps"]:.1f} |')
    lines += ['', 'RASS FT starts from the merged SCR adapter (the RASS method); R2S uses the tiny SCR restorer.']
    return '\n'.join(lines)


def read_doc(doc: str) -> str:
    """The text of the markdown file ``doc``; refuse it when it lacks one pair of protocol markers."""
    with open(doc) as f:
        text = f.read()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f'{doc}: expected one {BEGIN} line followed by one {END} line')
    return text


def update_doc(doc: str, table: str) -> None:
    """Replace the text between the protocol markers of the markdown file ``doc``; refuse when they are missing."""
    text = read_doc(doc)
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    with open(doc, 'w') as f:
        f.write(f'{head}{BEGIN}\n{table}\n{END}{tail}')


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    args.work_dir = osp.abspath(args.work_dir)
    if args.doc:
        read_doc(args.doc)  # a page without markers is refused before any training, not after
    paths = train_all(args)
    miou: Dict[str, Dict[str, float]] = {}
    for label, lq_config in LQ_TEST.items():
        run = RUN_OF[label]
        if run not in args.models:
            continue
        ft_options = [f"model.backbone.merge_adapters=['{paths['scr_adapter']}']"] if run == 'rass' else []
        print(f'[test] {label}', flush=True)
        miou[label] = dict(
            DT=test_miou(args, lq_config, paths[f'dt_{run}']),
            R2S=test_miou(args, R2S_TEST[label], paths[f'dt_{run}'],
                          [f'model.restorer_checkpoint={paths["scr"]}', 'model.segmentor_checkpoint=None']),
            FT=test_miou(args, lq_config, paths[f'ft_{run}'], ft_options))
    table = build_table(args, miou, measure(args))
    with open(osp.join(args.work_dir, 'protocol_table.md'), 'w') as f:
        f.write(table + '\n')
    if args.doc:
        update_doc(args.doc, table)
    print(table)
    return table


if __name__ == '__main__':
    main()
