"""demo/image_demo.py and demo/image_demo_with_inferencer.py on real photos (scikit-image ships them), with the
embedded default config and a randomly initialised checkpoint: the overlay mmseg draws, the class-index mask and the
side-by-side drawing, the photo's size, written under the output folder and nowhere else."""
import contextlib
import importlib.util
import io
import os
import os.path as osp
import sys
from types import ModuleType

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from mmengine.runner import save_checkpoint
from mmengine.runner.checkpoint import weights_to_cpu
from mmseg.apis import inference_model, init_model, show_result_pyplot

from rass_mmseg.datasets.texture_generator import CLASSES, PALETTE
from tests.utils import REPO, TINY, repo_path

SCR = repo_path('configs', 'scr', 'scr_tiny-sd_1xb4-300it_textures-128x128.py')


def load_demo(name: str) -> ModuleType:
    """The script ``demo/NAME.py`` as a module."""
    module_name = f'rass_demo_{name}'
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, repo_path('demo', f'{name}.py'))
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One intra-op thread for the whole module, the module-scoped fixtures included: the tests compare the masks
    of separate runs, and a sum split over another number of threads may flip a near tie of a random model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def photos(tmp_path_factory) -> str:
    """A folder with two photos (a cat 300x451 as PNG, an astronaut scaled to 96x96 as JPEG) and a text file."""
    folder = tmp_path_factory.mktemp('photos')
    cv2.imwrite(str(folder / 'chelsea.png'), skimage.data.chelsea()[..., ::-1])
    cv2.imwrite(str(folder / 'astronaut.jpg'), cv2.resize(skimage.data.astronaut()[..., ::-1], (96, 96)))
    (folder / 'notes.txt').write_text('not an image')
    return str(folder)


def random_checkpoint(config: str, path: str) -> str:
    """The config's randomly initialised model saved with mmengine, the texture classes as its dataset_meta."""
    model = init_model(config, device='cpu')
    meta = dict(dataset_meta=dict(classes=list(CLASSES), palette=[list(colour) for colour in PALETTE]))
    save_checkpoint(dict(meta=meta, state_dict=weights_to_cpu(model.state_dict())), path)
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> str:
    return random_checkpoint(TINY, str(tmp_path_factory.mktemp('checkpoint') / 'random.pth'))


def read(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_image_demo_on_a_photo_writes_the_overlay_the_mask_and_the_side_by_side_drawing(
        photos, checkpoint, tmp_path, monkeypatch):
    photo = osp.join(photos, 'chelsea.png')
    height, width = skimage.data.chelsea().shape[:2]
    cwd = tmp_path / 'cwd'
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    repo_before = set(os.listdir(REPO))
    load_demo('image_demo').main([photo, TINY, checkpoint])  # default --out-dir and --device

    out = cwd / 'work_dirs' / 'demo'
    assert os.listdir(cwd) == ['work_dirs'] and set(os.listdir(out)) == {'overlay', 'mask', 'side_by_side'}
    assert set(os.listdir(REPO)) == repo_before
    mask = read(out / 'mask' / 'chelsea.png')
    assert mask.shape == (height, width) and mask.dtype == np.uint8 and int(mask.max()) < len(CLASSES)
    model = init_model(TINY, checkpoint, device='cpu')
    result = inference_model(model, photo)
    assert np.array_equal(mask, result.pred_sem_seg.data[0].numpy())
    assert len(np.unique(mask)) > 1  # a random model still splits a photo into several classes
    # the overlay is mmseg's: what show_result_pyplot draws for the same prediction
    drawn = show_result_pyplot(model, photo, result, opacity=0.5, draw_gt=False, show=False, with_labels=False)
    overlay = read(out / 'overlay' / 'chelsea.png')
    assert overlay.shape == (height, width, 3) and np.array_equal(overlay[..., ::-1], drawn)
    side_by_side = read(out / 'side_by_side' / 'chelsea.png')
    assert side_by_side.shape == (height, 2 * width, 3)
    assert np.array_equal(side_by_side[:, :width], read(photo)) and np.array_equal(side_by_side[:, width:], overlay)


@pytest.fixture(scope='module')
def folder_outputs(photos, checkpoint, tmp_path_factory):
    """image_demo.py on the photo folder: the output folder and the lines it printed."""
    out = tmp_path_factory.mktemp('folder_outputs')
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        load_demo('image_demo').main([photos, TINY, checkpoint, '--out-dir', str(out), '--device', 'cpu'])
    return out, capture.getvalue().splitlines()


def test_image_demo_on_a_folder_reads_its_images_by_name(photos, folder_outputs):
    out, lines = folder_outputs
    for drawing in ('overlay', 'mask', 'side_by_side'):
        assert sorted(os.listdir(out / drawing)) == ['astronaut.png', 'chelsea.png']  # notes.txt skipped
    assert read(out / 'mask' / 'astronaut.png').shape == (96, 96)
    assert [line.split(' -> ')[0] for line in lines if ' -> ' in line] == [
        osp.join(photos, 'astronaut.jpg'), osp.join(photos, 'chelsea.png')]


def test_image_demo_with_a_restorer_draws_lq_restored_and_input(photos, tmp_path):
    checkpoint = random_checkpoint(SCR, str(tmp_path / 'scr.pth'))
    photo = osp.join(photos, 'astronaut.jpg')
    load_demo('image_demo').main([photo, SCR, checkpoint, '--out-dir', str(tmp_path / 'out')])
    assert os.listdir(tmp_path / 'out') == ['side_by_side']
    assert read(tmp_path / 'out' / 'side_by_side' / 'astronaut.png').shape == (96, 3 * 96, 3)


def test_image_demo_refuses_bad_input_in_one_line(photos, checkpoint, tmp_path):
    demo = load_demo('image_demo')
    empty = tmp_path / 'empty'
    empty.mkdir()
    for argv, message in (([str(empty), TINY, checkpoint], 'no image'),
                          ([str(tmp_path / 'absent.png'), TINY, checkpoint], 'no such image file or folder'),
                          ([photos, TINY, str(tmp_path / 'absent.pth')], 'no such checkpoint file')):
        with pytest.raises(SystemExit) as exit_info:
            demo.main(argv)
        assert message in str(exit_info.value.code) and '\n' not in str(exit_info.value.code)
    with pytest.raises(ValueError, match='a.jpg would both write a.png: rename one'):
        demo.output_paths(['dir/a.png', 'dir/a.jpg'], str(tmp_path))
    with pytest.raises(ValueError, match='is an input image'):
        demo.output_paths([str(tmp_path / 'mask' / 'x.png')], str(tmp_path))
    assert not os.listdir(empty)


def test_image_demo_with_inferencer_writes_the_same_overlay_and_mask(photos, checkpoint, folder_outputs, tmp_path,
                                                                      monkeypatch):
    demo_out = folder_outputs[0]
    monkeypatch.chdir(tmp_path)
    repo_before = set(os.listdir(REPO))
    demo = load_demo('image_demo_with_inferencer')
    demo.main([photos, TINY, '--checkpoint', checkpoint])  # default --out-dir and --device

    out = tmp_path / 'work_dirs' / 'demo_inferencer'
    assert os.listdir(tmp_path) == ['work_dirs'] and set(os.listdir(REPO)) == repo_before
    assert sorted(os.listdir(out / 'vis')) == ['astronaut.jpg', 'chelsea.png']
    for index, name in enumerate(['astronaut', 'chelsea']):  # name order
        assert np.array_equal(read(out / 'pred' / f'{index:08d}_pred.png'), read(demo_out / 'mask' / f'{name}.png'))
    assert np.array_equal(read(out / 'vis' / 'chelsea.png'), read(demo_out / 'overlay' / 'chelsea.png'))

    photo = osp.join(photos, 'chelsea.png')
    demo.main([photo, TINY, '--checkpoint', checkpoint, '--out-dir', 'side', '--side-by-side'])
    assert np.array_equal(read(tmp_path / 'side' / 'vis' / 'chelsea.png'),
                          read(demo_out / 'side_by_side' / 'chelsea.png'))
