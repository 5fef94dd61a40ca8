"""Converters from the public RASS release (github.com/Ka1Guan/RASS) to this package's checkpoints and adapters."""
from .official_rass import ConversionReport, check_against_expected, convert_rass_state_dict
from .official_scr import ScrAdapter, convert_scr_checkpoint, is_scr_checkpoint, write_scr_adapter
from .official_unet import merged_unet_state_dict, write_unet_folder

__all__ = ['ConversionReport', 'ScrAdapter', 'check_against_expected', 'convert_rass_state_dict',
           'convert_scr_checkpoint', 'is_scr_checkpoint', 'merged_unet_state_dict', 'write_scr_adapter',
           'write_unet_folder']
