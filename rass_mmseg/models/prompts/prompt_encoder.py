"""The cached text side of the Stable Diffusion backbones: phrases in, cross-attention conditioning out.

The text encoder is frozen, so a prompt's embeddings never change while its weights do not: each distinct list of
phrases is encoded once and kept. The cache is dropped whenever the owner's state dict is loaded (the text
encoder's weights may change then).
"""
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .text_encoding import PromptEncoding, encode_phrases

__all__ = ['PromptEncoder']


class PromptEncoder:
    """Encodes and caches prompts with a (frozen) CLIP text encoder it does not own.

    It is not an ``nn.Module``: the text encoder stays a submodule of the backbone (its state-dict keys and device
    moves are the backbone's), and the encoder only reads it.

    Args:
        tokenizer: A CLIP tokenizer whose ``model_max_length`` is the encoder's context length.
        text_encoder: ``transformers.CLIPTextModel``.
        max_entries: Bound of the cache (per-image prompts of SCR training vary).
    """

    def __init__(self, tokenizer, text_encoder: nn.Module, max_entries: int = 4096) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.max_entries = max_entries
        self._cache: 'OrderedDict[Tuple[str, ...], PromptEncoding]' = OrderedDict()

    def clear(self) -> None:
        """Forget every cached encoding."""
        self._cache.clear()

    def encode(self, phrases: Sequence[str]) -> PromptEncoding:
        """Embeddings (1, L, D) of ``phrases`` joined into one prompt, in as many 77-token windows as needed."""
        key = tuple(phrases)
        encoding = self._cache.get(key)
        if encoding is None:
            encoding = encode_phrases(list(phrases), self.tokenizer, self.text_encoder)
            if len(self._cache) >= self.max_entries:
                self._cache.popitem(last=False)
            self._cache[key] = encoding
        else:
            self._cache.move_to_end(key)
        return encoding

    def encode_batch(self, prompts: Sequence[Sequence[str]]) -> Tuple[Tensor, Optional[Tensor], List[List[List[int]]]]:
        """One prompt per image, padded to the longest.

        Args:
            prompts: For each image, its phrases.

        Returns:
            Embeddings (N, L, D); the (N, L) attention mask, 1 for real tokens and 0 for padding, or None when all
            prompts have the same length; for each image, the token positions of each of its phrases.
        """
        encodings = [self.encode(phrases) for phrases in prompts]
        positions = [e.phrase_token_positions for e in encodings]
        longest = max(e.embeddings.shape[1] for e in encodings)
        if all(e.embeddings.shape[1] == longest for e in encodings):
            return torch.cat([e.embeddings for e in encodings]), None, positions
        first = encodings[0].embeddings
        embeddings = first.new_zeros(len(encodings), longest, first.shape[-1])
        mask = first.new_zeros(len(encodings), longest)
        for index, encoding in enumerate(encodings):
            length = encoding.embeddings.shape[1]
            embeddings[index, :length] = encoding.embeddings[0]
            mask[index, :length] = 1
        return embeddings, mask, positions
