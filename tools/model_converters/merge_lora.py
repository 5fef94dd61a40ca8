"""Write a checkpoint with the Seg LoRA merged into the UNet weights, for inference without peft.

    python tools/model_converters/merge_lora.py CONFIG CHECKPOINT OUT.pth
    python tools/test.py CONFIG OUT.pth --cfg-options model.backbone.deploy=True

The output holds the model's ``state_dict`` with plain UNet layers (no ``lora_A``/``lora_B``/``base_layer``
keys) and the input checkpoint's ``meta``; optimizer and message-hub states are dropped. The checkpoint is
read with ``weights_only=True``; an existing OUT is never overwritten.
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS

import rass_mmseg  # noqa: F401  (registers the plugin and the weights-only checkpoint loader)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Merge the Seg LoRA of a RASS checkpoint into the UNet weights')
    parser.add_argument('config', help='config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='checkpoint with LoRA layers')
    parser.add_argument('out', help='merged checkpoint to write (must not exist)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys')
    return parser.parse_args(argv)


def merge_checkpoint(config: str, checkpoint: str, out: str, cfg_options: dict = None) -> dict:
    """Build ``config``, load ``checkpoint``, merge the Seg LoRA and save to ``out``; returns the merged state."""
    if osp.exists(out):
        raise FileExistsError(f'{out} exists; refusing to overwrite it (choose another output path)')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    backbone = cfg.model.backbone
    if backbone.get('deploy'):
        raise ValueError(f'{config}: model.backbone.deploy is True; give the training config (with LoRA layers)')
    model = MODELS.build(cfg.model)
    loaded = load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.backbone.merge_lora()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = dict(loaded.get('meta', {})) if isinstance(loaded, dict) else {}
    meta['rass_mmseg_merged_lora'] = True
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(dict(meta=meta, state_dict=state), out)
    return state


def main() -> None:
    args = parse_args()
    state = merge_checkpoint(args.config, args.checkpoint, args.out, args.cfg_options)
    print(f'wrote {args.out}: {len(state)} tensors, LoRA merged; test it with '
          f'--cfg-options model.backbone.deploy=True')


if __name__ == '__main__':
    main()
