from .restoration_metric import RestorationMetric

__all__ = ['RestorationMetric']
