"""The paper's degradation setting is defined once (configs/_base_/degradation_paper.py) and every paper-size config
degrades with it: the public RASS code's values (/work/shared/design RASS.md, "Training data") with BasicSR's
operations."""
import glob
import re

import pytest
from mmengine.config import Config

from tests.utils import repo_path

KERNELS = ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso']
#: The values the design notes list for the public code, and its operations.
PAPER_VALUES = dict(
    resize_prob=[0.2, 0.7, 0.1], resize_range=[0.15, 1.5], gaussian_noise_prob=0.5, noise_range=[1.0, 30.0],
    poisson_scale_range=[0.05, 3.0], gray_noise_prob=0.4, jpeg_range=[30.0, 95.0], second_blur_prob=0.8,
    resize_prob2=[0.3, 0.4, 0.3], resize_range2=[0.3, 1.2], noise_range2=[1.0, 25.0], poisson_scale_range2=[0.05, 2.5],
    gray_noise_prob2=0.4, jpeg_range2=[30.0, 95.0], kernel_range=[7, 21], kernel_list=KERNELS, kernel_list2=KERNELS,
    kernel_prob=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03], kernel_prob2=[0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    sinc_prob=0.1, sinc_prob2=0.1, blur_sigma=[0.2, 3.0], blur_sigma2=[0.2, 1.5], betag_range=[0.5, 4.0],
    betag_range2=[0.5, 4.0], betap_range=[1.0, 2.0], betap_range2=[1.0, 2.0], final_sinc_prob=0.8, ops='basicsr')
PAPER_SIZE = [
    'rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-512x512.py',
    'rass/rass_sd21-base_mask2former_8xb2-160k_ade20k-lq-512x512.py',
    'rass/rass_sd21-base_mask2former_8xb2-160k_reallq-512x512.py',
    'rass/rass_sd21-base_segformer-head_8xb2-160k_ade20k-lq-512x512.py',
    'scr/scr_sd21-base_4xb4-100k_ade20k-512x512.py',
    'protocols/ft-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_ade20k-lq-640x640.py',
    'protocols/ft-mask2former_swin-l-in22k-384x384-pre_8xb2-160k_reallq-640x640.py',
    'protocols/ft-segformer_mit-b5_8xb2-160k_ade20k-lq-512x512.py',
    'protocols/ft-segformer_mit-b5_8xb2-160k_reallq-512x512.py',
]


def test_the_paper_setting_has_the_paper_values_and_leaves_the_base_preprocessor_alone():
    paper = Config.fromfile(repo_path('configs', '_base_', 'degradation_paper.py'))
    base = Config.fromfile(repo_path('configs', '_base_', 'degradation.py'))
    assert {key: paper.paper_degradation[key] for key in PAPER_VALUES} == PAPER_VALUES
    assert paper.paper_degradation.to_dict() == dict(base.degradation_preprocessor.degradation, ops='basicsr')
    assert paper.degradation_preprocessor.to_dict() == base.degradation_preprocessor.to_dict()  # still libjpeg


@pytest.mark.parametrize('path', PAPER_SIZE)
def test_paper_size_configs_degrade_with_the_paper_setting(path):
    cfg = Config.fromfile(repo_path('configs', path))
    assert cfg.model.data_preprocessor.type == 'DegradationDataPreProcessor'
    assert cfg.model.data_preprocessor.degradation.to_dict() == cfg.paper_degradation.to_dict()


def test_only_the_degradation_bases_choose_the_operations():
    choosing = [path for path in glob.glob(repo_path('configs', '**', '*.py'), recursive=True)
                if re.search(r'\bops\s*=', open(path).read())]
    assert sorted(path[len(repo_path('configs')) + 1:] for path in choosing) == [
        '_base_/degradation.py', '_base_/degradation_paper.py']
