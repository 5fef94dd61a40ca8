"""Encode prompts of any length with a CLIP text encoder, never truncating.

CLIP's text encoder sees at most ``model_max_length`` tokens (77). A prompt made of phrases (e.g. the
150 ADE20K class names) is packed greedily, phrase by phrase, into windows of ``model_max_length - 2``
tokens; each window gets its own start/end tokens and padding, is encoded separately, and the hidden
states of all windows are concatenated along the sequence axis. Cross-attention accepts any sequence
length, so the UNet attends to every phrase. A phrase longer than one window is split across windows.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ['PromptEncoding', 'encode_phrases', 'pack_phrases']


@dataclass
class PromptEncoding:
    """Text embeddings of a prompt and where each phrase's tokens sit in them.

    Attributes:
        embeddings: Hidden states, shape (1, num_windows * model_max_length, hidden_size).
        phrase_token_positions: For each phrase, the sequence indices (into ``embeddings``) of its
            tokens; start, end, separator and padding tokens belong to no phrase.
        num_windows: How many encoder windows the prompt needed.
    """
    embeddings: Tensor
    phrase_token_positions: List[List[int]]
    num_windows: int


def pack_phrases(phrases: Sequence[str], tokenizer, separator: str = ',') -> Tuple[List[List[int]], List[List[int]]]:
    """The token ids of ``separator``-joined phrases, packed into encoder windows as :func:`encode_phrases` does.

    Args:
        phrases: Non-empty texts, e.g. class names or one fixed prompt.
        tokenizer: A CLIP tokenizer (transformers) with ``model_max_length`` set to the encoder's context.
        separator: Text put between two phrases of the same window.

    Returns:
        ``(input_ids, positions)``: one list of ``model_max_length`` ids per window (start, tokens, end,
        padding), and for each phrase the indices of its tokens in the windows laid end to end.
    """
    if isinstance(phrases, str) or not phrases or any(not isinstance(p, str) for p in phrases):
        raise ValueError(f'prompt phrases must be a non-empty list of strings, got {phrases!r}')
    max_len = int(tokenizer.model_max_length)
    if max_len < 3:
        raise ValueError(f'tokenizer.model_max_length must be >= 3, got {max_len}')
    width = max_len - 2
    sep_ids = tokenizer(separator, add_special_tokens=False)['input_ids'] if separator else []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    windows: List[List[int]] = [[]]
    owners: List[List[int]] = [[]]  # phrase index of each token in a window, -1 for separators
    for index, phrase in enumerate(phrases):
        ids = tokenizer(phrase, add_special_tokens=False)['input_ids']
        lead = sep_ids if windows[-1] else []
        if windows[-1] and len(windows[-1]) + len(lead) + len(ids) > width:
            windows.append([])
            owners.append([])
            lead = []
        windows[-1] += lead
        owners[-1] += [-1] * len(lead)
        for token in ids:
            if len(windows[-1]) == width:
                windows.append([])
                owners.append([])
            windows[-1].append(token)
            owners[-1].append(index)

    input_ids = [[tokenizer.bos_token_id] + w + [tokenizer.eos_token_id] + [pad_id] * (width - len(w))
                 for w in windows]
    positions: List[List[int]] = [[] for _ in phrases]
    for w, window_owners in enumerate(owners):
        for offset, owner in enumerate(window_owners):
            if owner >= 0:
                positions[owner].append(w * max_len + 1 + offset)
    return input_ids, positions


@torch.no_grad()
def encode_phrases(phrases: Sequence[str], tokenizer, text_encoder: nn.Module, separator: str = ',') -> PromptEncoding:
    """Encode ``separator``-joined phrases in as many encoder windows as needed (packed by :func:`pack_phrases`).

    Args:
        phrases: Non-empty texts, e.g. class names or one fixed prompt.
        tokenizer: A CLIP tokenizer (transformers) with ``model_max_length`` set to the encoder's context.
        text_encoder: ``transformers.CLIPTextModel``; its ``last_hidden_state`` is used.
        separator: Text put between two phrases of the same window.
    """
    input_ids, positions = pack_phrases(phrases, tokenizer, separator)
    device = next(text_encoder.parameters()).device
    hidden = text_encoder(torch.tensor(input_ids, device=device))[0]
    return PromptEncoding(hidden.reshape(1, -1, hidden.shape[-1]), positions, len(input_ids))
