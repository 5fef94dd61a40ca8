"""rass_mmseg.compat.mmagic_imports: mmagic 1.2.0's metrics and degradation transforms import with the pinned stack,
without changing numpy before mmagic is imported, nor mmseg's registries, models or our configs after."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mmengine.registry import DefaultScope

from rass_mmseg.compat import mmagic_imports
from tests.utils import REPO

# Run in a fresh interpreter: this process imported mmagic long ago (through other tests).
FRESH_PROCESS = textwrap.dedent('''
    import json, sys
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, Registry, init_default_scope

    import rass_mmseg  # installs the fix
    import mmdet.registry, mmengine.registry, mmseg.registry
    from mmseg.registry import METRICS, MODELS, TRANSFORMS
    from rass_mmseg.models.utils.sd_components import without_weights

    def registries():
        snapshot = {}
        for module in (mmengine.registry, mmseg.registry, mmdet.registry):
            for name, registry in sorted(vars(module).items()):
                if isinstance(registry, Registry):
                    snapshot[f'{module.__name__}.{name}'] = dict(
                        modules={key: f'{value.__module__}.{value.__qualname__}'
                                 for key, value in registry.module_dict.items()},
                        children=sorted(registry._children), root=registry.parent is None)
        return snapshot

    def built(config):
        cfg = Config.fromfile(config)
        if 'sd21_base_vae' in cfg:
            without_weights(cfg.model, cfg.sd21_base_vae, cfg.sd21_base_unet, cfg.sd21_base_text_encoder)
        with torch.device('meta'):
            model = MODELS.build(cfg.model)
        return dict(
            model=[(name, type(module).__module__ + '.' + type(module).__qualname__) for name, module in
                   model.named_modules()],
            parameters=[(name, list(parameter.shape), parameter.requires_grad) for name, parameter in
                        model.named_parameters()],
            evaluator=type(METRICS.build(cfg.val_evaluator)).__qualname__,
            pipeline=[type(TRANSFORMS.build(step)).__qualname__ for step in cfg.test_pipeline])

    configs = sys.argv[1:]
    init_default_scope('mmseg')  # as tools/train.py does
    before = dict(configs=[built(config) for config in configs])  # first: building imports mmseg's modules lazily
    before.update(bool8='bool8' in np.__dict__, scope=DefaultScope.get_current_instance().scope_name,
                  registries=registries())
    from mmagic.datasets.transforms import random_degradations
    from mmagic.evaluation.metrics import niqe, psnr, ssim
    after = dict(bool8=np.__dict__.get('bool8') is np.bool_, scope=DefaultScope.get_current_instance().scope_name,
                 registries=registries())
    after.update(configs=[built(config) for config in configs])
    print(json.dumps(dict(before=before, after=after)))
''')

CONFIGS = [os.path.join(REPO, 'configs', *parts) for parts in (
    ('scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py'),
    ('rass', 'rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py'),
    ('examples', 'segformer_rass-sd21-base_8xb2-160k_ade20k-512x512.py'),  # mmseg's SegFormer config, by mmseg::
)]


def run_fresh(script: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable, '-c', script, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_mmagic_imports_and_leaves_numpy_mmseg_and_our_configs_as_they_were():
    process = run_fresh(FRESH_PROCESS, *CONFIGS)
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.splitlines()[-1])
    before, after = result['before'], result['after']
    assert not before['bool8'] and after['bool8']  # np.bool8 only once mmagic is imported
    assert after['scope'] == before['scope']
    assert after['configs'] == before['configs']  # same modules, parameters, evaluator and pipeline classes
    assert [config['evaluator'] for config in before['configs']] == ['RestorationMetric', 'IoUMetric', 'IoUMetric']
    assert len(before['configs'][0]['parameters']) > 100
    for name, registry in before['registries'].items():
        assert after['registries'][name]['modules'] == registry['modules'], name  # nothing registered or replaced
        added = set(after['registries'][name]['children']) - set(registry['children'])
        # mmagic's own registries hang under mmengine's roots, in the 'mmagic' scope; nothing else gains a child
        assert added == ({'mmagic'} if registry['root'] and added else set()), (name, added)
    assert any(after['registries'][name]['children'] != registry['children']
               for name, registry in before['registries'].items())  # the comparison saw mmagic's registries


def test_without_the_fix_mmagic_does_not_import_with_the_pinned_stack():
    """The control: the fix is what makes the imports above work (mmagic is installed by tools/install)."""
    plain = run_fresh('import mmagic.evaluation.metrics')
    assert plain.returncode != 0 and "has no attribute 'bool8'" in plain.stderr
    with_bool8 = run_fresh('import numpy as np; np.bool8 = np.bool_; import mmagic.datasets.transforms')
    assert with_bool8.returncode != 0 and "No module named 'albumentations'" in with_bool8.stderr
    # and then mmagic.evaluation imports the model zoo (mmagic.models), which does not import with diffusers 0.42
    # (lpips and einops, mmagic requirements that only its GAN metrics and models import and this project does not
    # install, are stubbed to get that far)
    with_albumentations = run_fresh(
        'import sys, types, numpy as np; np.bool8 = np.bool_; '
        "sys.modules['albumentations'] = types.ModuleType('albumentations'); "
        "sys.modules['lpips'] = types.ModuleType('lpips'); "
        "einops = sys.modules['einops'] = types.ModuleType('einops'); einops.rearrange = einops.repeat = None; "
        'import mmagic.evaluation.metrics')
    assert with_albumentations.returncode != 0
    assert 'mmagic/evaluation/metrics/ppl.py' in with_albumentations.stderr
    assert "No module named 'diffusers.pipelines.paint_by_example'" in with_albumentations.stderr


@pytest.mark.parametrize('build, needs', [
    (lambda registry: registry.METRICS.build(dict(type='PerceptualPathLength', fake_nums=1, real_nums=1)),
     'diffusers.pipelines.paint_by_example'),
    (lambda registry: registry.METRICS.build(dict(type='PrecisionAndRecall', fake_nums=1)),
     'diffusers.pipelines.paint_by_example'),
    (lambda registry: registry.TRANSFORMS.build(dict(type='PairedAlbuTransForms', size=64)), 'albumentations'),
], ids=['PerceptualPathLength', 'PrecisionAndRecall', 'PairedAlbuTransForms'])
def test_stand_ins_refuse_to_build_in_one_line_naming_what_they_need(build, needs):
    from mmagic import registry
    from mmagic.datasets.transforms import albu_function
    from mmagic.evaluation.metrics import ppl
    assert 'stands in' in albu_function.PairedAlbuTransForms.__doc__ and ppl.__spec__.origin.endswith('mmagic_imports')
    with DefaultScope.overwrite_default_scope('mmagic'), pytest.raises(ImportError,
                                                                       match=f'{needs} was not found') as error:
        build(registry)
    assert '\n' not in str(error.value) and 'mmagic_imports' in str(error.value)


def test_a_stand_in_only_while_its_dependency_is_missing(monkeypatch):
    assert mmagic_imports.missing('no_such_package.module') and not mmagic_imports.missing('numpy.linalg')
    finder = mmagic_imports.MmagicImportFinder()
    name = 'mmagic.datasets.transforms.albu_function'
    assert finder.find_spec(name).origin == 'rass_mmseg.compat.mmagic_imports'
    monkeypatch.setattr(mmagic_imports, 'missing', lambda module: False)  # e.g. albumentations installed
    assert finder.find_spec(name) is None  # mmagic's own module is imported
    assert finder.find_spec('mmagic.datasets.transforms.random_degradations') is None
    assert finder.find_spec('albumentations') is None and finder.find_spec('numpy') is None


def test_installed_once_and_np_bool8_is_the_numpy_bool():
    assert sum(isinstance(finder, mmagic_imports.MmagicImportFinder) for finder in sys.meta_path) == 1
    mmagic_imports.install()
    assert sum(isinstance(finder, mmagic_imports.MmagicImportFinder) for finder in sys.meta_path) == 1
    import mmagic
    assert np.bool8 is np.bool_ and mmagic.__loader__ is not None
