"""Where the tests find the real sample data: ../shared/data beside the repository (as on CI), or
the folder named by MTR_SHARED_DATA."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('MTR_SHARED_DATA', REPO.parent / 'shared' / 'data'))
if not (SHARED_DATA / 'ade_sample').is_dir():
    raise FileNotFoundError(f'the real sample data is missing: {SHARED_DATA} has no ade_sample/. Put shared/data '
                            'beside the repository or set MTR_SHARED_DATA to it.')
