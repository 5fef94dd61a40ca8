from .class_names_prompt import ClassNamesPrompt
from .fixed_text_prompt import FixedTextPrompt

__all__ = ['ClassNamesPrompt', 'FixedTextPrompt']
