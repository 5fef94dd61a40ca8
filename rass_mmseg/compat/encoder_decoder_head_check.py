"""Give mmseg 1.2.2's plain ``EncoderDecoder`` the build-time head check of ``RASSEncoderDecoder`` when it holds a
RASS backbone or neck.

A user who swaps our backbone (and neck) into a stock mmseg config keeps mmseg's ``EncoderDecoder``, which builds a
decode head whose ``in_channels`` do not fit the features without complaint; the first training step then fails
inside a convolution (``expected input[2, 64, 32, 32] to have 32 channels, but got 64 channels instead``).

With this fix, ``EncoderDecoder.__init__`` (and that of every subclass that calls it) ends with
:meth:`RASSEncoderDecoder._check_head_channels <rass_mmseg.models.segmentors.RASSEncoderDecoder>`, the same check
and message, plus the config keys to change, when its backbone is a Stable Diffusion backbone of this package or its
neck a ``FeatureProjection``. Models with mmseg's own backbones and necks, and ``RASSEncoderDecoder`` (which checks
after its own ``__init__``), are built exactly as before.
"""
import functools

from mmseg.models.segmentors import EncoderDecoder

__all__ = ['check_rass_head_channels', 'install']

_original_init = EncoderDecoder.__init__


def check_rass_head_channels(segmentor: EncoderDecoder) -> None:
    """Raise a one-line ``ValueError`` when ``segmentor``'s decode head does not fit its RASS backbone or neck.

    Args:
        segmentor: A built ``EncoderDecoder`` (or subclass); nothing is checked unless its backbone is a
            ``StableDiffusionBackbone`` or its neck a ``FeatureProjection``.
    """
    from rass_mmseg.models.backbones import StableDiffusionBackbone
    from rass_mmseg.models.necks import FeatureProjection
    from rass_mmseg.models.segmentors import RASSEncoderDecoder

    neck = segmentor.neck if segmentor.with_neck else None
    if not (isinstance(segmentor.backbone, StableDiffusionBackbone) or isinstance(neck, FeatureProjection)):
        return
    try:
        RASSEncoderDecoder._check_head_channels(segmentor)
    except ValueError as error:  # the message names model.decode_head.in_channels and the neck's or backbone's key
        hint = '' if neck is not None else (" (or add model.neck=dict(type='FeatureProjection', ...), "
                                            'see configs/examples)')
        raise ValueError(f'{type(segmentor).__name__}: {error}{hint}') from None


@functools.wraps(_original_init)
def _init_then_check(self: EncoderDecoder, *args, **kwargs) -> None:
    _original_init(self, *args, **kwargs)
    from rass_mmseg.models.segmentors import RASSEncoderDecoder
    if not isinstance(self, RASSEncoderDecoder):
        check_rass_head_channels(self)


def install() -> None:
    """Run the head check at the end of ``EncoderDecoder.__init__``."""
    EncoderDecoder.__init__ = _init_then_check
