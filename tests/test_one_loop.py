"""The one loop at K = 1 against plain torch: the member's own nn modules trained by torch.optim in a loop written
here, on the same batch order, agree with the harness's records within 1e-9 in float64 over 100 steps, for every
family and option the grouped twin tests cover (tests/test_grouped.py CASES)."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from harness.data import load_dataset
from harness.group import build_member_model
from harness.optimizers import make_optimizer
from harness.resolve import resolve
from harness.train import run
from tests.test_grouped import CASES, STEPS

RTOL = 1e-9


def plain_torch(config) -> dict[tuple[int, str, str], float]:
    """(step, split, metric) -> value: the window-mean training loss at each log step and the validation and
    test losses at each evaluation, of the model trained by torch alone."""
    t, d = config.trainer, config.dataset
    data = load_dataset(d.name, d.root, d.download, d.train_size, d.val_fraction, torch.device("cpu"))
    data = data.astype(torch.float64)
    model = build_member_model(resolve(config), data)  # the seeded nn modules a run starts from
    optimizer = make_optimizer(model, t)  # torch.optim's own Adam, AdamW or SGD
    order = torch.Generator().manual_seed(config.seed)
    perm, position, window, records = torch.randperm(len(data.x_train), generator=order), 0, [], {}
    for step in range(1, t.steps + 1):
        if position + t.batch_size > len(perm):
            perm, position = torch.randperm(len(data.x_train), generator=order), 0
        idx = perm[position : position + t.batch_size]
        position += t.batch_size
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        window.append(loss.item())
        if step % t.log_every == 0:
            records[step, "train", "loss"], window = sum(window) / len(window), []
        if step % t.eval_every == 0:
            model.eval()
            with torch.no_grad():
                records[step, "val", "loss"] = F.cross_entropy(model(data.x_val), data.y_val).item()
                records[step, "test", "loss"] = F.cross_entropy(model(data.x_test), data.y_test).item()
            model.train()
    return records


@pytest.mark.parametrize("case", [pytest.param(k, marks=[pytest.mark.slow] if slow else []) for k, (_, slow)
                                  in CASES.items()])
def test_a_single_run_equals_plain_torch_float64(tiny, tmp_path, case):
    config = tiny(*STEPS, *CASES[case][0], "seed=3", "trainer.weight_decay=0.01")
    summary = run(config, tmp_path / "run", dtype=torch.float64)
    assert summary["status"] == "ok", summary.get("error")
    rows = pd.read_csv(tmp_path / "run" / "metrics.csv")
    rows = rows[rows.layer.isna() & rows.metric.eq("loss")]
    harness = {(r.step, r.split, r.metric): r.value for r in rows.itertuples() if r.step > 0}
    reference = plain_torch(config)
    assert harness.keys() == reference.keys()
    bad = {k: (harness[k], reference[k]) for k in reference if not math.isclose(harness[k], reference[k],
                                                                                rel_tol=RTOL, abs_tol=1e-12)}
    assert not bad, bad
