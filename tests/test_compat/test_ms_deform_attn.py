"""The MSDeformAttn routing of rass_mmseg.compat.ms_deform_attn: decisions, and the fallback against float64."""
import itertools

import pytest
import torch
from mmcv.ops import multi_scale_deform_attn

from rass_mmseg.compat import ms_deform_attn
from rass_mmseg.compat.ms_deform_attn import RoutedMSDeformAttnFunction, choose_route

SHAPES = [(4, 5), (2, 3)]  # (H, W) of each level


@pytest.mark.parametrize('device,dtype,ext_cuda,route', [
    ('cuda', torch.float32, True, 'kernel'),
    ('cuda', torch.float16, True, 'kernel'),
    ('cuda', torch.float64, True, 'kernel'),
    ('cuda', torch.bfloat16, True, 'kernel_float32'),
    ('cuda', torch.float32, False, 'pytorch'),
    ('cuda', torch.bfloat16, False, 'pytorch'),
    ('cpu', torch.float32, True, 'pytorch'),
    ('cpu', torch.bfloat16, False, 'pytorch'),
])
def test_route_for_each_device_dtype_and_ext(device, dtype, ext_cuda, route):
    assert choose_route(device, dtype, ext_cuda) == route


@pytest.mark.parametrize('answer,expected', [(lambda: 'not available', False), (lambda: '13.0', True),
                                             (lambda: 1 / 0, False)])
def test_ext_cuda_detection_with_real_and_stand_in_exts(monkeypatch, answer, expected):
    import mmcv.ops
    monkeypatch.setattr(ms_deform_attn, '_ext_cuda', None)
    monkeypatch.setattr(mmcv.ops, 'get_compiling_cuda_version', answer)
    assert ms_deform_attn.ext_has_cuda_kernels() is expected


def test_this_machines_ext_is_read(monkeypatch):
    from mmcv.ops import get_compiling_cuda_version
    monkeypatch.setattr(ms_deform_attn, '_ext_cuda', None)
    assert ms_deform_attn.ext_has_cuda_kernels() is (get_compiling_cuda_version() != 'not available')


def test_mmcv_module_reads_the_routed_function():
    assert multi_scale_deform_attn.MultiScaleDeformableAttnFunction is RoutedMSDeformAttnFunction
    assert RoutedMSDeformAttnFunction.kernel.__name__ == 'MultiScaleDeformableAttnFunction'
    assert ms_deform_attn.install()  # idempotent: the kernel stays mmcv's own
    assert RoutedMSDeformAttnFunction.kernel.__name__ == 'MultiScaleDeformableAttnFunction'


def test_the_routed_function_stays_mmcvs_autograd_function(monkeypatch):
    """Tools that look the function up by name (export rewriters patch its ``forward`` or ``symbolic``) find an
    autograd Function of mmcv's type, and the kernel route runs as that class through autograd."""
    looked_up = multi_scale_deform_attn.MultiScaleDeformableAttnFunction
    assert issubclass(looked_up, torch.autograd.Function)
    assert issubclass(looked_up, RoutedMSDeformAttnFunction.kernel)
    assert RoutedMSDeformAttnFunction.kernel.__module__ == 'mmcv.ops.multi_scale_deform_attn'
    assert RoutedMSDeformAttnFunction.backward is RoutedMSDeformAttnFunction.kernel.backward
    calls = []

    def rewritten_forward(ctx, value, shapes, start, locations, weights, im2col_step):
        calls.append('forward')
        ctx.save_for_backward(value)
        return value.flatten(2)[:, :locations.shape[1]] * 2

    def rewritten_backward(ctx, grad_output):
        calls.append('backward')
        grad_value = torch.zeros_like(ctx.saved_tensors[0]).flatten(2)
        grad_value[:, :grad_output.shape[1]] = grad_output * 2
        return grad_value.view_as(ctx.saved_tensors[0]), None, None, None, None, None

    monkeypatch.setattr(looked_up, 'forward', staticmethod(rewritten_forward))
    monkeypatch.setattr(looked_up, 'backward', staticmethod(rewritten_backward))
    monkeypatch.setattr(ms_deform_attn, 'choose_route', lambda *args: 'kernel')
    value, shapes, start, locations, weights = make_inputs()
    value.requires_grad_(True)
    output = looked_up.apply(value, shapes, start, locations, weights, 64)
    assert type(output.grad_fn).__name__ == 'RoutedMSDeformAttnFunctionBackward'
    output.sum().backward()
    assert calls == ['forward', 'backward']
    assert torch.equal(value.grad.flatten(2)[:, :3], torch.full((2, 3, 6), 2.0))


def make_inputs(dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    bs, heads, dims, queries, points = 2, 2, 3, 3, 2
    keys = sum(h * w for h, w in SHAPES)
    value = torch.randn(bs, keys, heads, dims, generator=generator)
    # locations in [-0.2, 1.2]: some samples fall partly or wholly outside the map (zero padding)
    locations = torch.rand(bs, queries, heads, len(SHAPES), points, 2, generator=generator) * 1.4 - 0.2
    weights = torch.rand(bs, queries, heads, len(SHAPES), points, generator=generator)
    shapes = torch.tensor(SHAPES)
    start = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    return value.to(dtype), shapes, start, locations, weights.to(dtype)


def reference(value, locations, weights):
    """Deformable attention by its definition, in float64: bilinear samples (zero outside, pixel centres at
    (i + 0.5) / size), weighted and summed over levels and points."""
    value, locations, weights = value.double(), locations.double(), weights.double()
    bs, _, heads, dims = value.shape
    queries = locations.shape[1]
    out = torch.zeros(bs, queries, heads, dims, dtype=torch.float64)
    offsets = [0]
    for h, w in SHAPES:
        offsets.append(offsets[-1] + h * w)
    for b, q, m in itertools.product(range(bs), range(queries), range(heads)):
        for level, (h, w) in enumerate(SHAPES):
            grid = value[b, offsets[level]:offsets[level + 1], m].reshape(h, w, dims)
            for p in range(locations.shape[4]):
                x = locations[b, q, m, level, p, 0].item() * w - 0.5
                y = locations[b, q, m, level, p, 1].item() * h - 0.5
                x0, y0 = int(torch.floor(torch.tensor(x))), int(torch.floor(torch.tensor(y)))
                sample = torch.zeros(dims, dtype=torch.float64)
                for yy, xx in itertools.product((y0, y0 + 1), (x0, x0 + 1)):
                    if 0 <= yy < h and 0 <= xx < w:
                        sample += (1 - abs(x - xx)) * (1 - abs(y - yy)) * grid[yy, xx]
                out[b, q, m] += weights[b, q, m, level, p].item() * sample
    return out.reshape(bs, queries, heads * dims)


@pytest.mark.parametrize('dtype,tolerance', [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
def test_pytorch_fallback_equals_the_float64_definition(monkeypatch, dtype, tolerance):
    monkeypatch.setattr(ms_deform_attn, 'choose_route', lambda *args: 'pytorch')
    value, shapes, start, locations, weights = make_inputs(dtype)
    output = RoutedMSDeformAttnFunction.apply(value, shapes, start, locations, weights, 64)
    assert output.dtype == dtype and output.shape == (2, 3, 6)
    expected = reference(value, locations, weights)
    assert torch.allclose(output.double(), expected, atol=tolerance, rtol=tolerance)


def test_bf16_runs_the_kernel_in_float32_and_casts_back_logged_once(monkeypatch):
    calls, logs = [], []

    def fake_kernel_forward(ctx, value, shapes, start, locations, weights, im2col_step):
        calls.append({t.dtype for t in (value, locations, weights)})
        return reference(value, locations, weights).float()

    # the compiled kernel stands behind mmcv's autograd forward (this machine's ext may have no kernel)
    monkeypatch.setattr(RoutedMSDeformAttnFunction, 'forward', staticmethod(fake_kernel_forward))
    monkeypatch.setattr(ms_deform_attn, 'choose_route', lambda *args: 'kernel_float32')
    monkeypatch.setattr(ms_deform_attn, '_logged', set())
    monkeypatch.setattr(ms_deform_attn, 'print_log', lambda message, **kwargs: logs.append(message))
    value, shapes, start, locations, weights = make_inputs(torch.bfloat16)
    for _ in range(2):
        output = RoutedMSDeformAttnFunction.apply(value, shapes, start, locations, weights, 64)
    assert calls == [{torch.float32}] * 2
    assert output.dtype == torch.bfloat16
    assert torch.allclose(output.double(), reference(value, locations, weights), atol=5e-2)
    assert len(logs) == 1 and 'bfloat16' in logs[0] and 'float32' in logs[0]


def test_fallback_is_differentiable_like_mmcv_on_cpu(monkeypatch):
    monkeypatch.setattr(ms_deform_attn, 'choose_route', lambda *args: 'pytorch')
    value, shapes, start, locations, weights = make_inputs()
    leaves = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    RoutedMSDeformAttnFunction.apply(leaves[0], shapes, start, leaves[1], leaves[2], 64).square().sum().backward()
    mmcv_leaves = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    multi_scale_deform_attn.multi_scale_deformable_attn_pytorch(mmcv_leaves[0], shapes, mmcv_leaves[1],
                                                                mmcv_leaves[2]).square().sum().backward()
    for ours, theirs in zip(leaves, mmcv_leaves):
        assert torch.equal(ours.grad, theirs.grad)

