from .two_step_distributed_data_parallel import TwoStepDistributedDataParallel

__all__ = ['TwoStepDistributedDataParallel']
