# MTR, training-free: tokens leave after layers 6, 9, 12, 15 and 18; r per layer is solved from the
# FLOPs target (so any method swapped in runs at the same FLOPs).
# The layer set is chosen on a validation split, never on the test images (docs/benchmarks.md §3):
# on our Fashion classifier's validation images it beat [4, 8, 12, 16, 20] and [5, 9, 13, 17, 21]
# for MTR at -30 % FLOPs (56.7 vs 30.8 and 22.5 % top-1). Dense heads
# read layer 5 first, so with this set their first map is still complete; later maps are partly
# restored (model.backbone.reduction.restore: unmerge, stale, zero, similarity).
# Switch the method with --cfg-options model.backbone.reduction.method=tome (random, evit, tome,
# pumer, utr, hsa), the target with model.backbone.reduction.schedule.flops_reduction=0.3.
reduction = dict(
    # MTR's knobs are its defaults (mtr_mm/reduction/mtr.py), chosen on the same validation images.
    method=dict(type='mtr'),  # a dict, so knobs can be set from the command line (method.keep_ratio=0.25)
    schedule=dict(layers=[6, 9, 12, 15, 18], flops_reduction=0.4),
    restore='unmerge')
