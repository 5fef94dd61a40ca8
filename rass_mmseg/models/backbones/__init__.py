from .rass_backbone import RASSBackbone
from .scr_backbone import SCRBackbone
from .stable_diffusion_backbone import StableDiffusionBackbone

__all__ = ['RASSBackbone', 'SCRBackbone', 'StableDiffusionBackbone']
