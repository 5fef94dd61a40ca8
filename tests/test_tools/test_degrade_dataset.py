"""tools/dataset_converters/degrade_dataset.py on a small generated dataset."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from skimage import data

from rass_mmseg.degradations import SecondOrderDegradation
from rass_mmseg.models.data_preprocessors import DegradationDataPreProcessor
from rass_mmseg.version import __version__
from tests.utils import load_tool

PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'immunohistochemistry')


tool = load_tool('dataset_converters/degrade_dataset')


@pytest.fixture
def dataset(tmp_path):
    """Five JPEG photos (two sizes, one in a sub-folder) and their PNG label maps."""
    images, labels = tmp_path / 'src' / 'images', tmp_path / 'src' / 'labels'
    for index, name in enumerate(PHOTOS):
        size = (48, 40) if index % 2 else (56, 40)  # (width, height)
        folder = 'sub' if index == 4 else ''
        os.makedirs(images / folder, exist_ok=True)
        os.makedirs(labels / folder, exist_ok=True)
        photo = cv2.resize(np.ascontiguousarray(getattr(data, name)()[..., :3]), size, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(images / folder / f'{name}.jpg'), photo[..., ::-1])
        cv2.imwrite(str(labels / folder / f'{name}.png'), (np.arange(size[0] * size[1]) % 7).reshape(size[::-1])
                    .astype(np.uint8))
    return tmp_path


def degrade(root, *extra, out='out'):
    return tool.main([str(root / 'src' / 'images'), str(root / out / 'images'), '--label-dir',
                      str(root / 'src' / 'labels'), '--out-label-dir', str(root / out / 'labels'), '--batch-size', '2',
                      *extra])


def outputs(root, out='out'):
    folder = root / out / 'images'
    return {relative: cv2.imread(str(folder / relative)) for relative in tool.list_files(str(folder), ('.png', ))}


def test_writes_every_image_labels_and_a_manifest(dataset):
    assert degrade(dataset, '--seed', '5') == 0
    written = outputs(dataset)
    assert sorted(written) == ['astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.png',
                               osp.join('sub', 'immunohistochemistry.png')]
    source = cv2.imread(str(dataset / 'src' / 'images' / 'coffee.jpg'))
    assert written['coffee.png'].shape == source.shape  # scale 1
    assert np.abs(written['coffee.png'].astype(int) - source).mean() > 2  # degraded
    for relative in tool.list_files(str(dataset / 'src' / 'labels')):
        with open(dataset / 'src' / 'labels' / relative, 'rb') as a, open(dataset / 'out' / 'labels' / relative,
                                                                          'rb') as b:
            assert a.read() == b.read()
    manifest = json.loads((dataset / 'out' / 'images' / 'manifest.json').read_text())
    assert manifest['seed'] == 5 and manifest['rass_mmseg_version'] == __version__
    assert manifest['images'] == 5 and manifest['degradation'] == SecondOrderDegradation().to_dict()
    assert manifest['labels']['mode'] == 'copy'
    assert manifest['backend'] == 'opencv'  # backend='auto' on the CPU


def test_resume_after_interruption_gives_the_same_bits(dataset):
    degrade(dataset, '--limit', '2')  # interrupted after two images
    assert len(outputs(dataset)) == 2
    first = {name: osp.getmtime(dataset / 'out' / 'images' / name) for name in outputs(dataset)}
    partial = dataset / 'out' / 'images' / 'rocket.partial.png'
    partial.write_bytes(b'half a file')  # a write cut short
    degrade(dataset)
    resumed = outputs(dataset)
    assert len(resumed) == 5 and not partial.exists()
    assert all(osp.getmtime(dataset / 'out' / 'images' / name) == mtime for name, mtime in first.items())
    degrade(dataset, out='one_go')
    one_go = outputs(dataset, out='one_go')
    assert all(np.array_equal(resumed[name], one_go[name]) for name in one_go)


def test_refuses_to_write_into_the_source(dataset, capsys):
    for target in (dataset / 'src' / 'images', dataset / 'src' / 'images' / 'lq'):
        with pytest.raises(SystemExit) as exit_info:
            tool.main([str(dataset / 'src' / 'images'), str(target)])
        message = str(exit_info.value.code)
        assert message.startswith('degrade_dataset.py: error: refusing to write') and '\n' not in message
    assert not (dataset / 'src' / 'images' / 'lq').exists()
    assert sorted(os.listdir(dataset / 'src' / 'images')) == ['astronaut.jpg', 'chelsea.jpg', 'coffee.jpg',
                                                               'rocket.jpg', 'sub']


def test_refuses_to_resume_with_other_settings_and_links_labels(dataset):
    degrade(dataset, '--seed', '1', '--labels', 'link')
    assert osp.islink(dataset / 'out' / 'labels' / 'coffee.png')
    with pytest.raises(SystemExit, match='written with another seed'):
        degrade(dataset, '--seed', '2')


def test_matches_the_preprocessor_test_mode(dataset):
    degrade(dataset, '--seed', '9')
    preprocessor = DegradationDataPreProcessor(bgr_to_rgb=True, degrade='always', test_seed=9)
    for name in ('coffee', 'chelsea'):
        path = str(dataset / 'src' / 'images' / f'{name}.jpg')
        image = torch.from_numpy(cv2.imread(path)).permute(2, 0, 1)
        sample = SegDataSample(metainfo=dict(img_path=path))
        sample.gt_sem_seg = PixelData(data=torch.zeros(1, *image.shape[1:], dtype=torch.long))
        lq = preprocessor(dict(inputs=[image], data_samples=[sample]), training=False)['inputs'][0]
        written = cv2.imread(str(dataset / 'out' / 'images' / f'{name}.png'))[..., ::-1].copy()
        assert torch.equal(lq.round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(written))


def test_a_folder_written_before_backends_resumes_only_with_the_torch_backend(dataset, tmp_path):
    degrade(dataset, '--limit', '2')
    path = dataset / 'out' / 'images' / 'manifest.json'
    manifest = json.loads(path.read_text())
    # as the tool wrote it before backends and ops presets
    del manifest['backend'], manifest['degradation']['backend'], manifest['degradation']['ops']
    path.write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="written with another backend \\('torch'\\)"):
        degrade(dataset)
    config = tmp_path / 'torch_backend.py'
    config.write_text("degradation_preprocessor = dict(type='DegradationDataPreProcessor', "
                      "degradation=dict(backend='torch'))\n")
    assert degrade(dataset, '--config', str(config)) == 0
    assert len(outputs(dataset)) == 5


def test_basicsr_ops_run_on_torch_and_are_recorded_by_their_name(dataset, tmp_path):
    config = tmp_path / 'public_ops.py'
    config.write_text("degradation_preprocessor = dict(type='DegradationDataPreProcessor', "
                      "degradation=dict(ops='public_rass'))\n")  # another name of 'basicsr'
    assert degrade(dataset, '--config', str(config), '--limit', '1') == 0
    manifest = json.loads((dataset / 'out' / 'images' / 'manifest.json').read_text())
    assert manifest['backend'] == 'torch' and manifest['degradation']['ops'] == 'basicsr'
    with pytest.raises(SystemExit, match='written with another degradation'):
        degrade(dataset)  # the default ops are libjpeg


def test_a_folder_recorded_with_ops_public_rass_resumes_with_ops_basicsr(dataset, tmp_path):
    config = tmp_path / 'basicsr_ops.py'
    config.write_text("degradation_preprocessor = dict(type='DegradationDataPreProcessor', "
                      "degradation=dict(ops='basicsr'))\n")
    assert degrade(dataset, '--config', str(config), '--limit', '2') == 0
    path = dataset / 'out' / 'images' / 'manifest.json'
    manifest = json.loads(path.read_text())
    manifest['degradation']['ops'] = 'public_rass'  # as the tool wrote it before the op set was named 'basicsr'
    path.write_text(json.dumps(manifest))
    assert degrade(dataset, '--config', str(config)) == 0
    assert len(outputs(dataset)) == 5


def _refusal(*argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        tool.main([str(arg) for arg in argv])
    message = str(exit_info.value.code)
    assert message.startswith('degrade_dataset.py: error: ') and '\n' not in message
    return message


def test_two_images_with_one_stem_are_refused_naming_both(dataset):
    """Issue 21, item 4: coffee.jpg and coffee.png would both be written as coffee.png (one image lost)."""
    images = dataset / 'src' / 'images'
    cv2.imwrite(str(images / 'coffee.png'), cv2.imread(str(images / 'coffee.jpg')))
    message = _refusal(images, dataset / 'out')
    assert f'{images / "coffee.jpg"} and {images / "coffee.png"} would both be written as {dataset / "out"}' \
        f'{os.sep}coffee.png' in message
    assert not (dataset / 'out').exists()


@pytest.mark.parametrize('limit', ['-1', '0'])
def test_a_limit_below_one_is_refused(dataset, limit):
    """Issue 21, item 4: --limit -1 silently dropped the last image (pending[:-1])."""
    message = _refusal(dataset / 'src' / 'images', dataset / 'out', '--limit', limit)
    assert f'--limit must be at least 1, got {limit}' in message
    assert not (dataset / 'out').exists()


@pytest.mark.parametrize('labels', ['the image output', 'inside it', 'around it'])
def test_the_label_output_must_be_apart_from_the_image_output(dataset, labels):
    """Issue 21, item 4: with --out-label-dir equal to the image output, labels named as the images were dropped."""
    out = dataset / 'out' / 'images'
    out_labels = {'the image output': out, 'inside it': out / 'labels', 'around it': dataset / 'out'}[labels]
    message = _refusal(dataset / 'src' / 'images', out, '--label-dir', dataset / 'src' / 'labels',
                       '--out-label-dir', out_labels)
    assert f"--out-label-dir '{out_labels}' and the image output folder '{out}' must be separate folders" in message
    assert not (dataset / 'out').exists()


def test_an_output_written_from_another_source_is_refused(dataset, tmp_path):
    """Issue 21, item 4: another source with the same names into a finished output degraded nothing, reported
    success and rewrote the manifest's source."""
    assert degrade(dataset) == 0
    manifest = dataset / 'out' / 'images' / 'manifest.json'
    written = manifest.read_bytes()
    other = tmp_path / 'other'
    os.makedirs(other / 'labels')
    os.symlink(dataset / 'src' / 'images', other / 'same_images')  # the same folder by another path: resumes
    for name in os.listdir(dataset / 'src' / 'images'):
        if name.endswith('.jpg'):
            os.makedirs(other / 'images', exist_ok=True)
            image = cv2.imread(str(dataset / 'src' / 'images' / name))
            cv2.imwrite(str(other / 'images' / name), 255 - image)
    message = _refusal(other / 'images', dataset / 'out' / 'images')
    assert (f"{manifest} was written from the source folder '{dataset / 'src' / 'images'}', not "
            f"'{other / 'images'}'; use a new output folder") in message
    message = _refusal(dataset / 'src' / 'images', dataset / 'out' / 'images', '--label-dir', other / 'labels',
                       '--out-label-dir', dataset / 'out' / 'labels')
    assert f"written from the label source folder '{dataset / 'src' / 'labels'}', not '{other / 'labels'}'" in message
    assert manifest.read_bytes() == written  # the record of the source is never rewritten
    assert tool.main([str(other / 'same_images'), str(dataset / 'out' / 'images')]) == 0
    assert json.loads(manifest.read_text()) == json.loads(written)  # and the labels' record stays
