"""Two optimizers for SCR with VSD: the restorer's trainable weights, and the VSD regulariser's adapter."""
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

__all__ = ['SCRVSDOptimWrapperConstructor']


class _ParameterSubset(nn.Module):
    """A module view that yields only some of another module's parameters (for mmengine's constructor)."""

    def __init__(self, params: dict) -> None:
        super().__init__()
        for index, (name, param) in enumerate(params.items()):
            self.register_parameter(f'p{index}', param)
        self.source_names = list(params)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SCRVSDOptimWrapperConstructor:
    """Builds ``OptimWrapperDict(generator=..., regularizer=...)`` from one ``optim_wrapper`` config.

    OSEDiff trains its restorer and the VSD regulariser with separate AdamW optimizers of the same settings, each with
    its own gradient clipping. The regulariser's parameters are those the model's backbone returns from
    ``regularizer_parameters()`` (:class:`~rass_mmseg.models.backbones.SCRBackbone` with ``regularizer``); the
    restorer's are all other trainable ones. Both wrappers here are built from the same config (``type``,
    ``optimizer``, ``clip_grad``...); ``regularizer=dict(...)`` in the config overrides keys of the regulariser's.

    Args:
        optim_wrapper_cfg: mmengine's ``optim_wrapper`` config (without ``constructor``).
        paramwise_cfg: Unused (no per-parameter rules); kept for mmengine's constructor interface.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None) -> None:
        cfg = dict(optim_wrapper_cfg)
        self.regularizer_overrides = dict(cfg.pop('regularizer', None) or {})
        self.cfg = cfg

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        """Split ``model``'s trainable parameters into the backbone's regulariser and the rest, one wrapper each."""
        model = model.module if hasattr(model, 'module') else model
        ask = getattr(getattr(model, 'backbone', None), 'regularizer_parameters', None)
        regularizer_ids = {id(param) for param in ask()} if ask is not None else set()
        if not regularizer_ids:
            raise ValueError('SCRVSDOptimWrapperConstructor: the model has no VSD regulariser parameters (set '
                             'model.backbone.regularizer and model.vsd_loss, or use the default constructor)')
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        regularizer = {n: p for n, p in trainable.items() if id(p) in regularizer_ids}
        generator = {n: p for n, p in trainable.items() if id(p) not in regularizer_ids}
        wrappers = {}
        for key, params, overrides in (('generator', generator, {}),
                                       ('regularizer', regularizer, self.regularizer_overrides)):
            cfg = {**self.cfg, **overrides}
            wrappers[key] = DefaultOptimWrapperConstructor(cfg)(_ParameterSubset(params))
        return OptimWrapperDict(**wrappers)
