"""Which backend class carries out each set of operations: the values of the ``ops`` and ``backend`` keys.

An op set (``ops``) is what the steps compute; a backend (``backend``) is the library that computes them. Every op
set has a torch backend (any device); the libjpeg-faithful one also runs on OpenCV (CPU). The pipeline
(:class:`.SecondOrderDegradation`) looks its op set up here once, at construction, and then asks the backend
class, never the ``ops`` value, what to do.
"""
from typing import Dict, Tuple, Type

from .basicsr_backend import BasicSRTorchBackend
from .degradation_backend import DegradationBackend
from .opencv_backend import OpenCVBackend
from .torch_backend import TorchBackend

__all__ = ['BACKENDS', 'OPS', 'OPS_ALIASES', 'OP_SETS', 'backend_classes']

#: Backend classes of each op set, by the value of the ``backend`` key.
OP_SETS: Dict[str, Dict[str, Type[DegradationBackend]]] = {
    'libjpeg': {'torch': TorchBackend, 'opencv': OpenCVBackend},
    'basicsr': {'torch': BasicSRTorchBackend},
}
#: Values of the ``ops`` key: the libjpeg-faithful operations and BasicSR's (those of the public RASS code).
OPS: Tuple[str, ...] = tuple(OP_SETS)
#: Other names of op sets: ``'public_rass'`` is BasicSR's (the public RASS code calls BasicSR's functions).
OPS_ALIASES: Dict[str, str] = {'public_rass': 'basicsr'}
#: Values of the ``backend`` key: ``'auto'`` (OpenCV for CPU tensors where the op set has it, torch otherwise) or
#: a library.
BACKENDS: Tuple[str, ...] = ('auto', 'torch', 'opencv')


def backend_classes(ops: str, backend: str) -> Tuple[str, Dict[str, Type[DegradationBackend]]]:
    """The op set named ``ops`` (an alias gives its op set's own name) and its backend classes by library.

    Args:
        ops: Value of the ``ops`` key.
        backend: Value of the ``backend`` key, checked against the op set.

    Returns:
        ``(name, classes)``: the op set's name and its backend classes by the values of ``backend``.

    Raises:
        ValueError: In one line, an unknown ``backend`` or ``ops``, or a backend the op set does not run on.
    """
    if backend not in BACKENDS:
        raise ValueError(f"degradation key 'backend' must be one of {list(BACKENDS)}, got {backend!r}")
    name = OPS_ALIASES.get(ops, ops)
    if name not in OP_SETS:
        aliases = ', '.join(f'{alias!r} for {target!r}' for alias, target in OPS_ALIASES.items())
        raise ValueError(f"degradation key 'ops' must be one of {list(OP_SETS)} (or {aliases}), got {ops!r}")
    classes = OP_SETS[name]
    if backend != 'auto' and backend not in classes:
        having = ' or '.join(f'ops={other!r}' for other, libraries in OP_SETS.items() if backend in libraries)
        raise ValueError(f'degradation backend {backend!r} implements {having} only, got ops={ops!r}; use '
                         f"backend='auto' or 'torch'")
    return name, classes
