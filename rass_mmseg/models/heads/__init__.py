from .scr_head import SCRHead

__all__ = ['SCRHead']
