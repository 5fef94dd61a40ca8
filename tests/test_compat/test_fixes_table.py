"""rass_mmseg.compat installs each stack fix exactly where its condition holds."""
import importlib.metadata
import sys

import mmcv
import mmengine
import mmseg
from mmengine.dist import utils as dist_utils
from mmseg.apis import MMSegInferencer

from rass_mmseg import compat
from rass_mmseg.compat import cpu_distributed, mmagic_imports, mmseg_inferencer


def test_every_fix_whose_condition_holds_is_installed_and_in_effect():
    expected = [name for name, fix in compat.FIXES.items() if fix.needed()]
    assert compat.installed_fixes() == expected
    # the pinned stack (mmengine 0.10.7, mmseg 1.2.2, mmcv 2.1.0 with ops, mmagic 1.2.0) needs all of them
    assert mmengine.__version__ == '0.10.7' and mmseg.__version__ == '1.2.2' and mmcv.__version__ == '2.1.0'
    assert importlib.metadata.version('mmagic') == '1.2.0'
    assert expected == list(compat.FIXES)
    assert dist_utils._init_dist_pytorch is cpu_distributed._init_dist_pytorch
    assert MMSegInferencer._init_pipeline is mmseg_inferencer._init_pipeline
    assert any(isinstance(finder, mmagic_imports.MmagicImportFinder) for finder in sys.meta_path)


def test_versions_above_the_checked_range_get_the_upstream_code(monkeypatch):
    monkeypatch.setattr(mmseg, '__version__', '1.3.0')
    monkeypatch.setattr(mmengine, '__version__', '0.10.8')
    monkeypatch.setattr(mmcv, '__version__', '2.2.1')
    assert not compat.FIXES['mmseg_inferencer'].needed()
    assert not compat.FIXES['cpu_distributed'].needed()
    assert not compat.FIXES['ms_deform_attn'].needed()
    assert compat.FIXES['checkpoint_loading'].needed()  # the no-code-from-files policy holds for every version
    monkeypatch.setattr(mmseg, '__version__', '1.2.2')
    assert compat.FIXES['mmseg_inferencer'].needed()


def test_the_mmagic_fix_follows_the_installed_version_read_without_importing_mmagic(monkeypatch):
    installed = {'mmagic': '1.2.1'}

    def version(distribution: str) -> str:
        if distribution not in installed:
            raise importlib.metadata.PackageNotFoundError(distribution)
        return installed[distribution]

    monkeypatch.setattr(importlib.metadata, 'version', version)
    assert not compat.FIXES['mmagic_imports'].needed()
    installed['mmagic'] = '1.2.0'
    assert compat.FIXES['mmagic_imports'].needed()
    del installed['mmagic']  # mmagic not installed: nothing to fix
    assert not compat.FIXES['mmagic_imports'].needed()
