# MTR for dense backbones: the method and FLOPs target of the classification setting, but the
# layer set starts at layer 5, the first feature the segmentation head reads; reducing earlier
# would hand every output map restored tokens, which costs the most accuracy. (A reduction "at
# layer i" happens after block i, so the layer-5 map is still complete.)
# With the first 6 layers at full length, a uniform r per layer reaching 40 % fewer FLOPs leaves
# few tokens for the last layers: at 512x512 (1024 tokens) ~200 leave at each of the 5 layers and
# under 25 remain for layers 22-23 (Vim-T: 7); at 1024x1024 (4096 tokens) ~850 leave per layer.
# Later output maps are therefore mostly restored (model.backbone.reduction.restore: unmerge,
# stale, zero, similarity).
_base_ = ['./mtr.py']
reduction = dict(schedule=dict(layers=[5, 9, 13, 17, 21]))
