"""A distributed wrapper for models that update with several optimizers in one training step (SCR with VSD)."""
from mmengine.model import MMDistributedDataParallel
from mmseg.registry import MODEL_WRAPPERS

__all__ = ['TwoStepDistributedDataParallel']


@MODEL_WRAPPERS.register_module()
class TwoStepDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose ``train_step`` is the model's own, run through this wrapper.

    mmengine's wrapper runs one forward and one update with one optimizer. A model with an ``OptimWrapperDict``
    (``SemanticConstrainedRestorer`` with VSD: restorer, then regulariser) implements ``train_step(data,
    optim_wrapper, forward)``; this wrapper passes itself as ``forward``, so every forward of the step goes
    through DDP and its gradients are synchronised (the regulariser's forward takes the restorer's latents of the
    same step as its input). Each step leaves some trainable parameters unused, so build it with
    ``find_unused_parameters=True``.
    """

    def train_step(self, data, optim_wrapper):
        """The model's training step, with this wrapper as its forward."""
        return self.module.train_step(data, optim_wrapper, forward=self)
