"""Build the degradation engine from config keys, naming any unknown key."""
import inspect
from typing import Any, Dict, Optional

from .second_order_degradation import SecondOrderDegradation

__all__ = ['build_degradation']


def build_degradation(degradation: Optional[Dict[str, Any]]) -> SecondOrderDegradation:
    """Build the engine from a config dict, naming any unknown key.

    Args:
        degradation: Keyword arguments of :class:`SecondOrderDegradation`; ``None`` for the RASS defaults.

    Returns:
        The engine.
    """
    degradation = dict(degradation or {})
    known = inspect.signature(SecondOrderDegradation.__init__).parameters
    unknown = sorted(key for key in degradation if key not in known or key == 'self')
    if unknown:
        raise ValueError(f'unknown degradation key(s) {unknown}; expected keys of SecondOrderDegradation: '
                         f'{sorted(key for key in known if key != "self")}')
    return SecondOrderDegradation(**degradation)
