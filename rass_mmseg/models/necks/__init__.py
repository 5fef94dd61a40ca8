from .feature_projection import FeatureProjection

__all__ = ['FeatureProjection']
