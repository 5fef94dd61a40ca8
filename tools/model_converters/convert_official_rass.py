"""Convert the public RASS release (github.com/Ka1Guan/RASS, detectron2) to this package.

    # the RASS checkpoint (rass.pth, the whole model) -> a checkpoint of the paper config
    # (configs/rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py) and, next to it, a Stable Diffusion
    # folder with the UNet of rass.pth (SD 2.1-base with the SCR LoRA merged): rass.pth + SD 2.1-base suffice
    python tools/model_converters/convert_official_rass.py preset/model/rass.pth checkpoints/rass_official/rass.pth \
        --sd21-base checkpoints/stable-diffusion-2-1-base
    # or rebuild that UNet from SD 2.1-base + the SCR checkpoint (preset/model/scr.pkl) as an adapter folder
    python tools/model_converters/convert_official_rass.py preset/model/scr.pkl checkpoints/rass_official/scr_adapter \
        --sd21-base checkpoints/stable-diffusion-2-1-base
    python tools/model_converters/convert_official_rass.py preset/model/rass.pth checkpoints/rass_official/rass.pth \
        --sd21-base checkpoints/stable-diffusion-2-1-base --merge-adapters checkpoints/rass_official/scr_adapter

The kind of ``src`` is read from its content (an SCR dict with ``state_dict_unet``, or a detectron2 checkpoint with a
``model`` state dict); it is loaded with ``torch.load(weights_only=True)``. Every key is mapped or dropped for a
stated reason (:mod:`rass_mmseg.converters.official_rass`, :mod:`rass_mmseg.converters.official_scr`); an unknown key
stops the conversion. A RASS checkpoint is then checked against the model of ``--config`` (built on the meta device,
no weights needed): it must hold exactly the tensors that model trains, with their shapes.

The converted RASS checkpoint holds only what trains (Seg LoRA, ``conv_in``, projection, Mask2Former head). The
frozen Stable Diffusion weights come from the model's ``pretrained`` folder (+ ``merge_adapters``), and our
checkpoints prove which ones with a fingerprint:

- ``--sd21-base`` alone: the UNet stored in rass.pth is written as ``unet/`` of a new folder (``--unet-folder``,
  default ``<dst without .pth>_sd21-base-scr``) whose other parts link to ``--sd21-base``
  (:mod:`rass_mmseg.converters.official_unet`); the checkpoint records that folder's fingerprint. Test with
  ``--cfg-options model.backbone.pretrained=<that folder>`` (``merge_adapters`` stays ``[]``).
- ``--sd21-base`` and ``--merge-adapters <SCR adapter folder>``: the fingerprint of SD 2.1-base with that adapter
  merged (the SCR route); test with ``model.backbone.merge_adapters=[<folder>]``.
- neither: no SD weights needed, no fingerprint: mmseg's ``tools/test.py`` (non-strict loading) loads it and lists
  the frozen weights as missing, and nothing checks which base weights the model was built on.

With a fingerprint the checkpoint loads with ``strict=True`` and is refused on other base weights. ``--sd21-base`` on
an SCR checkpoint records the UNet's fingerprint in the adapter folder, checked when it is merged. ``dst`` and the
UNet folder must not exist.
"""
import argparse
import os
import os.path as osp
import pickle
import shutil
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER_CONFIG = osp.join(REPO, 'configs', 'rass', 'rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py')
FINGERPRINT = 'backbone.frozen_weights_fingerprint'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert the public RASS checkpoint or SCR checkpoint')
    parser.add_argument('src', help='rass.pth (detectron2 RASS checkpoint) or scr.pkl (SCR checkpoint)')
    parser.add_argument('dst', help='output: a .pth checkpoint (RASS) or an adapter folder (SCR); must not exist')
    parser.add_argument('--config', default=PAPER_CONFIG, help='config whose model the RASS checkpoint must fit '
                        '(default: the paper config)')
    parser.add_argument('--sd21-base', default=None, help='local Stable Diffusion 2.1-base diffusers folder: records '
                        "the frozen-weights fingerprint (RASS: alone, writes rass.pth's UNet as a folder next to dst; "
                        'with --merge-adapters, SD + the SCR adapter) or the UNet fingerprint (SCR)')
    parser.add_argument('--merge-adapters', nargs='+', default=[], help='adapter folders the model merges (the one '
                        'converted from scr.pkl), as model.backbone.merge_adapters; with --sd21-base')
    parser.add_argument('--unet-folder', default=None, help='RASS with --sd21-base alone: the Stable Diffusion folder '
                        "to write with rass.pth's UNet (default: <dst without .pth>_sd21-base-scr); must not exist")
    return parser.parse_args(argv)


def unet_folder(args: argparse.Namespace) -> str:
    """Where the UNet of rass.pth goes: ``--unet-folder`` or next to ``dst``."""
    return args.unet_folder or f'{osp.splitext(args.dst)[0]}_sd21-base-scr'


def load_source(path: str):
    """``torch.load(path, weights_only=True)`` with one-line errors."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path}: no such file')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise ValueError(f'{path}: cannot be read with torch.load(weights_only=True) ({reason}); expected the public '
                         "rass.pth or scr.pkl (if you trust the file, re-save its 'model' entry alone with torch.save)"
                         ) from None


def rass_state_dict(checkpoint, path: str) -> dict:
    """The model state dict of a detectron2 checkpoint (``{'model': ...}``) or of a bare state dict."""
    state = checkpoint.get('model', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{path}: neither an SCR checkpoint (with state_dict_unet) nor a detectron2 checkpoint (a '
                         "'model' dict of tensors)")
    return state


def convert_scr(checkpoint: dict, args: argparse.Namespace) -> List[str]:
    from rass_mmseg.converters import convert_scr_checkpoint, write_scr_adapter
    from rass_mmseg.converters.target_model import unet_base_fingerprint
    adapter = convert_scr_checkpoint(checkpoint, args.src)
    fingerprint = unet_base_fingerprint(args.sd21_base) if args.sd21_base else None
    modules = write_scr_adapter(adapter, args.dst, fingerprint)
    return [f'SCR adapter: {len(modules)} LoRA modules (rank {adapter.config.r}, alpha {adapter.config.lora_alpha}) '
            f'+ conv_in -> {args.dst}',
            f'base fingerprint: {fingerprint}' if fingerprint else
            'no base fingerprint recorded (pass --sd21-base to have merges onto other base weights refused)']


def convert_rass(checkpoint, args: argparse.Namespace) -> List[str]:
    from mmseg.datasets import ADE20KDataset

    from rass_mmseg.converters import check_against_expected, convert_rass_state_dict
    from rass_mmseg.converters.official_unet import merged_unet_state_dict, write_unet_folder
    from rass_mmseg.converters.target_model import frozen_weights_fingerprint, trainable_state_shapes
    state = rass_state_dict(checkpoint, args.src)
    converted, report = convert_rass_state_dict(state)
    cfg = Config.fromfile(args.config)
    check_against_expected(converted, trainable_state_shapes(cfg, args.config), args.config)
    unet = merged_unet_state_dict(state, args.src)
    lines = [f'{len(converted)} tensors mapped -> {args.dst}']
    lines += [f'left out: {count} x {reason}' for reason, count in report.dropped.items()]
    backbone = None
    if args.sd21_base and args.merge_adapters:
        converted[FINGERPRINT] = frozen_weights_fingerprint(cfg, args.sd21_base, args.merge_adapters)
        backbone = dict(pretrained=args.sd21_base, merge_adapters=list(args.merge_adapters))
        lines.append(f'frozen-weights fingerprint of {args.sd21_base} + {args.merge_adapters} recorded: loads '
                     'strictly on these base weights only')
        test_options = f'"model.backbone.merge_adapters=[{",".join(args.merge_adapters)}]"'
    elif args.sd21_base:
        if not unet:
            raise ValueError(f'{args.src} holds no frozen UNet (only what trains); pass --merge-adapters <the SCR '
                             'adapter folder converted from scr.pkl> to rebuild it from SD 2.1-base')
        folder = unet_folder(args)
        linked = write_unet_folder(unet, args.sd21_base, folder)
        try:
            converted[FINGERPRINT] = frozen_weights_fingerprint(cfg, folder, [])
        except BaseException:
            shutil.rmtree(folder)  # written above; its links are unlinked, never followed
            raise
        backbone = dict(pretrained=folder, merge_adapters=[])
        lines.append(f'UNet of {args.src} (SD 2.1-base with the SCR LoRA merged, {len(unet)} tensors) -> '
                     f'{osp.join(folder, "unet")}; {", ".join(linked)} linked to {args.sd21_base}')
        lines.append(f'frozen-weights fingerprint of {folder} recorded: loads strictly on these base weights only')
        test_options = f'model.backbone.pretrained={folder}'
    else:
        lines.append('no frozen-weights fingerprint (no --sd21-base): load non-strictly (tools/test.py does) '
                     + ('and pass --sd21-base to write the UNet that rass.pth holds' if unet else
                        'and keep model.backbone.merge_adapters=[<SCR adapter folder>]'))
        test_options = None
    meta = dict(converted_from=osp.basename(args.src), converter='tools/model_converters/convert_official_rass.py',
                config=osp.relpath(args.config, REPO) if args.config.startswith(REPO) else args.config,
                frozen_weights=('fingerprint' if backbone else 'not included, no fingerprint'),
                dataset_meta=dict(classes=ADE20KDataset.METAINFO['classes'], palette=ADE20KDataset.METAINFO['palette']))
    if backbone:
        meta['backbone'] = backbone  # what the fingerprint was taken on
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(state_dict=converted, meta=meta), args.dst)
    if test_options:
        lines.append(f'test: python tools/test.py {meta["config"]} {args.dst} --cfg-options {test_options}')
    return lines


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    args = parse_args(argv)
    import mmdet.models  # noqa: F401  (Mask2FormerHead's parts)

    import rass_mmseg  # noqa: F401  (registers the model)
    from rass_mmseg.converters import is_scr_checkpoint
    init_default_scope('mmseg')
    try:
        if osp.exists(args.dst):
            raise FileExistsError(f'{args.dst} exists; choose a new output path')
        if args.merge_adapters and not args.sd21_base:
            raise ValueError('--merge-adapters only matters with --sd21-base (the fingerprint of the merged weights)')
        checkpoint = load_source(args.src)
        if is_scr_checkpoint(checkpoint):
            lines = convert_scr(checkpoint, args)
        else:
            if args.sd21_base and not args.merge_adapters and osp.lexists(unet_folder(args)):
                raise FileExistsError(f'{unet_folder(args)} exists; choose a new --unet-folder for the UNet of '
                                      f'{args.src}')
            lines = convert_rass(checkpoint, args)
    except (OSError, ValueError) as error:
        raise SystemExit(f'convert_official_rass.py: error: {error}')
    for line in lines:
        print(line)
    return lines


if __name__ == '__main__':
    main()
