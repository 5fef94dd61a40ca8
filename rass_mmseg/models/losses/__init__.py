from .cross_attention_alignment_loss import CrossAttentionAlignmentLoss

__all__ = ['CrossAttentionAlignmentLoss']
