# The pretrained tiny SD RASS model on low-quality textures: training batches degraded on the fly, val/test batches
# with a fixed seed per image. Trained as it is: the ablation "RASS without SCR"; trained with the SCR adapter
# (configs/scr/scr_tiny-sd-textures_1xb4-300it_textures-128x128.py, exported by
# tools/model_converters/export_adapter.py) merged: RASS. Testing a checkpoint of the clean config with this config
# is the DT protocol.
#   --cfg-options \
#   "model.backbone.merge_adapters=['work_dirs/scr_tiny-sd-textures_1xb4-300it_textures-128x128/scr_adapter_iter_300']"
_base_ = ['./rass_tiny-sd-textures_segformer-head_1xb4-300it_textures-128x128.py', '../_base_/degradation.py']
model = dict(data_preprocessor=dict(_base_.degradation_preprocessor, _delete_=True, degrade='always'))
