"""Checkpoints named by a URL or a model-zoo scheme load with the same weights-only unpickler as local files.

mmengine 0.10.7 loads ``http://`` and ``https://`` checkpoints, and the ``torchvision://`` / ``modelzoo://``,
``open-mmlab://`` / ``openmmlab://`` and ``mmcls://`` names it maps to URLs, through
``torch.hub.load_state_dict_from_url``, which unpickles with ``weights_only=False``: a file at a URL (or one put in
torch's hub cache) runs its code. Its ``pavi://`` and ``s3://`` / ``petrel://`` loaders call ``torch.load``
without the allowlist, so stock mmengine checkpoints stored there are refused under torch >= 2.6.

Each loader here only fetches the file and hands it to
:func:`~rass_mmseg.compat.checkpoint_loading.load_from_local_weights_only`:

- a URL is downloaded, unread, to where ``torch.hub`` caches it (``model_dir``, by default
  ``$TORCH_HOME/hub/checkpoints/<file name>``; a cached file is not downloaded again), by rank 0 first and by the
  other ranks after a barrier, as mmengine does; a legacy one-file zip is extracted next to it, as ``torch.hub``
  does;
- the model-zoo names are resolved with mmengine's own tables (``mmengine/hub/*.json``, ``open_mmlab.json`` in
  ``$MMENGINE_HOME``, torchvision's weights), and ``mmcls://`` keeps the ``backbone.`` weights without the prefix;
- ``pavi://`` and ``s3://`` files are copied into a temporary folder first.

:func:`~rass_mmseg.compat.checkpoint_loading.install` registers them in place of mmengine's loaders.
"""
import logging
import os
import os.path as osp
import tempfile
import zipfile
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import urlparse

import torch
from mmengine.dist import get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint

from .checkpoint_loading import load_from_local_weights_only

__all__ = ['REMOTE_LOADERS', 'download_to_cache', 'load_from_ceph_weights_only', 'load_from_http_weights_only',
           'load_from_mmcls_weights_only', 'load_from_openmmlab_weights_only', 'load_from_pavi_weights_only',
           'load_from_torchvision_weights_only']


def _single_member_zip(path: str) -> Optional[zipfile.ZipInfo]:
    """The one file of a zip holding exactly one file (``torch.hub``'s legacy format), else None."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    return members[0] if len(members) == 1 and not members[0].is_dir() else None


def download_to_cache(url: str, model_dir: Optional[str] = None, progress: bool = True) -> str:
    """The local file ``torch.hub.load_state_dict_from_url`` would load for ``url``; nothing is unpickled.

    Args:
        url: An ``http://`` or ``https://`` URL.
        model_dir: The cache folder; ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``) when None.
        progress: Show a progress bar while downloading.

    Returns:
        The cached file (downloaded first when absent), or the file a legacy one-file zip holds, extracted next to
        it.
    """
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        print_log(f'Downloading {url} to {cached}', logger='current')
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    member = _single_member_zip(cached)
    if member is None:
        return cached
    extracted = osp.realpath(osp.join(model_dir, member.filename))
    if not extracted.startswith(osp.realpath(model_dir) + os.sep):
        raise ValueError(f'{cached} ({url}): its zipped file {member.filename!r} lies outside {model_dir}')
    with zipfile.ZipFile(cached) as archive:
        archive.extract(member, model_dir)
    return extracted


def load_from_http_weights_only(filename: str, map_location: Optional[Any] = None, model_dir: Optional[str] = None,
                                progress: bool = os.isatty(0)) -> Any:
    """Load an ``http(s)://`` checkpoint: downloaded to the hub cache (rank 0 first), then loaded weights-only.

    Args:
        filename: The URL.
        map_location: As ``torch.load``'s.
        model_dir: The cache folder (see :func:`download_to_cache`).
        progress: Show a progress bar while downloading.
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        cached = download_to_cache(filename, model_dir, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached = download_to_cache(filename, model_dir, progress)
    return load_from_local_weights_only(cached, map_location, source=filename)


def _model_url(filename: str, name: str, urls: Dict[str, str], table: str) -> str:
    if name not in urls:
        raise KeyError(f'{filename}: {table} has no model named {name!r}')
    return urls[name]


def load_from_torchvision_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """Load ``torchvision://NAME`` (or the deprecated ``modelzoo://NAME``) from torchvision's URL for NAME."""
    scheme, name = filename.split('://', 1)
    if scheme == 'modelzoo':
        print_log('The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" instead',
                  logger='current', level=logging.WARNING)
    url = _model_url(filename, name, mmengine_checkpoint.get_torchvision_models(), "torchvision's model weights")
    return load_from_http_weights_only(url, map_location=map_location)


def load_from_openmmlab_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """Load ``open-mmlab://NAME`` (or ``openmmlab://NAME``): a URL, or a file under ``$MMENGINE_HOME``."""
    scheme, name = filename.split('://', 1)
    deprecated = mmengine_checkpoint.get_deprecated_model_names()
    if name in deprecated:
        print_log(f'{scheme}://{name} is deprecated in favor of {scheme}://{deprecated[name]}', logger='current',
                  level=logging.WARNING)
        name = deprecated[name]
    url = _model_url(filename, name, mmengine_checkpoint.get_external_models(), "mmengine's open-mmlab model table")
    if url.startswith(('http://', 'https://')):
        return load_from_http_weights_only(url, map_location=map_location)
    local = osp.join(mmengine_checkpoint._get_mmengine_home(), url)
    return load_from_local_weights_only(local, map_location, source=filename)


def load_from_mmcls_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """Load ``mmcls://NAME``: its ``backbone.*`` weights, without the prefix, as ``{'state_dict': ...}``."""
    name = filename.split('://', 1)[1]
    url = _model_url(filename, name, mmengine_checkpoint.get_mmcls_models(), "mmengine's mmcls model table")
    checkpoint = load_from_http_weights_only(url, map_location=map_location)
    state = checkpoint.get('state_dict', checkpoint)
    prefix = 'backbone.'
    return dict(state_dict=OrderedDict((key[len(prefix):], value) for key, value in state.items()
                                       if key.startswith(prefix)))


def load_from_pavi_weights_only(filename: str, map_location: Optional[Any] = None) -> Any:
    """Load ``pavi://PATH`` from pavi's model cloud (each rank downloads to its own temporary folder)."""
    try:
        from pavi import modelcloud
    except ImportError:
        raise ImportError(f'{filename}: install pavi to load checkpoints from its model cloud') from None
    model = modelcloud.get(filename[len('pavi://'):])
    with tempfile.TemporaryDirectory() as folder:
        local = osp.join(folder, model.name)
        model.download(local)
        return load_from_local_weights_only(local, map_location, source=filename)


def load_from_ceph_weights_only(filename: str, map_location: Optional[Any] = None, backend: str = 'petrel') -> Any:
    """Load ``s3://`` / ``petrel://`` (optionally ``NAME:s3://``) through mmengine's file backend."""
    data = get_file_backend(filename, backend_args={'backend': backend}).get(filename)
    with tempfile.TemporaryDirectory() as folder:
        local = osp.join(folder, osp.basename(urlparse(filename).path) or 'checkpoint.pth')
        with open(local, 'wb') as file:
            file.write(data)
        return load_from_local_weights_only(local, map_location, source=filename)


#: The scheme prefixes of mmengine 0.10.7's remote loaders, and the loader here that replaces each.
REMOTE_LOADERS: List[Tuple[Tuple[str, ...], Callable]] = [
    (('http://', 'https://'), load_from_http_weights_only),
    (('modelzoo://', 'torchvision://'), load_from_torchvision_weights_only),
    (('open-mmlab://', 'openmmlab://'), load_from_openmmlab_weights_only),
    (('mmcls://', ), load_from_mmcls_weights_only),
    (('pavi://', ), load_from_pavi_weights_only),
    ((r'(\S+\:)?s3://', r'(\S+\:)?petrel://'), load_from_ceph_weights_only),
]
