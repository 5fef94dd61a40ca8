"""mmengine's ``Runner``, built only after every local input path of the config was found.

mmseg's ``tools/train.py`` builds ``RUNNERS.build(cfg)`` when the config sets ``runner_type`` (this package's
``configs/_base_/default_runtime.py`` sets ``runner_type = 'InputCheckingRunner'``); mmengine's ``Runner`` logs
the whole config and builds the model before any dataset is read, so a missing dataset or Stable Diffusion folder
surfaces after the config dump, in a long traceback, one path at a time.
"""
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from .input_paths import TRAINING_DATALOADERS, check_input_paths

__all__ = ['InputCheckingRunner']


@RUNNERS.register_module()
class InputCheckingRunner(Runner):
    """A ``Runner`` whose :meth:`from_cfg` first checks the inputs a training run reads.

    The Stable Diffusion folder, adapters, checkpoints (``load_from`` included) and the data of ``train_dataloader``
    and ``val_dataloader`` (see :func:`~rass_mmseg.engine.runners.input_paths.missing_input_paths`) are checked before
    anything is logged or built; every missing one is named in one ``FileNotFoundError`` with the docs page that says
    how to get it. Everything else is mmengine's ``Runner``.

    mmseg 1.2.2's ``tools/test.py`` calls ``Runner.from_cfg`` itself and so builds mmengine's ``Runner`` even when the
    config names this one; this repository's ``tools/test.py`` (``rass_mmseg.utils.run_mmseg_tool``) checks a test
    run's inputs with ``check_input_paths(cfg, dataloaders=['test_dataloader'])`` before that.
    """

    @classmethod
    def from_cfg(cls, cfg) -> 'InputCheckingRunner':
        """Check the inputs of a training run, then build the runner as mmengine does."""
        check_input_paths(cfg, TRAINING_DATALOADERS)
        return super().from_cfg(cfg)
