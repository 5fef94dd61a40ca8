"""The constructor guard every segmentor of this package shares: ``model.pretrained`` stays None.

mmseg's segmentors take ``pretrained`` (a backbone checkpoint), and mmseg's ``init_model`` sets
``model.pretrained = None`` on every config it builds, so the key must be accepted. The weights of these segmentors
come from elsewhere (the backbone's Stable Diffusion folder, the sub-model checkpoints of R2S): a value would be
ignored without a word, so it is refused in one line before anything is built.
"""
from typing import Optional

__all__ = ['refuse_model_pretrained']


def refuse_model_pretrained(owner: str, pretrained: Optional[str], weights_from: str) -> None:
    """One-line error when ``model.pretrained`` is set.

    Args:
        owner: Name of the segmentor in the message.
        pretrained: The segmentor's ``pretrained`` argument.
        weights_from: Where the segmentor's weights come from instead, for the message.
    """
    if pretrained is not None:
        raise ValueError(f'{owner}: the weights come from {weights_from}, not model.pretrained (got '
                         f'pretrained={pretrained!r}); leave model.pretrained None')
