"""Where the tests find the real sample data: tests/data in the repository (COCO, ADE20K and ImageNet
samples, licences in tests/data/README.md), so a clone alone runs the suite; MTR_SHARED_DATA may name
another folder of the same layout."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('MTR_SHARED_DATA', REPO / 'tests' / 'data'))
if not (SHARED_DATA / 'ade_sample').is_dir():
    raise FileNotFoundError(f'the real sample data is missing: {SHARED_DATA} has no ade_sample/. Unset '
                            'MTR_SHARED_DATA to use tests/data, or point it at a folder of that layout.')
