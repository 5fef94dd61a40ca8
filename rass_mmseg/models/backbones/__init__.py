from .rass_backbone import RASSBackbone

__all__ = ['RASSBackbone']
