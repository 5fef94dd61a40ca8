from .rass_encoder_decoder import RASSEncoderDecoder

__all__ = ['RASSEncoderDecoder']
