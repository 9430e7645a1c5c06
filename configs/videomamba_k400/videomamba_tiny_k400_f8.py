# Official VideoMamba-T Kinetics-400 model, 8 frames at 224 (checkpoint videomamba_t16_k400_f8_res224.pth;
# published top-1 76.9, 4 clips x 3 crops).
_base_ = ['../_base_/models/videomamba_recognizer.py', '../_base_/datasets/kinetics400_test.py',
          '../_base_/default_runtime_action.py']
model = dict(backbone=dict(arch='videomamba_tiny'), cls_head=dict(in_channels=192))
