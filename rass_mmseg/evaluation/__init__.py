from .metrics import RestorationMetric

__all__ = ['RestorationMetric']
