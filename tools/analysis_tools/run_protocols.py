"""Run the paper's DT / R2S / FT protocols on the embedded texture dataset and write the result table.

    python tools/analysis_tools/run_protocols.py [--work-dir work_dirs/protocols] [--update-docs]
    python tools/analysis_tools/run_protocols.py --iters 2 --val-images 4 --models segformer   # a short run

The whole RASS chain on the tiny pretrained Stable Diffusion (``--tiny-sd``, by default checkpoints/tiny-sd-textures;
written first by tools/misc/make_tiny_sd.py with ``--tiny-sd-args`` when it holds no finished folder), beside the tiny
SegFormer and Mask2Former baselines, all through mmseg's tools/train.py and tools/test.py. Trains (skipping any
run whose checkpoint exists): the baselines on clean textures (DT) and fine-tuned on degraded ones (FT); SCR on the
tiny SD (L2 + L_SCL, degraded on the fly), whose adapter tools/model_converters/export_adapter.py exports; the RASS
model on clean textures (DT), on degraded textures as it is (FT: the ablation "RASS without SCR") and on degraded
textures with the SCR adapter merged into the UNet (RASS). Tests every model on the same seeded on-the-fly LQ
validation images: DT, R2S (SCR restores, then the clean model segments), FT and RASS, and the SCR restorer's PSNR.
Measures parameters and FPS with :func:`rass_mmseg.utils.model_benchmark.benchmark` (tools/analysis_tools/benchmark.py's
logic). Writes a markdown table (with the wall time of every run and the machine) to WORK_DIR/protocol_table.md; only
with ``--update-docs`` also between the ``<!-- protocols:begin -->`` and ``<!-- protocols:end -->`` markers of a docs
page (``--update-docs`` alone: docs/en/user_guides/5_protocols.md; ``--update-docs PATH``: another page; nothing else
in the file is touched). Shorter runs: ``--iters N`` training iterations per run (default 300), ``--val-images N``
tests on the first N of the 20 validation images, ``--models`` picks the segmentors (segformer, mask2former, rass;
SCR always trains). ``--iters 2 --val-images 4`` (and a small ``--tiny-sd-args``) is the smoke version the tests run.
Configs that read the tiny SD are used through small wrappers in WORK_DIR/configs that set its folder.
"""
import argparse
import glob
import json
import os
import os.path as osp
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime
from typing import Dict, List, Optional, Sequence

import torch

from rass_mmseg.utils.model_benchmark import BenchmarkSettings, benchmark, format_table

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BEGIN, END = '<!-- protocols:begin -->', '<!-- protocols:end -->'
#: The docs page whose protocol markers receive the table with ``--update-docs``.
DEFAULT_DOC = osp.join(REPO, 'docs', 'en', 'user_guides', '5_protocols.md')
#: The tiny pretrained SD folder by default, and the config tools/misc/make_tiny_sd.py builds it from.
DEFAULT_TINY_SD = osp.join(REPO, 'checkpoints', 'tiny-sd-textures')


def cfg(*parts: str) -> str:
    return osp.join(REPO, 'configs', *parts)


TINY_SD_CONFIG = cfg('scr', 'scr_tiny-sd-textures_1xb4-300it_textures-128x128.py')
#: Configs that read the tiny pretrained SD (wrapped to read ``--tiny-sd``): name -> (config, has an SCR head).
SD_CONFIGS = {
    'scr': (TINY_SD_CONFIG, True),
    'rass': (cfg('rass', 'rass_tiny-sd-textures_segformer-head_1xb4-300it_textures-128x128.py'), False),
    'rass_lq': (cfg('rass', 'rass_tiny-sd-textures_segformer-head_1xb4-300it_textures-lq-128x128.py'), False),
}
MERGE_SCR = "model.backbone.merge_adapters=['{scr_adapter}']"
#: name -> (config or {SD config name}, extra --cfg-options) of every training run; baseline FT runs start from
#: their DT checkpoint, the RASS runs from the pretrained SD with a fresh LoRA and head.
TRAIN_RUNS = {
    'dt_segformer': (cfg('protocols', 'dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py'), []),
    'ft_segformer': (cfg('protocols', 'ft-segformer_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
                     ['load_from={dt_segformer}']),
    'dt_mask2former': (cfg('protocols', 'dt-mask2former_mit-tiny_1xb4-300it_textures-128x128.py'), []),
    'ft_mask2former': (cfg('protocols', 'ft-mask2former_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
                       ['load_from={dt_mask2former}']),
    'scr': ('{scr}', []),
    'dt_rass': ('{rass}', []),
    'ft_rass': ('{rass_lq}', []),
    'rass_scr': ('{rass_lq}', [MERGE_SCR]),
}
LQ_TEST = {
    'SegFormer (tiny MiT)': cfg('protocols', 'ft-segformer_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
    'Mask2Former (tiny MiT)': cfg('protocols', 'ft-mask2former_mit-tiny_1xb4-300it_textures-lq-128x128.py'),
    'RASS (pretrained tiny SD)': '{rass_lq}',
}
R2S_TEST = {
    'SegFormer (tiny MiT)': cfg('protocols', 'r2s_scr-tiny-sd_segformer-mit-tiny_textures-lq-128x128.py'),
    'Mask2Former (tiny MiT)': cfg('protocols', 'r2s_scr-tiny-sd_mask2former-mit-tiny_textures-lq-128x128.py'),
    'RASS (pretrained tiny SD)': cfg('protocols',
                                     'r2s_scr-tiny-sd-textures_rass-tiny-sd-textures-segformer-head_textures-lq-128x128.py'),
}
RUN_OF = {'SegFormer (tiny MiT)': 'segformer', 'Mask2Former (tiny MiT)': 'mask2former',
          'RASS (pretrained tiny SD)': 'rass'}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog='A short run: --iters 2 --val-images 4 --models segformer (the tiny SD folder is made first when '
        '--tiny-sd holds none: about 13 min on 2 CPU cores with make_tiny_sd.py\'s defaults). The docs page is '
        'written only with --update-docs.')
    parser.add_argument('--work-dir', default='work_dirs/protocols', help='root of all runs')
    parser.add_argument('--iters', type=int, default=300, metavar='N',
                        help='training iterations of every run (default: %(default)s; e.g. 2 for a smoke run)')
    parser.add_argument('--val-images', type=int, default=None, metavar='N',
                        help='test on the first N of the 20 validation images only (default: all)')
    parser.add_argument('--fps-images', type=int, default=20, help='timed images per benchmark round')
    parser.add_argument('--tiny-sd', default=DEFAULT_TINY_SD,
                        help='the tiny pretrained SD folder (default: %(default)s)')
    parser.add_argument('--tiny-sd-args', default='',
                        help='arguments of tools/misc/make_tiny_sd.py when --tiny-sd holds no finished folder yet')
    doc = parser.add_mutually_exclusive_group()
    # --doc / --readme PATH: the option's former names, kept so that existing commands keep working (an explicit ask)
    doc.add_argument('--update-docs', '--doc', '--readme', dest='doc', nargs='?', const=DEFAULT_DOC, default=None,
                     metavar='PATH', help='also write the table between the protocol markers of this markdown page '
                     f'(without PATH: {osp.relpath(DEFAULT_DOC, REPO)}); by default no docs page is touched')
    doc.add_argument('--no-doc', dest='doc', action='store_const', const=None,
                     help='write WORK_DIR/protocol_table.md only (the default)')
    models = sorted(set(RUN_OF.values()))
    parser.add_argument('--models', nargs='+', choices=models, default=models,
                        help='segmentors to run (default: all; the SCR restorer always trains)')
    return parser.parse_args(argv)


def _common_options(args: argparse.Namespace) -> List[str]:
    # no validation while training (mmengine validates at the last iteration whatever val_interval says, so
    # val_begin is what skips it): every model is tested on the LQ images afterwards
    options = [f'train_cfg.max_iters={args.iters}', f'train_cfg.val_begin={args.iters + 1}',
               f'default_hooks.checkpoint.interval={args.iters}', f'param_scheduler.0.end={args.iters}',
               'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
               'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False']
    if args.val_images:
        options.append(f'test_dataloader.dataset.indices={args.val_images}')
    return options


TIMES: Dict[str, float] = {}  # wall seconds of every tool call, by run name


def _run(script: str, *arguments: str, name: Optional[str] = None) -> str:
    """Run ``python tools/SCRIPT ARGUMENTS`` in a subprocess; its output, or a RuntimeError naming the command."""
    command = [sys.executable, osp.join(REPO, 'tools', script), *arguments]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if name is not None:
        TIMES[name] = TIMES.get(name, 0.0) + time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f'{" ".join(command)} failed:\n{output[-3000:]}')
    return output


def logged_seconds(work_dir: str) -> Optional[float]:
    """Seconds between the first and the last timestamp of the newest mmengine log in ``work_dir`` (a reused run)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))
    if not logs:
        return None
    with open(logs[-1]) as f:
        stamps = re.findall(r'^(\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) - mmengine', f.read(), flags=re.M)
    if len(stamps) < 2:
        return None
    first, last = (datetime.strptime(stamp, '%Y/%m/%d %H:%M:%S') for stamp in (stamps[0], stamps[-1]))
    return (last - first).total_seconds()


def prepare_tiny_sd(args: argparse.Namespace) -> Dict[str, str]:
    """Make the tiny SD folder when it is not finished; write the wrapper configs that read it (name -> path)."""
    if not osp.isfile(osp.join(args.tiny_sd, 'rass_tiny_sd.json')):
        print(f'[make_tiny_sd] {args.tiny_sd}', flush=True)
        _run('misc/make_tiny_sd.py', TINY_SD_CONFIG, '--out', args.tiny_sd, *shlex.split(args.tiny_sd_args),
             name='make_tiny_sd')
    folder = osp.join(args.work_dir, 'configs')
    os.makedirs(folder, exist_ok=True)
    wrappers = {}
    for name, (config, has_scr_head) in SD_CONFIGS.items():
        head = f', decode_head=dict(pretrained={args.tiny_sd!r})' if has_scr_head else ''
        wrappers[name] = osp.join(folder, f'{name}.py')
        with open(wrappers[name], 'w') as f:
            f.write(f'# {osp.relpath(config, REPO)} on the tiny SD folder {args.tiny_sd} (written by run_protocols)\n'
                    f'_base_ = [{config!r}]\nmodel = dict(backbone=dict(pretrained={args.tiny_sd!r}){head})\n')
    return wrappers


def train_all(args: argparse.Namespace, wrappers: Dict[str, str]) -> Dict[str, str]:
    """Train every run (skipping finished ones); returns name -> checkpoint, plus the exported SCR adapter."""
    paths: Dict[str, str] = {}
    for name, (config, extra) in TRAIN_RUNS.items():
        if name != 'scr' and name.split('_')[-1] not in args.models and name.split('_')[0] not in args.models:
            continue
        config = config.format(**wrappers)
        work_dir = osp.join(args.work_dir, name)
        checkpoint = osp.join(work_dir, f'iter_{args.iters}.pth')
        if not osp.isfile(checkpoint):
            options = [o.format(**paths) for o in extra]
            print(f'[train] {name}: {osp.relpath(config, REPO)}', flush=True)
            _run('train.py', config, '--work-dir', work_dir, '--cfg-options', *_common_options(args), *options,
                 name=name)
        elif name not in TIMES:
            seconds = logged_seconds(work_dir)
            if seconds is not None:
                TIMES[f'{name} (reused)'] = seconds
        paths[name] = checkpoint
        if name == 'scr':
            paths['scr_adapter'] = osp.join(work_dir, 'exported_scr_adapter')
            if not osp.isfile(osp.join(paths['scr_adapter'], 'rass_adapter.json')):
                print('[export_adapter] scr', flush=True)
                _run('model_converters/export_adapter.py', config, checkpoint, paths['scr_adapter'],
                     name='export_adapter')
    return paths


def test_output(args: argparse.Namespace, config: str, checkpoint: str, options: Sequence[str] = (),
                name: Optional[str] = None) -> str:
    return _run('test.py', config, checkpoint, '--work-dir', osp.join(args.work_dir, 'tests'), '--cfg-options',
                *_common_options(args), *options, name=name)


def test_miou(args: argparse.Namespace, config: str, checkpoint: str, options: Sequence[str] = (),
              name: Optional[str] = None) -> float:
    """mIoU of ``checkpoint`` tested with ``config``; reused from WORK_DIR/tests/miou.json while the checkpoint is
    unchanged (same file size and modification time), so an interrupted table resumes without testing again."""
    cache_file = osp.join(args.work_dir, 'tests', 'miou.json')
    key = json.dumps([config, checkpoint, list(options), _common_options(args)])
    stamp = [os.stat(checkpoint).st_size, os.stat(checkpoint).st_mtime_ns] if osp.isfile(checkpoint) else None
    cache = {}
    if osp.isfile(cache_file):
        with open(cache_file) as f:
            cache = json.load(f)
    if key in cache and cache[key]['checkpoint'] == stamp:
        return cache[key]['mIoU']
    output = test_output(args, config, checkpoint, options, name)
    found = re.findall(r'mIoU: ([0-9.]+)', output)
    if not found:
        raise RuntimeError(f'no mIoU in the output of tools/test.py {config}:\n{output[-2000:]}')
    cache[key] = dict(mIoU=float(found[-1]), checkpoint=stamp)
    os.makedirs(osp.dirname(cache_file), exist_ok=True)
    with open(cache_file, 'w') as f:
        json.dump(cache, f, indent=1)
    return float(found[-1])


def _r2s_overrides(label: str, wrappers: Dict[str, str]) -> Dict[str, str]:
    overrides = {'model.restorer': wrappers['scr']}
    if RUN_OF[label] == 'rass':
        overrides['model.segmentor'] = wrappers['rass']
    return overrides


def _r2s_options(label: str, wrappers: Dict[str, str]) -> List[str]:
    return [f'{key}={value}' for key, value in _r2s_overrides(label, wrappers).items()]


def measure(args: argparse.Namespace, wrappers: Dict[str, str]) -> Dict[str, dict]:
    """Params and FPS (128x128, CPU) of each clean model and of its R2S pipeline, measured side by side."""
    results = {}
    for label, r2s in R2S_TEST.items():
        if RUN_OF[label] not in args.models:
            continue
        clean = TRAIN_RUNS[f'dt_{RUN_OF[label]}'][0].format(**wrappers)
        settings = BenchmarkSettings(
            clean, compare=r2s, shape=(128, 128), num_images=args.fps_images, rounds=3, warmup=2,
            compare_cfg_options={'model.restorer_checkpoint': None, 'model.segmentor_checkpoint': None,
                                 **_r2s_overrides(label, wrappers)})
        single, pipeline = benchmark(settings)
        print(format_table([single, pipeline], settings), flush=True)
        results[label] = dict(single=single, r2s=pipeline)
    return results


def _tiny_sd_summary(folder: str) -> str:
    with open(osp.join(folder, 'rass_tiny_sd.json')) as f:
        manifest = json.load(f)
    ldm, recipe = manifest.get('ldm', {}), manifest['recipe']
    if not ldm:
        return f'The tiny SD folder {folder} has a trained VAE only (no diffusion pretraining).'
    minutes = (manifest.get('vae_seconds_this_run', 0) + ldm.get('seconds_this_run', 0)) / 60
    after = ldm['val_denoising_mse_after']
    return (f'Tiny SD ({minutes:.1f} min of pretraining in its last run): VAE {recipe["iters"]} iterations '
            f'({manifest["vae_val_reconstruction_psnr_db"]:.2f} dB), UNet + '
            f'text encoder {recipe["ldm"]["iters"]} latent diffusion iterations, loss {ldm["loss_first_100_mean"]:.3f} '
            f'-> {ldm["loss_last_100_mean"]:.3f}; validation denoising MSE with the true / empty / wrong caption '
            f'{after["true_caption"]:.4f} / {after["empty_caption"]:.4f} / {after["wrong_caption"]:.4f}.')


def build_table(args: argparse.Namespace, miou: Dict[str, Dict[str, float]], speed: Dict[str, dict],
                psnr: Dict[str, float], wall: float) -> str:
    machine = (f'{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch '
               f'{torch.__version__}, {args.iters} training iterations per run')
    lines = [f'Tiny protocol on the embedded textures ({machine}); mIoU on the 20 seeded LQ validation images'
             f'{f" (first {args.val_images})" if args.val_images else ""}, FPS at 128x128:', '',
             '| model | DT | R2S | FT | RASS (FT, SCR merged) | params (trainable) | FPS | R2S FPS |',
             '|---|---|---|---|---|---|---|---|']
    for label, scores in miou.items():
        single, r2s = speed[label]['single'], speed[label]['r2s']
        rass = f'{scores["RASS"]:.2f}' if 'RASS' in scores else '-'
        lines.append(f'| {label} | {scores["DT"]:.2f} | {scores["R2S"]:.2f} | {scores["FT"]:.2f} | {rass} | '
                     f'{single["total"] / 1e6:.2f}M ({single["trainable"] / 1e6:.2f}M) | {single["fps"]:.1f} | '
                     f'{r2s["fps"]:.1f} |')
    nan = float('nan')
    times = ', '.join(f'{name} {seconds / 60:.1f}' for name, seconds in TIMES.items())
    lines += ['', 'R2S restores with the SCR restorer trained on the pretrained tiny SD (L2 + L_SCL); its PSNR on the '
              f'LQ images: {psnr.get("psnr_rgb", nan):.2f} dB, SSIM {psnr.get("ssim_rgb", nan):.3f} (the LQ images: '
              f'{psnr.get("lq_psnr_rgb", nan):.2f} dB, {psnr.get("lq_ssim_rgb", nan):.3f}). '
              'RASS FT trains the RASS model on degraded textures as it is (the ablation "RASS without SCR"); '
              'RASS (FT, SCR merged) trains it with the SCR adapter merged into the UNet (the RASS method). '
              'Baseline FT runs start from their DT checkpoint.', '', _tiny_sd_summary(args.tiny_sd), '',
              f'Wall time {wall / 60:.1f} min in this call (minutes per tool call: {times or "all runs reused"}).']
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
    start = time.perf_counter()
    args = parse_args(argv)
    args.work_dir, args.tiny_sd = osp.abspath(args.work_dir), osp.abspath(args.tiny_sd)
    if args.doc:
        read_doc(args.doc)  # a page without markers is refused before any training, not after
    TIMES.clear()
    wrappers = prepare_tiny_sd(args)
    paths = train_all(args, wrappers)
    miou: Dict[str, Dict[str, float]] = {}
    for label, lq_config in LQ_TEST.items():
        run = RUN_OF[label]
        if run not in args.models:
            continue
        lq_config = lq_config.format(**wrappers)
        print(f'[test] {label}', flush=True)
        miou[label] = dict(
            DT=test_miou(args, lq_config, paths[f'dt_{run}'], name='tests'),
            R2S=test_miou(args, R2S_TEST[label], paths[f'dt_{run}'],
                          [f'model.restorer_checkpoint={paths["scr"]}', 'model.segmentor_checkpoint=None',
                           *_r2s_options(label, wrappers)], name='tests'),
            FT=test_miou(args, lq_config, paths[f'ft_{run}'], name='tests'))
        if run == 'rass':
            miou[label]['RASS'] = test_miou(args, lq_config, paths['rass_scr'], [MERGE_SCR.format(**paths)],
                                            name='tests')
    output = test_output(args, wrappers['scr'], paths['scr'], name='tests')
    psnr = {key: float(value) for key, value in re.findall(r'\b((?:lq_)?(?:psnr|ssim)_rgb): ([0-9.]+)', output)}
    speed = measure(args, wrappers)
    table = build_table(args, miou, speed, psnr, time.perf_counter() - start)
    with open(osp.join(args.work_dir, 'protocol_table.md'), 'w') as f:
        f.write(table + '\n')
    if args.doc:
        update_doc(args.doc, table)
    print(table)
    return table


if __name__ == '__main__':
    main()
