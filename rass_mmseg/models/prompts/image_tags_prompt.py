"""A prompt source made of an image tagger's tags: the public RASS code's test-time prompt."""
from typing import List, Optional

from mmseg.registry import MODELS, TASK_UTILS
from torch import nn

__all__ = ['ImageTagsPrompt', 'clean_caption']

SCOPES = ('image', 'window')


def clean_caption(caption: str) -> str:
    """What the public code's ``encode_prompt`` (``restoration_adaptation/ras.py``) does to a caption before it
    tokenizes it: brackets, spaces and commas stripped at both ends, apostrophes dropped, every comma a space."""
    return caption.strip('[] ,').replace("'", '').replace(',', ' ')


@TASK_UTILS.register_module()
class ImageTagsPrompt:
    """The tags a tagger (RAM, DAPE) gives an image, as the prompt of that image.

    The public RASS code prompts its UNet with ``f'{tags}, {pos_prompt_vsd}'`` (``pos_prompt_vsd`` is empty by
    default), tokenized after :func:`clean_caption` into one 77-token window (longer prompts are cut). A backbone
    with this prompt source builds the tagger as its frozen submodule ``tagger`` and encodes each distinct prompt once
    (:meth:`~rass_mmseg.models.backbones.stable_diffusion_backbone.StableDiffusionBackbone.image_prompt_embeddings`).

    Which image is tagged (``scope``):

    - ``'image'`` (the public code's test behaviour): the whole image as the segmentor sees it, i.e. after
      ``test_cfg.pad_to_multiple`` in ``mode='slide_features'``; one prompt for all its windows.
    - ``'window'``: each window the backbone runs on gets its own tags.

    In ``mode='whole'`` both are the whole image; mmseg's ``mode='slide'`` runs the whole model per crop, so the tags
    are per crop. Test time only: in training the public code tags the clean target image, which the backbone never
    sees (the backbone refuses to train with it).

    Args:
        tagger: Config of a tagger module (``MODELS``), e.g. ``dict(type='RAMTagger', ..., weights='ram.safetensors')``,
            with ``tag(images) -> List[str]`` for images (N, 3, H, W) RGB in [-1, 1] (the tags of each image joined by
            ``', '``). With ``weights`` (a file it loads itself) it is left out of checkpoints.
        suffix: Text after the tags (the public ``pos_prompt_vsd``, default '').
        template: How tags and suffix make the caption; must name ``{tags}``.
        scope: ``'image'`` or ``'window'`` (above).
        clean: Apply :func:`clean_caption` (the public code's text handling) to the caption.
    """

    #: Backbones ask :meth:`prompt_text` for each image instead of encoding :meth:`phrases` once.
    needs_images = True

    def __init__(self, tagger: dict, suffix: str = '', template: str = '{tags}, {suffix}', scope: str = 'image',
                 clean: bool = True) -> None:
        if not isinstance(tagger, dict) or 'type' not in tagger:
            raise ValueError(f"ImageTagsPrompt tagger must be a config dict with a 'type', got {tagger!r}")
        if not isinstance(suffix, str):
            raise TypeError(f'ImageTagsPrompt suffix must be a string, got {type(suffix).__name__}')
        if not isinstance(template, str) or '{tags}' not in template:
            raise ValueError(f"ImageTagsPrompt template must be a string naming '{{tags}}', got {template!r}")
        try:
            template.format(tags='', suffix='')
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f'ImageTagsPrompt template {template!r} may name only {{tags}} and {{suffix}} '
                             f'({type(error).__name__}: {error})') from None
        if scope not in SCOPES:
            raise ValueError(f'ImageTagsPrompt scope must be one of {SCOPES}, got {scope!r}')
        self.tagger_cfg = dict(tagger)
        self.suffix, self.template, self.scope, self.clean = suffix, template, scope, bool(clean)

    @property
    def weights_file(self) -> Optional[str]:
        """The weights file the tagger loads itself (then checkpoints leave it out), or None."""
        return self.tagger_cfg.get('weights')

    def build_tagger(self) -> nn.Module:
        """The tagger, frozen and in eval mode."""
        tagger = MODELS.build(self.tagger_cfg)
        if not callable(getattr(tagger, 'tag', None)):
            raise TypeError(f'ImageTagsPrompt tagger {type(tagger).__name__} has no tag(images) method')
        return tagger.requires_grad_(False).eval()

    def prompt_text(self, tags: str) -> str:
        """The text that is tokenized for an image with these tags (``', '``-joined)."""
        caption = self.template.format(tags=tags, suffix=self.suffix)
        return clean_caption(caption) if self.clean else caption

    def phrases(self) -> List[str]:
        """Refused: the prompt depends on the image."""
        raise ValueError('ImageTagsPrompt has no fixed phrases: its prompt is made from each image '
                         '(RASSBackbone tags its input); use ClassNamesPrompt or FixedTextPrompt here')

    def __repr__(self) -> str:
        return (f"ImageTagsPrompt(tagger={self.tagger_cfg.get('type')}, scope={self.scope!r}, "
                f'template={self.template!r}, suffix={self.suffix!r})')
