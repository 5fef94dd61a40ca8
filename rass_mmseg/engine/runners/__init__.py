from .input_checking_runner import InputCheckingRunner
from .input_paths import check_input_paths, missing_input_paths

__all__ = ['InputCheckingRunner', 'check_input_paths', 'missing_input_paths']
