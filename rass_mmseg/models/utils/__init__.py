from .lpips_network import build_lpips
from .sd_components import build_byte_level_clip_tokenizer, build_sd_components

__all__ = ['build_lpips', 'build_byte_level_clip_tokenizer', 'build_sd_components']
