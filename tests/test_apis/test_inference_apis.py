"""mmseg's inference APIs on every runnable (tiny) config, each with a random-init checkpoint saved without a Runner.

The call sequences are those of mmseg 1.x's ``demo/image_demo.py`` (``init_model``, ``revert_sync_batchnorm`` on
the CPU, ``inference_model``, ``show_result_pyplot(..., draw_gt=False, show=False, out_file=...)``) and
``demo/image_demo_with_inferencer.py`` (``MMSegInferencer(config, checkpoint)(img, out_dir=...)``); the mmseg wheel
does not ship the demo folder, so they are written out here. Full-size configs need Stable Diffusion or backbone
weights; their inference pipelines are checked in tests/test_compat/test_mmseg_inferencer.py.

SCR configs are restorers: their prediction is ``restored_img``, not a segmentation map. ``inference_model`` and
``MMSegInferencer(..., return_datasamples=True)`` (which also draws LQ | restored | clean into ``out_dir``) are
what applies to them; ``show_result_pyplot`` and the inferencer's label-map output are about segmentation maps.
"""
import glob
import os
import os.path as osp
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmseg.apis import MMSegInferencer, inference_model, init_model, show_result_pyplot
from PIL import Image

from rass_mmseg.datasets import generate_texture_dataset
from rass_mmseg.datasets.texture_generator import CLASSES, PALETTE
from tests.utils import REPO, needs_made_tiny_sd, repo_path

SIZE = 128
# Runnable without weights: the tiny configs, except those that need tools/misc/make_tiny_sd.py's trained SD folder.
ALL_TINY = sorted(path for folder in ('rass', 'scr', 'protocols')
                  for path in glob.glob(repo_path('configs', folder, '*.py')) if 'tiny' in osp.basename(path))
NEEDS_TRAINED_SD = {osp.basename(path): path for path in ALL_TINY if needs_made_tiny_sd(path)}
TINY = [path for path in ALL_TINY if not needs_made_tiny_sd(path)]
SEGMENTORS = [path for path in TINY if not osp.basename(path).startswith('scr_')]
RESTORERS = [path for path in TINY if osp.basename(path).startswith('scr_')]
# R2S configs load their sub-models' training checkpoints at construction; the random checkpoint holds both.
R2S_OPTIONS = {'model.restorer_checkpoint': None, 'model.segmentor_checkpoint': None}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def image(tmp_path_factory) -> str:
    """A 128x128 texture image of the embedded dataset's validation split."""
    root = tmp_path_factory.mktemp('textures') / 'data'
    generate_texture_dataset(root, seed=0, num_train=1, num_val=1, image_size=SIZE)
    return str(root / 'img_dir' / 'val' / '0000.png')


def options(path: str) -> dict:
    return R2S_OPTIONS if osp.basename(path).startswith('r2s_') else {}


def degrades_test_images(cfg: Config) -> bool:
    preprocessor = cfg.model.data_preprocessor
    return preprocessor.type == 'DegradationDataPreProcessor' and preprocessor.get('degrade') == 'always'


def random_checkpoint(path: str, out: Path) -> str:
    """A checkpoint of the config's randomly initialised model, with the texture classes as dataset_meta."""
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options(path))
    model = init_model(cfg, device='cpu')
    meta = dict(dataset_meta=dict(classes=list(CLASSES), palette=[list(colour) for colour in PALETTE]))
    torch.save(dict(state_dict=model.state_dict(), meta=meta), str(out))
    return str(out)


def config_for_inferencer(path: str):
    """A config path as the demo passes it, or the loaded config when the R2S options must be applied."""
    if not options(path):
        return path
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options(path))
    return cfg


@pytest.mark.parametrize('path', SEGMENTORS, ids=osp.basename)
def test_mmseg_apis_segment_with_the_config(path, image, tmp_path):
    checkpoint = random_checkpoint(path, tmp_path / 'random.pth')
    degrades = degrades_test_images(Config.fromfile(path))
    clean = cv2.imread(image)

    # demo/image_demo.py
    model = revert_sync_batchnorm(init_model(path, checkpoint, device='cpu', cfg_options=options(path) or None))
    assert model.dataset_meta['classes'] == list(CLASSES)
    result = inference_model(model, image)
    prediction = result.pred_sem_seg.data
    assert prediction.shape == (1, SIZE, SIZE) and 0 <= int(prediction.min()) <= int(prediction.max()) < len(CLASSES)
    if degrades:  # the model saw the image degraded, seeded by its file name: the same bits on every call
        assert not np.array_equal(result.lq_img.data.permute(1, 2, 0).numpy(), clean[..., ::-1])
        assert torch.equal(inference_model(model, image).pred_sem_seg.data, prediction)
    drawn = show_result_pyplot(model, image, result, draw_gt=False, show=False, out_file=str(tmp_path / 'drawn.png'))
    assert drawn.shape == (SIZE, SIZE, 3) and not np.array_equal(drawn, clean[..., ::-1])  # the mask is painted
    assert np.array_equal(cv2.imread(str(tmp_path / 'drawn.png'))[..., ::-1], drawn)

    # demo/image_demo_with_inferencer.py: the same prediction, written to out_dir
    inferencer = MMSegInferencer(model=config_for_inferencer(path), weights=checkpoint, device='cpu')
    out_dir = tmp_path / 'out'
    output = inferencer(image, out_dir=str(out_dir))
    assert np.array_equal(output['predictions'], prediction[0].numpy())
    assert np.array_equal(np.asarray(Image.open(out_dir / 'pred' / '00000000_pred.png')), prediction[0].numpy())
    assert cv2.imread(str(out_dir / 'vis' / osp.basename(image))).shape[0] == SIZE

    # an image given as an array: segmented as the file is, or refused in one line where the config seeds the
    # test-time degradation by file name (mmseg's inference_model keeps the array loader in model.cfg
    # afterwards, so this comes last)
    for run in (lambda: inferencer(clean)['predictions'], lambda: inference_model(model, clean).pred_sem_seg.data[0]):
        if degrades:
            with pytest.raises(ValueError, match=r"from its file name .* pass the image file instead") as error:
                run()
            assert '\n' not in str(error.value)
        else:
            assert np.array_equal(np.asarray(run()), prediction[0].numpy())


@pytest.mark.parametrize('path', RESTORERS, ids=osp.basename)
def test_mmseg_apis_restore_with_an_scr_config(path, image, tmp_path):
    checkpoint = random_checkpoint(path, tmp_path / 'random.pth')
    model = revert_sync_batchnorm(init_model(path, checkpoint, device='cpu'))
    restored = inference_model(model, image).restored_img.data
    assert restored.shape == (3, SIZE, SIZE) and 0 <= float(restored.min()) <= float(restored.max()) <= 1

    inferencer = MMSegInferencer(model=path, weights=checkpoint, device='cpu')
    sample = inferencer(image, return_datasamples=True, out_dir=str(tmp_path / 'out'))
    assert torch.equal(sample.restored_img.data, restored)
    panels = cv2.imread(str(tmp_path / 'out' / 'vis' / osp.basename(image)))  # LQ | restored | clean
    assert panels.shape == (SIZE, 3 * SIZE, 3)
    assert np.array_equal(panels[:, 2 * SIZE:], cv2.imread(image))
    with pytest.raises(ValueError, match='predicts none .* return_datasamples=True') as error:
        inferencer(image)  # mmseg's postprocess would raise a bare StopIteration
    assert '\n' not in str(error.value)


def test_inferencer_in_a_fresh_process_loads_the_plugin_from_custom_imports(image, tmp_path):
    """As the demo runs: only mmseg is imported; the config's custom_imports brings in rass_mmseg (and its fix)
    before the inferencer builds its pipeline."""
    path = repo_path('configs', 'protocols', 'dt-segformer_mit-tiny_1xb4-300it_textures-128x128.py')
    checkpoint = random_checkpoint(path, tmp_path / 'random.pth')
    script = '\n'.join([
        'import sys', 'from mmseg.apis import MMSegInferencer', "assert 'rass_mmseg' not in sys.modules",
        f"inferencer = MMSegInferencer(model={path!r}, weights={checkpoint!r}, device='cpu')",
        f"inferencer({image!r}, out_dir={str(tmp_path / 'out')!r})", "print('written')"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    result = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path), env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    expected = inference_model(init_model(path, checkpoint, device='cpu'), image).pred_sem_seg.data[0].numpy()
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'out' / 'pred' / '00000000_pred.png')), expected)
    assert (tmp_path / 'out' / 'vis' / osp.basename(image)).is_file()


def test_the_excluded_configs_are_the_ones_that_need_trained_weights():
    names = {osp.basename(path) for path in TINY}
    assert len(NEEDS_TRAINED_SD) == 4  # the SCR demo, RASS clean and LQ, their R2S
    for name, path in NEEDS_TRAINED_SD.items():
        assert name not in names
        model = Config.fromfile(path).model
        if model.type == 'RestoreThenSegment':
            assert needs_made_tiny_sd(model.restorer) and needs_made_tiny_sd(model.segmentor)
        else:
            assert model.backbone.pretrained == 'checkpoints/tiny-sd-textures'
    assert len(SEGMENTORS) >= 10 and len(RESTORERS) >= 1
