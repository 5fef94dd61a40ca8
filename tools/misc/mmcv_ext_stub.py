"""Stand-in for mmcv's compiled ``mmcv._ext``, installed as ``mmcv/_ext.py`` next to ``mmcv-lite`` by the GPU kit.

mmcv-lite is mmcv 2.1.0 without compiled ops, and its ``mmcv.ops`` cannot be imported without ``mmcv._ext``: each
op module calls ``mmcv.utils.ext_loader.load_ext('_ext', [names])``, which imports ``mmcv._ext`` and only checks
that every name is an attribute. mmseg and mmdet import ``mmcv.ops`` at start, but RASS calls no compiled op:
Mask2Former's ``MultiScaleDeformableAttention`` runs mmcv's PyTorch implementation on a CPU, and on a GPU through
``rass_mmseg.compat.ms_deform_attn``, which treats an ext whose ``get_compiling_cuda_version`` raises as one without
CUDA kernels. Every attribute here is a function that raises a one-line error naming the op, so a model that does
need a compiled op fails at its first call, never silently.
"""


def __getattr__(name: str):
    """Any op name: a function that raises :class:`RuntimeError` when called."""
    if name.startswith('__'):
        raise AttributeError(name)

    def compiled_op(*args, **kwargs):
        raise RuntimeError(f'mmcv._ext.{name}: mmcv has no compiled ops here (mmcv-lite with the GPU kit\'s '
                           'stand-in _ext); install mmcv 2.1.0 with compiled ops to use this op')

    compiled_op.__name__ = name
    return compiled_op
