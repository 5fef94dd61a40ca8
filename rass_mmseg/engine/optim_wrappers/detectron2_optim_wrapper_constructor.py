"""Parameter groups as detectron2's Mask2Former builds them, which the public RASS code trains with.

mmengine's ``DefaultOptimWrapperConstructor`` applies either a ``custom_keys`` rule *or* its norm rule to a
parameter: a GroupNorm inside the backbone or the projection gets the backbone's learning-rate multiplier but keeps
the full weight decay. detectron2's Mask2Former (``build_optimizer`` of its train_net.py) applies the rules
independently: the learning rate is multiplied for parameters of modules whose name contains ``backbone``, and the
weight decay is ``WEIGHT_DECAY_NORM`` (0) for every normalisation layer and ``WEIGHT_DECAY_EMBED`` (0) for every
``nn.Embedding`` (Mask2Former's query and level embeddings), wherever they sit.
"""
from typing import Dict, List

from mmengine.optim import DefaultOptimWrapperConstructor
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = ['Detectron2OptimWrapperConstructor', 'NORM_TYPES']

#: What detectron2 counts as a normalisation layer.
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
              nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class Detectron2OptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """One parameter group per trainable parameter, with detectron2's independent lr and decay rules.

    ``paramwise_cfg`` keys (all optional):

    - ``lr_mults``: ``{substring: multiplier}``; a parameter whose full name contains the substring gets
      ``lr * multiplier`` (the longest matching substring wins), e.g. ``dict(backbone=0.1, neck=0.1)``.
    - ``norm_decay_mult``: weight-decay multiplier of normalisation layers (detectron2's default: 0).
    - ``embedding_decay_mult``: weight-decay multiplier of ``nn.Embedding`` weights (detectron2's default: 0).

    Args:
        optim_wrapper_cfg: The ``optim_wrapper`` config (mmengine's).
        paramwise_cfg: The options above.
    """

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs) -> None:
        """Append one group per trainable parameter of ``module`` to ``params``."""
        lr_mults: Dict[str, float] = dict(self.paramwise_cfg.get('lr_mults', {}))
        keys = sorted(lr_mults, key=len, reverse=True)
        norm_decay = self.paramwise_cfg.get('norm_decay_mult', 0.0)
        embedding_decay = self.paramwise_cfg.get('embedding_decay_mult', 0.0)
        for module_name, child in module.named_modules(prefix=prefix.rstrip('.')):
            for name, param in child.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                full_name = f'{module_name}.{name}' if module_name else name
                group = {'params': [param], 'lr': self.base_lr}
                key = next((k for k in keys if k in full_name), None)
                if key is not None:
                    group['lr'] = self.base_lr * lr_mults[key]
                if self.base_wd is not None:
                    decay = self.base_wd
                    if isinstance(child, NORM_TYPES):
                        decay = self.base_wd * norm_decay
                    elif isinstance(child, nn.Embedding):
                        decay = self.base_wd * embedding_decay
                    group['weight_decay'] = decay
                params.append(group)
