"""Save torch's random generator states in each checkpoint and restore them on ``--resume``.

mmengine 0.10.7 re-seeds on resume and replays the data loader up to the resumed iteration, but it saves no
generator state. Randomness drawn *in the training step* (dropout in a decode head, random point sampling in
Mask2Former, the online degradation of :class:`DegradationDataPreProcessor`) therefore restarts from the seed,
and a resumed run diverges from an uninterrupted one from its first iteration on.
"""
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

__all__ = ['RandomStateCheckpointHook']

META_KEY = 'random_state'


def _module_generators(model: torch.nn.Module) -> Dict[Tuple[str, str, Optional[str]], torch.Generator]:
    """Every ``torch.Generator`` a submodule holds as an attribute, or in a dict attribute with string keys.

    Keyed by ``(module name, attribute, dict key or None)``, e.g. ``('data_preprocessor', '_generators', 'cpu')``
    for the training generator of ``DegradationDataPreProcessor``.
    """
    found = {}
    for module_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if isinstance(value, torch.Generator):
                found[(module_name, attr, None)] = value
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(item, torch.Generator) and isinstance(key, str):
                        found[(module_name, attr, key)] = item
    return found


@HOOKS.register_module()
class RandomStateCheckpointHook(Hook):
    """Put the training step's random generator states into ``checkpoint['meta']`` and restore them on resume.

    Saved, per rank:

    - torch's global CPU generator and, when CUDA is initialised, every CUDA device's generator;
    - every ``torch.Generator`` held by a submodule of the model, directly or in a ``dict`` attribute with string
      keys (e.g. ``DegradationDataPreProcessor``'s training generator), with its device.

    All are stored as uint8 tensors, strings and lists, so checkpoints still load with
    ``torch.load(weights_only=True)``. They are restored just before the first training iteration after
    ``--resume`` (after mmengine has replayed the data loader), and only when the run continues from the
    checkpoint's iteration (``load_from`` of a checkpoint to start a new run restores nothing). A generator that
    a module creates lazily and has not created yet is created on its saved device and put in place.

    mmengine writes checkpoints from rank 0 only, so with several processes every rank's states are gathered
    after each training iteration (one small ``all_gather_object``) and rank 0 saves them all; on resume each rank
    restores its own (a run resumed with another number of processes restores nothing, with a warning).

    numpy's and Python's global generators are deliberately not saved: in mmseg they drive the data pipeline
    (random flips, crops, photometric distortion), whose draws mmengine reproduces by replaying the data loader
    on resume; restoring them as well would apply those draws twice.

    Args:
        restore: Restore the saved states on resume (set False to only save them).
    """

    priority = 'VERY_HIGH'

    def __init__(self, restore: bool = True) -> None:
        self.restore = restore
        self._pending: Optional[dict] = None
        self._pending_iter: Optional[int] = None
        self._gathered: Optional[List[dict]] = None

    @staticmethod
    def _model(runner) -> torch.nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _local_state(self, runner) -> dict:
        state = dict(torch_cpu=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['torch_cuda'] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
        state['module_generators'] = [
            dict(module=module, attr=attr, key=key, device=str(generator.device), state=generator.get_state().cpu())
            for (module, attr, key), generator in _module_generators(self._model(runner)).items()
        ]
        return state

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """With several processes, gather every rank's states (mmengine saves checkpoints on rank 0 only)."""
        if get_world_size() > 1:
            self._gathered = all_gather_object(self._local_state(runner))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Add ``meta['random_state'] = dict(world_size=W, ranks=[state of rank 0, ...])``."""
        if get_world_size() > 1:
            if self._gathered is None:  # saved before the first iteration: nothing drawn yet
                return
            ranks = self._gathered
        else:
            ranks = [self._local_state(runner)]
        checkpoint.setdefault('meta', {})[META_KEY] = dict(world_size=len(ranks), ranks=ranks)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Remember the saved states; they are applied at the first training iteration of a resumed run."""
        meta = checkpoint.get('meta') or {}
        self._pending = meta.get(META_KEY) if self.restore else None
        self._pending_iter = meta.get('iter')

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        """Restore the saved states when this iteration continues the loaded checkpoint's run."""
        if self._pending is None:
            return
        saved, self._pending = self._pending, None
        if runner.iter != self._pending_iter:
            return  # a checkpoint loaded with load_from to start a new run: nothing to continue
        if saved['world_size'] != get_world_size():
            print_log(f'random states saved by {saved["world_size"]} processes are not restored in a run of '
                      f'{get_world_size()}: the resumed run will not repeat the interrupted one exactly',
                      logger='current', level=30)
            return
        self._apply(runner, saved['ranks'][get_rank()])

    def _apply(self, runner, state: dict) -> None:
        torch.set_rng_state(state['torch_cpu'].cpu())
        cuda_states = state.get('torch_cuda')
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
        model = self._model(runner)
        current = _module_generators(model)
        for saved in state.get('module_generators', []):
            where = (saved['module'], saved['attr'], saved['key'])
            generator = current.get(where)
            if generator is None and saved['key'] is not None:
                generator = self._create(model, *where, device=saved['device'])
            if generator is not None:
                generator.set_state(saved['state'].cpu())

    @staticmethod
    def _create(model: torch.nn.Module, module_name: str, attr: str, key: str,
                device: str) -> Optional[torch.Generator]:
        """Create the generator ``module.attr[key]`` that its module makes lazily and has not made yet."""
        try:
            holder = vars(model.get_submodule(module_name)).get(attr)
        except AttributeError:
            holder = None
        if not isinstance(holder, dict):
            return None
        try:
            generator = torch.Generator(device=torch.device(device))
        except RuntimeError:  # e.g. a CUDA generator on a machine without CUDA
            print_log(f'random state of {module_name}.{attr}[{key!r}] (device {device}) is not restored: no such '
                      'device here', logger='current', level=30)
            return None
        holder[key] = generator
        return generator
