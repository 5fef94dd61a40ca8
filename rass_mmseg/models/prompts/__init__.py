"""RASS's text side: prompt sources (what the UNet is told) and their encoding (CLIP, never truncated, cached).

- :mod:`.fixed_text_prompt`, :mod:`.class_names_prompt`: the prompt sources (``TASK_UTILS``) a backbone's
  ``prompt_source`` and SCR's ``gt_class_prompt`` name.
- :mod:`.text_encoding`: phrases packed into 77-token CLIP windows and encoded, with each phrase's token positions.
- :mod:`.prompt_encoder`: the backbones' cache of encoded prompts.
"""
from .class_names_prompt import ClassNamesPrompt
from .fixed_text_prompt import FixedTextPrompt
from .prompt_encoder import PromptEncoder
from .text_encoding import PromptEncoding, encode_phrases, pack_phrases

__all__ = ['ClassNamesPrompt', 'FixedTextPrompt', 'PromptEncoder', 'PromptEncoding', 'encode_phrases',
           'pack_phrases']
