"""A prompt source that always gives the same text."""
from typing import List

from mmseg.registry import TASK_UTILS

__all__ = ['FixedTextPrompt']


@TASK_UTILS.register_module()
class FixedTextPrompt:
    """One fixed prompt for every image (an empty text gives Stable Diffusion's unconditional prompt).

    Args:
        text: The prompt.
    """

    def __init__(self, text: str = '') -> None:
        if not isinstance(text, str):
            raise TypeError(f'FixedTextPrompt text must be a string, got {type(text).__name__}')
        self.text = text

    def phrases(self) -> List[str]:
        """The prompt as a one-phrase list."""
        return [self.text]

    def __repr__(self) -> str:
        return f'FixedTextPrompt(text={self.text!r})'
