"""Converters from the public RASS release (github.com/Ka1Guan/RASS) to this package's checkpoints and adapters."""
from .official_rass import ConversionReport, check_against_expected, convert_rass_state_dict
from .official_scr import ScrAdapter, convert_scr_checkpoint, is_scr_checkpoint, write_scr_adapter

__all__ = ['ConversionReport', 'ScrAdapter', 'check_against_expected', 'convert_rass_state_dict',
           'convert_scr_checkpoint', 'is_scr_checkpoint', 'write_scr_adapter']
