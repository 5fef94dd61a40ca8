# The embedded default on low-quality data: training batches are degraded on the fly (Real-ESRGAN second order, as
# the paper trains) and val/test batches are degraded with a fixed seed per image (an on-the-fly LQ benchmark).
# Testing a checkpoint of the clean config with this config is the DT protocol.
_base_ = ['./rass_tiny-sd_segformer-head_1xb4-300it_textures-128x128.py', '../_base_/degradation.py']
model = dict(data_preprocessor=dict(_base_.degradation_preprocessor, _delete_=True, degrade='always'))
