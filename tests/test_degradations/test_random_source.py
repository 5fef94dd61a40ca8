"""Random sources: keyed numbers depend on (seed, identity, stream, coordinates) only; the builder names bad keys."""
import hashlib
import itertools
import zlib

import pytest
import torch

from rass_mmseg.degradations import GeneratorRandomSource, KeyedRandomSource, build_degradation, image_identity
from rass_mmseg.degradations.random_source import identity_keys


def test_image_identity_is_the_file_name():
    assert image_identity('/data/ade/images/validation/ADE_val_00000001.jpg') == 'ADE_val_00000001.jpg'
    assert image_identity('relative/dir/x.png') == image_identity('/elsewhere/x.png')


def test_identity_keys_are_the_first_eight_bytes_of_the_sha256_of_seed_and_identity():
    keys = identity_keys(['a.png', 'b.png'], 3)
    digest = hashlib.sha256(b'3\0b.png').digest()
    assert keys[1].tolist() == [int.from_bytes(digest[0:4], 'little'), int.from_bytes(digest[4:8], 'little')]


def test_keyed_numbers_depend_on_coordinates_not_on_the_field_shape_or_batch():
    source = KeyedRandomSource.from_identities(['a.png', 'b.png', 'c.png'], 0)
    small = source.uniform('field', (3, 5, 7))
    large = source.uniform('field', (3, 9, 11))
    assert torch.equal(small, large[:, :, :5, :7])
    alone = source.subset(torch.tensor([2])).uniform('field', (3, 5, 7))
    assert torch.equal(alone[0], small[2])
    assert not torch.equal(small[0], small[1])  # other identity, other numbers
    assert not torch.equal(small, source.uniform('other', (3, 5, 7)))  # other stream, other numbers
    assert 0.0 < float(small.min()) and float(small.max()) < 1.0


def test_generator_source_follows_its_generator():
    first = GeneratorRandomSource(torch.Generator().manual_seed(1), 2, torch.device('cpu')).normal('x', (4, ))
    assert torch.equal(first, torch.randn((2, 4), generator=torch.Generator().manual_seed(1)))


def test_builder_names_unknown_keys_in_one_line():
    with pytest.raises(ValueError, match=r"unknown degradation key\(s\) \['blur_prob'\]") as error:
        build_degradation(dict(blur_prob=0.5))
    assert '\n' not in str(error.value)
    assert build_degradation(None).to_dict() == build_degradation({}).to_dict()


def _mix32(value: int) -> int:
    """C. Wellons' lowbias32 hash on Python integers (the documented hash of the keyed source)."""
    value ^= value >> 16
    value = (value * 0x7FEB352D) & 0xFFFFFFFF
    value ^= value >> 15
    value = (value * 0x846CA68B) & 0xFFFFFFFF
    return value ^ (value >> 16)


def test_keyed_uniforms_are_the_documented_hash_on_every_code_path():
    """The CPU computes the hash with numpy, other devices with torch's int32 ops: both must give the numbers of
    the documented hash, computed here with Python integers for a few elements."""
    source = KeyedRandomSource.from_identities(['x.png', 'y.png'], 4)
    keys = identity_keys(['x.png', 'y.png'], 4).tolist()
    code = zlib.crc32(b'field')
    uniform = source.uniform('field', (3, 20, 30))
    bits = source._bits('field', (3, 20, 30))  # the torch path (used on GPUs), run on the CPU
    torch_uniform = ((bits >> 9) & 0x7FFFFF).to(torch.float32).add(0.5).mul(2.0**-23)
    assert torch.equal(uniform, torch_uniform)
    for sample, (channel, row, column) in itertools.product(range(2), [(0, 0, 0), (2, 19, 29), (1, 7, 3)]):
        first = _mix32((keys[sample][0] ^ code) & 0xFFFFFFFF)
        second = _mix32((keys[sample][1] + ((code * 0x9E3779B1) & 0xFFFFFFFF)) & 0xFFFFFFFF)
        counter = channel * 2**30 + row * 2**15 + column
        value = _mix32(_mix32((counter * 0x9E3779B1 + first) & 0xFFFFFFFF) ^ second)
        assert uniform[sample, channel, row, column].item() == ((value >> 9) + 0.5) / 2**23
