import json
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SHARED = os.path.join(ROOT, "..", "shared")
FIXTURE_NAMES = sorted(d for d in os.listdir(FIXTURES) if os.path.exists(os.path.join(FIXTURES, d, "reference.json")))


def load_fixture(name):
    d = os.path.join(FIXTURES, name)
    with open(os.path.join(d, "reference.json")) as f:
        ref = json.load(f)
    logits = np.load(os.path.join(d, ref["logits_file"]))
    return d, ref, [logits[k] for k in ref["logits_keys"]]


def shared_path(*parts):
    p = os.path.join(SHARED, *parts)
    if not os.path.exists(p):
        pytest.skip(f"{p} is not available")
    return p
