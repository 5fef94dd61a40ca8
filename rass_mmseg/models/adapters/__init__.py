"""RASS's hand-over from SCR to RASS: LoRA adapters on the Stable Diffusion UNet.

- :mod:`.lora_adapters`: add a trainable adapter, export it as a folder, merge a folder or an injected adapter into
  the UNet weights (diffusers' ``PeftAdapterMixin`` and peft do the LoRA work).
- :mod:`.adapter_folder`: the on-disk layout of an adapter folder, read by plain peft, plain diffusers and us.
- :mod:`.adapter_views`: one UNet run with some of its adapters or none (VSD's pretrained and regulariser views).
"""
from .adapter_folder import read_adapter_folder, write_adapter_folder
from .adapter_views import active_adapters, call_with_weights
from .lora_adapters import (
    DEFAULT_LORA_TARGETS,
    add_lora_adapter,
    base_weights_fingerprint,
    lora_parameter_names,
    merge_injected_adapter,
    merge_lora_adapter,
    save_lora_adapter,
)

__all__ = ['DEFAULT_LORA_TARGETS', 'add_lora_adapter', 'save_lora_adapter', 'merge_lora_adapter',
           'merge_injected_adapter', 'lora_parameter_names', 'base_weights_fingerprint', 'read_adapter_folder',
           'write_adapter_folder', 'active_adapters', 'call_with_weights']
