from .rass_backbone import RASSBackbone
from .scr_backbone import SCRBackbone

__all__ = ['RASSBackbone', 'SCRBackbone']
