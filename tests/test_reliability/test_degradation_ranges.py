"""Degradation ranges are checked at construction: finite, and resize scales, noise and blur sigmas bounded above
(issue 21, item 7d), each in one line naming the key and the allowed range."""
import math

import pytest
from mmseg.registry import MODELS

from rass_mmseg.degradations import SecondOrderDegradation
from rass_mmseg.degradations.second_order_degradation import (
    MAX_BLUR_SIGMA,
    MAX_NOISE_SIGMA,
    MAX_POISSON_SCALE,
    MAX_RESIZE_SCALE,
)


def refused(match: str, **keys) -> str:
    with pytest.raises(ValueError, match=match) as error:
        SecondOrderDegradation(**keys)
    assert '\n' not in str(error.value)
    return str(error.value)


def test_a_resize_scale_typo_is_refused_by_the_preprocessor_config():
    # (0.15, 150), a typo for 1.5, was accepted and needed ~70 GB for a 512 px image
    with pytest.raises(ValueError, match=r"^degradation key 'resize_range' must lie within \[0\.001, 4\.0\], got "
                       r'\[0\.15, 150\.0\] \(a scale s holds s\*\*2 times the pixels'):
        MODELS.build(dict(type='DegradationDataPreProcessor', degradation=dict(resize_range=[0.15, 150])))


@pytest.mark.parametrize('key, value, bound', [
    ('resize_range', (0.15, 4.5), MAX_RESIZE_SCALE),
    ('resize_range2', (0.3, 5.0), MAX_RESIZE_SCALE),
    ('noise_range', (1.0, 300.0), MAX_NOISE_SIGMA),
    ('noise_range2', (1.0, 256.0), MAX_NOISE_SIGMA),
    ('poisson_scale_range', (0.05, 17.0), MAX_POISSON_SCALE),
    ('poisson_scale_range2', (0.05, 30.0), MAX_POISSON_SCALE),
    ('blur_sigma', (0.2, 101.0), MAX_BLUR_SIGMA),
    ('blur_sigma2', (0.2, 1000.0), MAX_BLUR_SIGMA),
])
def test_ranges_above_their_bound_are_refused(key, value, bound):
    refused(rf"^degradation key '{key}' must lie within \[[0-9.e-]+, {bound}\], got \[.*\] \(.*Real-ESRGAN uses at "
            r'most', **{key: value})
    SecondOrderDegradation(**{key: (value[0], bound)})  # control: the bound itself is accepted


@pytest.mark.parametrize('bad', [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize('key', ['noise_range', 'noise_range2', 'poisson_scale_range', 'resize_range', 'blur_sigma',
                                 'betag_range', 'betap_range2', 'rotation_range', 'jpeg_range'])
def test_non_finite_range_values_are_refused(key, bad):
    # noise_range (1, inf) was accepted
    refused(rf"^degradation key '{key}' must hold finite numbers, got", **{key: (1.0, bad)})


@pytest.mark.parametrize('key', ['kernel_prob', 'resize_prob2', 'resize_mode_prob'])
def test_non_finite_probabilities_are_refused(key):
    default = SecondOrderDegradation().to_dict()[key]
    refused(rf"^degradation key '{key}' must hold finite numbers", **{key: [math.nan] + default[1:]})


@pytest.mark.parametrize('value', ['abc', 1.5, (1.0, 'x')])
def test_ranges_that_are_not_numbers_are_refused(value):
    refused(r"^degradation key 'noise_range' must hold finite numbers", noise_range=value)
