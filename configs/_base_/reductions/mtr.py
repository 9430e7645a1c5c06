# MTR, training-free: tokens leave after layers 4, 8, 12, 16 and 20 (same layer set for every
# method, so comparisons are at equal FLOPs); r per layer is solved from the FLOPs target.
# Switch the method with --cfg-options model.backbone.reduction.method=tome (random, evit, tome,
# pumer, utr, hsa), the target with model.backbone.reduction.schedule.flops_reduction=0.3.
reduction = dict(
    method=dict(type='mtr'),  # a dict, so knobs can be set from the command line (method.keep_ratio=0.25)
    schedule=dict(layers=[4, 8, 12, 16, 20], flops_reduction=0.4),
    restore='unmerge')
