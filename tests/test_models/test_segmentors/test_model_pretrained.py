"""The constructor guard the three segmentors share: model.pretrained is refused in one line, before any build."""
import pytest
from mmseg.registry import MODELS

#: Each segmentor, arguments that would fail to build (so the guard must come first), and where its weights come from.
SEGMENTORS = [
    ('RASSEncoderDecoder', dict(backbone=dict(type='NoSuchBackbone'), decode_head=dict(type='NoSuchHead')),
     r'backbone\.pretrained \(the Stable Diffusion folder\)'),
    ('SemanticConstrainedRestorer', dict(backbone=dict(type='NoSuchBackbone'), decode_head=dict(type='NoSuchHead')),
     r'backbone\.pretrained \(the Stable Diffusion folder\)'),
    ('RestoreThenSegment', dict(restorer='no_such_restorer.py', segmentor='no_such_segmentor.py'),
     'restorer_checkpoint and segmentor_checkpoint'),
]


@pytest.mark.parametrize('segmentor, arguments, weights_from', SEGMENTORS)
def test_model_pretrained_is_refused_first_in_one_line(segmentor, arguments, weights_from):
    match = (rf"{segmentor}: the weights come from {weights_from}, not model\.pretrained \(got "
             r"pretrained='checkpoints/x\.pth'\); leave model\.pretrained None")
    with pytest.raises(ValueError, match=match) as error:
        MODELS.build(dict(type=segmentor, pretrained='checkpoints/x.pth', **arguments))
    assert '\n' not in str(error.value)
