"""The ``rass_mmseg`` scope: configs inherit ours as ``_base_ = ['rass_mmseg::rass/<config>.py']``.

mmengine resolves ``'<package>::<path>'`` bases (``Config._get_cfg_path``) only for the packages named in its
``MODULE2PACKAGE`` table, to ``<installed package>/.mim/configs/<path>`` (``setup.py`` ships ``configs/`` there:
copied into a wheel, linked in an editable install). Importing this module (``import rass_mmseg`` does):

- adds ``rass_mmseg`` to that table. mmengine reads a config's ``_base_`` before its ``custom_imports``, so the
  process must import ``rass_mmseg`` before it reads a config that names ``rass_mmseg::`` (``tools/train.py``,
  ``tools/test.py`` and the demos do); mmseg's own scripts alone stop at mmengine's
  ``AssertionError: mmengine does not support to load rass_mmseg config``.
- makes mmengine look the configs up in the copy of ``rass_mmseg`` this process imported. mmengine's
  ``get_installed_path`` returns ``site-packages/rass_mmseg``, which does not exist, for an editable install
  (pip's editable wheels map the package to the checkout with an import hook); other packages keep mmengine's
  lookup. A copy without ``.mim/configs`` (a checkout on ``PYTHONPATH`` that was never pip-installed) gets a
  one-line error saying how to install it.
- gives each of mmengine's registry trees a child of mmseg's registry for the scope ``rass_mmseg``: mmengine stamps
  ``_scope_='rass_mmseg'`` on every dict with a ``type`` of a config inherited as ``rass_mmseg::`` and builds it in
  that scope. Our components register in mmseg's registries; these children are empty and look every name up in
  mmseg's registry and its parents, so a ``rass_mmseg``-scoped dict builds exactly as an ``mmseg``-scoped one.
  Nothing should register in them (the table is private).
"""
import os.path as osp
from typing import Dict

import mmengine.config.config as mmengine_config
import mmengine.registry as mmengine_registry
import mmseg.registry  # noqa: F401  (mmseg's children of mmengine's registries)
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.registry import Registry

__all__ = ['SCOPE', 'installed_configs_dir']

#: The scope and the package (import name and pip name) of this plugin.
SCOPE = 'rass_mmseg'
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def installed_configs_dir() -> str:
    """The ``.mim/configs`` folder of the imported ``rass_mmseg`` (which ``rass_mmseg::<path>`` resolves into)."""
    return osp.join(PACKAGE_DIR, '.mim', 'configs')


_mmengine_get_installed_path = mmengine_config.get_installed_path


def _get_installed_path(package: str) -> str:
    """mmengine's ``get_installed_path``, except that ``rass_mmseg`` is the imported copy's folder."""
    if package != SCOPE:
        return _mmengine_get_installed_path(package)
    if not osp.isdir(installed_configs_dir()):
        raise FileNotFoundError(f'{installed_configs_dir()} does not exist: rass_mmseg:: configs come with an '
                                f'installed rass_mmseg; run `pip install -e {osp.dirname(PACKAGE_DIR)}` '
                                '(tools/install.sh does) or `pip install` the package')
    return PACKAGE_DIR


def _scope_registries() -> Dict[str, Registry]:
    """A child (scope ``rass_mmseg``) of mmseg's registry in each of mmengine's registry trees (of the root where
    mmseg has none, e.g. ``function``), keyed by the registry's name."""
    children = {}
    for root in vars(mmengine_registry).values():
        if not isinstance(root, Registry) or root.parent is not None or root.name in children:
            continue
        parent = root.children.get('mmseg', root)
        # the child imports the modules its ancestors import lazily (mmseg's IoUMetric, say) before a look-up
        ancestors = [parent] if parent is root else [parent, root]
        locations = ['rass_mmseg'] + [location for ancestor in ancestors for location in ancestor._locations]
        child = parent.children.get(SCOPE)  # (an empty Registry is falsy: no `or` here)
        if child is None:
            child = Registry(root.name, parent=parent, scope=SCOPE, locations=list(dict.fromkeys(locations)))
        children[root.name] = child
    return children


MODULE2PACKAGE.setdefault(SCOPE, SCOPE)
mmengine_config.get_installed_path = _get_installed_path
_SCOPE_REGISTRIES = _scope_registries()
