"""Regenerate torchvision_reference.json (needs torchvision; not run by the tests).

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch torchvision
    /tmp/tv/bin/python tests/data/make_torchvision_fixture.py

Records, for torchvision's mobilenet_v3_large, mobilenet_v3_small and mnasnet1_0,
the state dict's entry shapes in order, and the logits for a fixed input after
`fill_by_order`, so the tests can check that our reference nets load torchvision
weights by order and compute the same function, without torchvision installed.
"""

import json
import sys
from pathlib import Path

import torch
import torchvision

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from helpers import fill_by_order, fixed_input  # noqa: E402

MODELS = {"mobilenet_v3_large": "mobilenet_v3_large",
          "mobilenet_v3_small": "mobilenet_v3_small",
          "mnasnet_b1": "mnasnet1_0"}

out = {"torchvision": torchvision.__version__, "resolution": 224, "models": {}}
for ours, theirs in MODELS.items():
    model = getattr(torchvision.models, theirs)(weights=None).eval()
    fill_by_order(model)
    with torch.no_grad():
        logits = model(fixed_input(224))[0]
    out["models"][ours] = {
        "torchvision_name": theirs,
        "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        "logits": [round(float(x), 6) for x in logits],
    }
    print(ours, len(out["models"][ours]["state_dict"]), float(logits.abs().mean()))
(HERE / "torchvision_reference.json").write_text(json.dumps(out) + "\n")
