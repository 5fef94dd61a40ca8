"""The image-tag recognition decoder of RAM (Recognize Anything, arXiv 2306.03514), the Query2Label design.

One learned query per tag (``label_embed``, projected to the decoder width and passed through a ReLU) attends to the
image tokens; each layer is a BERT layer without self-attention: cross-attention (queries from the labels, keys and
values from the image tokens, which are ``encoder_width`` wide), then BERT's feed-forward block, each with its
residual LayerNorm. A linear layer turns each tag's output into one logit. Built from transformers' BERT modules.
"""
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertAttention, BertIntermediate, BertOutput

__all__ = ['RAMTaggingHead']


class CrossAttentionLayer(nn.Module):
    """A BERT layer in RAM's ``'tagging'`` mode: cross-attention to the image tokens, then the feed-forward block.

    Args:
        config: BERT config (hidden size, heads, intermediate size, activation, LayerNorm eps).
        encoder_width: Width of the image tokens (keys and values are projected from it).
    """

    def __init__(self, config: BertConfig, encoder_width: int) -> None:
        super().__init__()
        self.crossattention = BertAttention(config, is_cross_attention=True)
        # transformers projects keys and values from hidden_size; RAM's image tokens are encoder_width wide
        self.crossattention.self.key = nn.Linear(encoder_width, config.hidden_size)
        self.crossattention.self.value = nn.Linear(encoder_width, config.hidden_size)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, queries: Tensor, image_embeds: Tensor) -> Tensor:
        attended, _ = self.crossattention(queries, encoder_hidden_states=image_embeds)
        return self.output(self.intermediate(attended), attended)


class RAMTaggingHead(nn.Module):
    """Tag logits from image tokens: label queries cross-attending to the image, one logit per tag.

    Args:
        num_tags: Number of tags (rows of ``label_embed``).
        label_dim: Width of the label embeddings and of the image tokens (RAM: 512).
        hidden_size: Decoder width (RAM: 768).
        num_heads: Attention heads (RAM: 4).
        intermediate_size: Feed-forward width (RAM: 3072).
        num_layers: Decoder layers (RAM: 2).
        hidden_act: Feed-forward activation, a transformers ``ACT2FN`` name (RAM: ``'gelu'``, the exact GELU).
        layer_norm_eps: LayerNorm epsilon (RAM: 1e-12).
    """

    def __init__(self, num_tags: int, label_dim: int = 512, hidden_size: int = 768, num_heads: int = 4,
                 intermediate_size: int = 3072, num_layers: int = 2, hidden_act: str = 'gelu',
                 layer_norm_eps: float = 1e-12) -> None:
        super().__init__()
        config = BertConfig(hidden_size=hidden_size, num_attention_heads=num_heads,
                            intermediate_size=intermediate_size, hidden_act=hidden_act, layer_norm_eps=layer_norm_eps,
                            attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0)
        config._attn_implementation = 'eager'  # softmax(q k^T / sqrt(d)) v, as the public code computes it
        self.label_embed = nn.Parameter(torch.zeros(num_tags, label_dim))
        # the public code projects only when the decoder is wider than the 512-wide label embeddings
        self.wordvec_proj = nn.Identity() if hidden_size == label_dim else nn.Linear(label_dim, hidden_size)
        self.layers = nn.ModuleList(CrossAttentionLayer(config, label_dim) for _ in range(num_layers))
        self.fc = nn.Linear(hidden_size, 1)

    @property
    def num_tags(self) -> int:
        return self.label_embed.shape[0]

    def forward(self, image_embeds: Tensor) -> Tensor:
        """Tag logits.

        Args:
            image_embeds: (N, L, label_dim) image tokens (RAM: the pooled token first, then the Swin tokens).

        Returns:
            (N, num_tags) logits.
        """
        queries = F.relu(self.wordvec_proj(self.label_embed))
        queries = queries.unsqueeze(0).expand(image_embeds.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, image_embeds)
        return self.fc(queries).squeeze(-1)

