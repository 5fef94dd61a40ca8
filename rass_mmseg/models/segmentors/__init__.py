from .rass_encoder_decoder import RASSEncoderDecoder
from .semantic_constrained_restorer import SemanticConstrainedRestorer

__all__ = ['RASSEncoderDecoder', 'SemanticConstrainedRestorer']
