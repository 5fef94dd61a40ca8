from .lora import DEFAULT_LORA_TARGETS, add_lora_adapter, merge_lora_adapter, save_lora_adapter
from .lpips_network import build_lpips
from .sd_components import build_byte_level_clip_tokenizer, build_sd_components
from .text_encoding import PromptEncoding, encode_phrases

__all__ = ['DEFAULT_LORA_TARGETS', 'build_lpips', 'add_lora_adapter', 'merge_lora_adapter', 'save_lora_adapter',
           'build_byte_level_clip_tokenizer', 'build_sd_components', 'PromptEncoding', 'encode_phrases']
