from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .detectron2_optim_wrapper_constructor import Detectron2OptimWrapperConstructor

__all__ = ['CPUAmpOptimWrapper', 'Detectron2OptimWrapperConstructor']
