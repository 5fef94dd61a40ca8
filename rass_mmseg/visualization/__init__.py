from .side_by_side_visualizer import SideBySideSegVisualizer

__all__ = ['SideBySideSegVisualizer']
