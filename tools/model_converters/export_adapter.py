"""Export the trained LoRA adapter (SCR or Seg) of a checkpoint as an adapter folder.

    python tools/model_converters/export_adapter.py CONFIG CHECKPOINT OUT_DIR

The folder holds ``adapter_config.json`` + ``adapter_model.safetensors`` (peft's layout, for
``PeftModel.from_pretrained``), ``pytorch_lora_weights.safetensors`` (diffusers' layout, for
``pipeline.load_lora_weights``), ``rass_adapter.json`` (base-weights fingerprint, trained modules) and, when
``conv_in`` was trained, ``trained_modules.safetensors``; give it to ``RASSBackbone(merge_adapters=[OUT_DIR])``
(e.g. an SCR adapter into a RASS config). The checkpoint is read with ``torch.load(weights_only=True)``; OUT_DIR
must be new or empty.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmseg.registry import MODELS

import rass_mmseg  # noqa: F401  (registers the plugin and the weights-only checkpoint loader)


def export_adapter(config: str, checkpoint: str, out_dir: str) -> None:
    """Build the model of ``config``, load ``checkpoint`` and write its backbone's adapter to ``out_dir``."""
    if osp.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError(f'adapter folder {out_dir} is not empty; choose a new folder')
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'backbone') or not hasattr(model.backbone, 'export_adapter'):
        raise ValueError(f'{config}: model.backbone ({type(getattr(model, "backbone", None)).__name__}) has no LoRA '
                         'adapter to export (expected RASSBackbone or SCRBackbone)')
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.backbone.export_adapter(out_dir)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file of the checkpoint')
    parser.add_argument('checkpoint', help='checkpoint file (mmengine .pth)')
    parser.add_argument('out_dir', help='new adapter folder')
    args = parser.parse_args(argv)
    try:
        export_adapter(args.config, args.checkpoint, args.out_dir)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        sys.exit(f'export_adapter: {error}')
    print(f'adapter written to {args.out_dir}')


if __name__ == '__main__':
    main()
