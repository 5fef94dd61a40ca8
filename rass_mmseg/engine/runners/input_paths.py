"""Every local input path a config names, checked at once: the Stable Diffusion folder, adapters, checkpoints and
data roots, so that a run with several missing inputs stops with one message naming all of them, before the model
is built and before mmengine logs the config.

What is checked (relative paths from the working directory, as mmengine and diffusers read them; URLs and other
``scheme://`` names are left to their loaders):

- ``pretrained`` of a Stable Diffusion backbone (a diffusers folder with ``vae/``, ``unet/``, ``text_encoder/``,
  ``tokenizer/``) or of ``SCRHead`` (``vae/``); any other model's ``pretrained`` when it names a weights file;
- each folder or ``.safetensors`` file of ``merge_adapters`` (``adapter_config.json`` + ``adapter_model.safetensors``);
- ``init_cfg=dict(type='Pretrained', checkpoint=...)``, ``*_checkpoint`` keys, ``lpips_weights`` and ``load_from``;
- ``data_root``, each ``data_prefix`` folder and ``ann_file`` of the chosen dataloaders' datasets (through dataset
  wrappers: ``dataset``, ``datasets``), except datasets that generate their data on first use (``generate_cfg``).
"""
import os
import os.path as osp
from typing import Any, List, NamedTuple, Optional, Sequence

from mmseg.registry import MODELS

__all__ = ['MissingInput', 'TRAINING_DATALOADERS', 'check_input_paths', 'missing_input_paths']

#: The dataloaders a training run reads (validation only where ``val_cfg`` is set).
TRAINING_DATALOADERS = ('train_dataloader', 'val_dataloader')

SD_DOCS = 'docs/en/advanced_guides/checkpoints.md#weights-you-provide'
ADAPTER_DOCS = 'docs/en/advanced_guides/checkpoints.md#adapter-folders'
CHECKPOINT_DOCS = 'docs/en/advanced_guides/checkpoints.md'
DATA_DOCS = 'docs/en/user_guides/2_dataset_prepare.md'
WEIGHT_SUFFIXES = ('.pth', '.pt', '.ckpt', '.bin', '.safetensors')


class MissingInput(NamedTuple):
    """One missing input: the config key, the path as written, what is wrong and where the docs say how to get it."""
    key: str
    path: str
    problem: str
    docs: str

    def __str__(self) -> str:
        return f'{self.key}={self.path!r} ({self.problem}; see {self.docs})'


def _local(path: Any) -> bool:
    return isinstance(path, str) and path != '' and '://' not in path


def _registered(type_name: Any) -> Optional[type]:
    if isinstance(type_name, type):
        return type_name
    if not isinstance(type_name, str):
        return None
    try:
        return MODELS.get(type_name)
    except Exception:  # an unknown scope or type: the model build names it
        return None


def _check_sd_folder(key: str, path: str, subfolders: dict, found: List[MissingInput]) -> None:
    if not osp.isdir(path):
        found.append(MissingInput(key, path, 'no such folder; a local diffusers Stable Diffusion folder', SD_DOCS))
        return
    missing = [' or '.join(osp.join(sub, name) for name in names) for sub, names in subfolders.items()
               if not any(osp.isfile(osp.join(path, sub, name)) for name in names)]
    if missing:
        found.append(MissingInput(key, path, f'incomplete Stable Diffusion folder: missing {", ".join(missing)}',
                                  SD_DOCS))


def _check_adapter(key: str, path: Any, found: List[MissingInput]) -> None:
    from rass_mmseg.models.adapters.adapter_folder import ADAPTER_CONFIG, ADAPTER_WEIGHTS
    if not _local(path):
        return
    if path.endswith('.safetensors'):
        folder, files = osp.dirname(path), [osp.join(osp.dirname(path), ADAPTER_CONFIG), path]
    else:
        folder, files = path, [osp.join(path, ADAPTER_CONFIG), osp.join(path, ADAPTER_WEIGHTS)]
    if not osp.isdir(folder or '.'):
        found.append(MissingInput(key, path, 'no such adapter folder', ADAPTER_DOCS))
        return
    absent = [osp.basename(file) for file in files if not osp.isfile(file)]
    if absent:
        found.append(MissingInput(key, path, f'not an adapter folder: missing {", ".join(absent)}', ADAPTER_DOCS))


def _check_file(key: str, path: Any, what: str, docs: str, found: List[MissingInput]) -> None:
    if _local(path) and not osp.isfile(path):
        found.append(MissingInput(key, path, f'no such file; {what}', docs))


def _model_inputs(node: Any, key: str, found: List[MissingInput]) -> None:
    """Walk a model (or evaluator) config and collect its missing files."""
    if isinstance(node, (list, tuple)):
        for index, item in enumerate(node):
            _model_inputs(item, f'{key}.{index}', found)
        return
    if not isinstance(node, dict):
        return
    from rass_mmseg.models.backbones import StableDiffusionBackbone
    from rass_mmseg.models.heads import SCRHead
    from rass_mmseg.models.utils.sd_components import PIPELINE_SUBFOLDERS
    cls = _registered(node.get('type'))
    for name, value in node.items():
        child = f'{key}.{name}'
        if name == 'pretrained' and _local(value):
            if isinstance(cls, type) and issubclass(cls, StableDiffusionBackbone):
                _check_sd_folder(child, value, PIPELINE_SUBFOLDERS, found)
            elif isinstance(cls, type) and issubclass(cls, SCRHead):
                _check_sd_folder(child, value, {'vae': PIPELINE_SUBFOLDERS['vae']}, found)
            elif value.endswith(WEIGHT_SUFFIXES):
                _check_file(child, value, 'a checkpoint', CHECKPOINT_DOCS, found)
        elif name == 'merge_adapters' and isinstance(value, (list, tuple)):
            for index, path in enumerate(value):
                _check_adapter(f'{child}.{index}', path, found)
        elif name == 'checkpoint' and node.get('type') == 'Pretrained':
            _check_file(child, value, 'a checkpoint (init_cfg Pretrained)', CHECKPOINT_DOCS, found)
        elif name.endswith('_checkpoint'):
            _check_file(child, value, 'a checkpoint', CHECKPOINT_DOCS, found)
        elif name == 'lpips_weights':
            _check_file(child, value, 'LPIPS weights (tools/model_converters/convert_lpips_weights.py)',
                        CHECKPOINT_DOCS, found)
        else:
            _model_inputs(value, child, found)


def _join(root: Optional[str], path: str) -> str:
    return osp.join(root, path) if root and not osp.isabs(path) else path


def _dataset_inputs(dataset: Any, key: str, found: List[MissingInput]) -> None:
    """Collect the missing data folders and annotation files of a dataset config (and the datasets it wraps)."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('dataset'), dict):
        _dataset_inputs(dataset['dataset'], f'{key}.dataset', found)
    if isinstance(dataset.get('datasets'), (list, tuple)):
        for index, item in enumerate(dataset['datasets']):
            _dataset_inputs(item, f'{key}.datasets.{index}', found)
    if dataset.get('generate_cfg'):
        return  # written on first use
    root = dataset.get('data_root')
    if _local(root) and not osp.isdir(root):
        found.append(MissingInput(f'{key}.data_root', root, 'no such folder', DATA_DOCS))
        return
    root = root if _local(root) else None
    prefixes = dataset.get('data_prefix')
    for name, prefix in (prefixes.items() if isinstance(prefixes, dict) else ()):
        if isinstance(prefix, str) and (prefix or root):
            path = _join(root, prefix)
            if _local(path) and not osp.isdir(path):
                found.append(MissingInput(f'{key}.data_prefix.{name}', path, 'no such folder', DATA_DOCS))
    ann_file = dataset.get('ann_file')
    if _local(ann_file):
        path = _join(root, ann_file)
        if not osp.isfile(path):
            found.append(MissingInput(f'{key}.ann_file', path, 'no such file', DATA_DOCS))


def missing_input_paths(cfg: dict, dataloaders: Sequence[str] = TRAINING_DATALOADERS) -> List[MissingInput]:
    """The missing local inputs of a config.

    Args:
        cfg: A full config (``model``, dataloaders, ``load_from``).
        dataloaders: The dataloader keys whose datasets are checked; ``val_dataloader`` is skipped where
            ``val_cfg`` is None and ``test_dataloader`` where ``test_cfg`` is None, as mmengine builds no such loop.

    Returns:
        One :class:`MissingInput` per missing path, in config order (model, checkpoint, data).
    """
    found: List[MissingInput] = []
    _model_inputs(cfg.get('model'), 'model', found)
    _check_file('load_from', cfg.get('load_from'), 'a checkpoint', CHECKPOINT_DOCS, found)
    for name in dataloaders:
        loop = {'val_dataloader': 'val_cfg', 'test_dataloader': 'test_cfg'}.get(name)
        if loop is not None and cfg.get(loop) is None:
            continue
        loader = cfg.get(name)
        if isinstance(loader, dict):
            _dataset_inputs(loader.get('dataset'), f'{name}.dataset', found)
        evaluator = name.replace('_dataloader', '_evaluator')
        if loop is not None:
            _model_inputs(cfg.get(evaluator), evaluator, found)
    return found


def check_input_paths(cfg: dict, dataloaders: Sequence[str] = TRAINING_DATALOADERS) -> None:
    """Raise one ``FileNotFoundError`` naming every missing local input of ``cfg`` (see :func:`missing_input_paths`).

    Raises:
        FileNotFoundError: One line: each missing path with its config key, what is wrong and the docs page that
            says how to get it.
    """
    missing = missing_input_paths(cfg, dataloaders)
    if not missing:
        return
    source = getattr(cfg, 'filename', None)
    relative = any(not osp.isabs(item.path) for item in missing)
    raise FileNotFoundError(
        f'{len(missing)} input path{"s" if len(missing) > 1 else ""} of {source or "the config"} '
        f'{"are" if len(missing) > 1 else "is"} missing (checked before building the model): '
        + '; '.join(str(item) for item in missing)
        + (f'; relative paths are read from the working directory {os.getcwd()}' if relative else ''))
