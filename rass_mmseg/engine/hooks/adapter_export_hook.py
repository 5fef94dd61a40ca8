"""Write the trained LoRA adapter as an adapter folder (peft + diffusers layouts) at the end of training."""
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

__all__ = ['AdapterExportHook']


@HOOKS.register_module()
class AdapterExportHook(Hook):
    """After training, save the backbone's trainable LoRA (SCR or Seg) into ``work_dir``.

    The folder, ``{prefix}_iter_{N}`` by default, is what ``save_lora_adapter`` writes (see
    :mod:`rass_mmseg.models.adapters.adapter_folder`): a peft adapter folder (``adapter_config.json`` and
    ``adapter_model.safetensors``) that ``PeftModel.from_pretrained`` loads, diffusers' LoRA file
    (``pytorch_lora_weights.safetensors``) for ``pipeline.load_lora_weights``, and our ``rass_adapter.json`` plus
    ``trained_modules.safetensors`` (``conv_in``). ``RASSBackbone(merge_adapters=[...])`` accepts it;
    ``tools/model_converters/export_adapter.py`` does the same from any checkpoint.

    Args:
        prefix: Folder name prefix.
        out_dir: Explicit output folder instead of ``work_dir/{prefix}_iter_{N}``.
    """

    priority = 'LOW'

    def __init__(self, prefix: str = 'adapter', out_dir: Optional[str] = None) -> None:
        self.prefix = prefix
        self.out_dir = out_dir

    def after_train(self, runner) -> None:
        """Export the adapter on the main process."""
        if not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        out_dir = self.out_dir or osp.join(runner.work_dir, f'{self.prefix}_iter_{runner.iter}')
        model.backbone.export_adapter(out_dir)
        runner.logger.info(f'LoRA adapter written to {out_dir}')
