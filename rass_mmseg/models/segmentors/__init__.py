from .rass_encoder_decoder import RASSEncoderDecoder
from .restore_then_segment import RestoreThenSegment
from .semantic_constrained_restorer import SemanticConstrainedRestorer

__all__ = ['RASSEncoderDecoder', 'RestoreThenSegment', 'SemanticConstrainedRestorer']
