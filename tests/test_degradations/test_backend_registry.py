"""Operations chosen once: each op set is a backend class that the pipeline picks at construction and then asks;
the package exports the engine's API, and its modules import one another without a cycle."""
import ast
import glob
import os.path as osp

import pytest
import torch

import rass_mmseg.degradations as degradations
from rass_mmseg.degradations import SecondOrderDegradation
from rass_mmseg.degradations.backend_registry import OP_SETS, OPS_ALIASES
from rass_mmseg.degradations.basicsr_backend import BasicSRTorchBackend
from rass_mmseg.degradations.opencv_backend import OpenCVBackend
from rass_mmseg.degradations.torch_backend import TorchBackend
from tests.test_degradations.helpers import keyed, photo

ENGINE_API = {
    'BACKENDS', 'OPS', 'DegradationBackend', 'GeneratorRandomSource', 'KeyedRandomSource', 'RandomSource',
    'SecondOrderDegradation', 'build_degradation', 'image_identity'
}


class RecordingBackend(TorchBackend):
    """A new op set: the libjpeg operations, stage 1 on the scale-factor grid, JPEG qualities up to 90."""

    ops = 'recording'
    scale_factor_first_resize = True
    resizes = []

    @classmethod
    def check_jpeg_range(cls, key, jpeg_range):
        if jpeg_range[1] > 90:
            raise ValueError(f'{key} above 90')

    def resize(self, batch, sizes, out_sizes, modes, canvas, scales=None):
        RecordingBackend.resizes.append(scales is not None)
        return super().resize(batch, sizes, out_sizes, modes, canvas, scales)


def test_each_op_set_is_a_backend_class_by_library():
    assert OP_SETS == {'libjpeg': {'torch': TorchBackend, 'opencv': OpenCVBackend},
                       'basicsr': {'torch': BasicSRTorchBackend}}
    assert OPS_ALIASES == {'public_rass': 'basicsr'} and degradations.OPS == ('libjpeg', 'basicsr')
    for ops, classes in OP_SETS.items():
        assert all(cls.ops == ops and cls.name == library for library, cls in classes.items())


def test_the_pipeline_asks_the_backend_class_of_its_op_set(monkeypatch):
    monkeypatch.setitem(OP_SETS, 'recording', {'torch': RecordingBackend})
    with pytest.raises(ValueError, match='jpeg_range2 above 90'):
        SecondOrderDegradation(ops='recording', jpeg_range=[30, 90], jpeg_range2=[30, 95])
    engine = SecondOrderDegradation(ops='recording', jpeg_range=[30, 90], jpeg_range2=[30, 90])
    assert engine.ops == 'recording' and type(engine.backend_for(torch.device('cpu'))) is RecordingBackend
    RecordingBackend.resizes.clear()
    images = photo(32).expand(2, -1, -1, -1).contiguous()
    degraded = engine(images, keyed(2))
    assert RecordingBackend.resizes == [True, False, False]  # stage 1 on the scale-factor grid, as the class says
    # chosen once: the registry is not read again after construction
    monkeypatch.delitem(OP_SETS, 'recording')
    assert torch.equal(engine(images, keyed(2)), degraded)


def test_the_package_exports_the_engine_api():
    assert set(degradations.__all__) == ENGINE_API
    assert all(hasattr(degradations, name) for name in ENGINE_API)


def _imported_modules(path: str) -> set:
    """The sibling modules a module of the package imports, at any depth (function-level imports included)."""
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module] if node.module else [alias.name for alias in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('rass_mmseg.degradations.'):
            names.add(node.module.split('.')[2])
    return names


def test_the_modules_of_the_package_import_one_another_without_a_cycle():
    package = osp.dirname(degradations.__file__)
    graph = {osp.basename(path)[:-3]: _imported_modules(path)
             for path in glob.glob(osp.join(package, '*.py')) if not path.endswith('__init__.py')}
    state = {}

    def visit(module, trail):
        if state.get(module) == 'done':
            return
        assert state.get(module) != 'open', f'import cycle: {" -> ".join(trail + [module])}'
        state[module] = 'open'
        for imported in sorted(graph.get(module, ())):
            visit(imported, trail + [module])
        state[module] = 'done'

    for module in sorted(graph):
        visit(module, [])
