"""The whole engine: output format, determinism of both random sources, one-line parameter errors."""
import pytest
import torch

from rass_mmseg.degradations import GeneratorRandomSource, KeyedRandomSource, SecondOrderDegradation
from tests.test_degradations.helpers import keyed, photo

CPU = torch.device('cpu')
BACKENDS = ('torch', 'opencv')


@pytest.mark.parametrize('backend', BACKENDS)
def test_engine_output_is_8bit_in_range_same_size_and_degraded(backend):
    images = photo(64).expand(4, -1, -1, -1).contiguous()
    degraded = SecondOrderDegradation(backend=backend)(images, keyed(4))
    assert degraded.shape == images.shape and degraded.dtype == torch.float32
    assert degraded.min() >= 0 and degraded.max() <= 1
    assert torch.equal(degraded * 255, (degraded * 255).round())
    assert ((degraded - images).abs().mean(dim=(1, 2, 3)) > 2 / 255).all()


@pytest.mark.parametrize('backend', BACKENDS)
def test_keyed_engine_is_independent_of_batch_size_and_order(backend):
    torch.manual_seed(0)
    images = (torch.rand(6, 3, 48, 40) * 255).round() / 255
    names = [f'img_{index}.jpg' for index in range(6)]
    engine = SecondOrderDegradation(backend=backend)
    full = engine(images, KeyedRandomSource.from_identities(names, 7))
    for order in ([5, 1, 3], [2], [4, 0, 1, 2, 3, 5]):
        part = engine(images[order], KeyedRandomSource.from_identities([names[i] for i in order], 7))
        assert torch.equal(part, full[order])
    other_seed = engine(images, KeyedRandomSource.from_identities(names, 8))
    assert (other_seed != full).float().mean() > 0.5


@pytest.mark.parametrize('backend', BACKENDS)
def test_generator_engine_is_reproducible_from_its_seed_and_fresh_per_call(backend):
    images = photo(48).expand(3, -1, -1, -1).contiguous()
    engine = SecondOrderDegradation(backend=backend)
    first = engine(images, GeneratorRandomSource(torch.Generator().manual_seed(3), 3, CPU))
    again = engine(images, GeneratorRandomSource(torch.Generator().manual_seed(3), 3, CPU))
    assert torch.equal(first, again)
    generator = torch.Generator().manual_seed(3)
    engine(images, GeneratorRandomSource(generator, 3, CPU))
    second_visit = engine(images, GeneratorRandomSource(generator, 3, CPU))
    assert (second_visit != first).float().mean() > 0.5


@pytest.mark.parametrize('key, value, message', [
    ('kernel_list', ['iso', 'box'], "'kernel_list' has unknown kernel types ['box']"),
    ('kernel_prob', [0.5, 0.25, 0.1, 0.05, 0.05, 0.03], "'kernel_prob' must be non-negative probabilities that sum"),
    ('resize_prob', [0.5, 0.5], "'resize_prob' needs 3 probabilities (for up, down, keep)"),
    ('resize_range', [1.2, 1.5], "'resize_range' must contain 1.0"),
    ('jpeg_range', [30, 120], "'jpeg_range' must lie within [1.0, 100.0]"),
    ('second_blur_prob', 1.5, "'second_blur_prob' must be a probability in [0, 1]"),
    ('kernel_range', [8, 21], "'kernel_range' must be [smallest, largest] odd kernel sizes"),
    ('backend', 'cv2', "'backend' must be one of ['auto', 'torch', 'opencv'], got 'cv2'"),
])
def test_bad_parameters_are_named_in_a_one_line_error(key, value, message):
    with pytest.raises(ValueError) as error:
        SecondOrderDegradation(**{key: value})
    assert message in str(error.value) and '\n' not in str(error.value)
