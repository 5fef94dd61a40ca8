from .degradation_data_preprocessor import DegradationDataPreProcessor

__all__ = ['DegradationDataPreProcessor']
