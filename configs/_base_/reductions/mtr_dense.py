# MTR for dense backbones. Same method and FLOPs target as the classification setting, but the
# layer set starts at layer 5, the first feature the segmentation head reads: reducing earlier
# would hand every output map restored tokens and costs the most accuracy. (A reduction "at layer
# i" happens after block i, so the layer-5 map is still complete.) With 1024 tokens (512x512) a
# 40 % target removes ~200 tokens at each of the 5 layers.
_base_ = ['./mtr.py']
reduction = dict(schedule=dict(layers=[5, 9, 13, 17, 21]))
