# MTR, training-free, the dense default (segmentation and detection): tokens leave after layers 4, 8,
# 12, 16 and 20 with MTR's code-default knobs (mtr_mm/reduction/mtr.py); the rest (FLOPs target,
# restoration) is the classification base _base_/reductions/mtr.py.
# Chosen on a validation split, never on the test images (docs/benchmarks.md §4): on the Vim-T + UperNet
# Fashion-scenes segmenter (fine-tuned from the demo classifier, 26.0 mIoU unreduced), 150 validation
# scenes disjoint from the 300 test scenes, unmerge restoration, MTR at -30 % FLOPs (only layer sets
# were candidates): [4, 8, 12, 16, 20] 22.09 val mIoU against 14.27 for [6, 9, 12, 15, 18] and 15.45 for
# [5, 9, 13, 17, 21]. On test, 22.70 / 21.03 / 19.91 against 17.06 / 15.12 / 14.49 mIoU for
# [6, 9, 12, 15, 18] at -20 / -30 / -40 % (paired differences +5.6 [+4.5, +6.9], +5.9 [+4.8, +7.0],
# +5.4 [+4.4, +6.4]). Detection has no trained model here: it follows the segmenter's choice.
# Dense heads read layer 5 first: with layer 4 reducing, their first map is already reduced, and every
# map they read is partly restored (model.backbone.reduction.restore: unmerge, stale, zero, similarity).
_base_ = './mtr.py'
reduction = dict(
    method=dict(_delete_=True, type='mtr'),  # MTR's code-default knobs, not the classifier's keep_ratio=0.5
    schedule=dict(layers=[4, 8, 12, 16, 20]))
