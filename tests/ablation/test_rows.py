"""`mpdit ablation`'s rows are the paper's rows: names, switches, and the audit's GFLOPs within 0.1
of the printed ones at B and XL; rows that build the same network train once."""
import pytest

from mpdit.ablation.rows import ablation_rows
from mpdit.ablation.runner import IMAGENET_LATENTS, describe, pending

UPGRADES = {"shared_adaln": True, "learn_sigma": False, "class_tokens": 16, "time_embed": "fno"}
# As printed (ImageNet 256): label, model, switches, params (M), GFLOPs, FID. Written out here, not read
# from mpdit.audit.paper, so that a wrong figure there fails.
TABLE_1 = [("DiT-B/2", "DiT-B/2", {}, 130.0, 23.0, 34.84),
           ("+ shared AdaLN", "DiT-B/2", {"shared_adaln": True, "learn_sigma": False}, 90.3, 22.9, 35.31),
           ("+ 16 class tokens", "DiT-B/2", {"shared_adaln": True, "learn_sigma": False, "class_tokens": 16}, 101.9,
            24.3, 28.56),
           ("+ FNO time embedding", "DiT-B/2", UPGRADES, 101.2, 24.3, 24.52),
           ("+ MPDiT (k = 6)", "DiT-B/2", {**UPGRADES, "fine_depth": 6}, 104.8, 16.6, 24.74)]
TABLE_4 = {"B": [("DiT-B/2 + upgrades", "DiT-B/2", UPGRADES, 101.2, 24.3, 24.52),
                 ("MPDiT-B k = 4", "MPDiT-B", {"fine_depth": 4}, 104.8, 13.9, 26.94),
                 ("MPDiT-B k = 6", "MPDiT-B", {"fine_depth": 6}, 104.8, 16.6, 24.74),
                 ("MPDiT-B k = 8", "MPDiT-B", {"fine_depth": 8}, 104.8, 19.3, 24.62)],
           "XL": [("DiT-XL/2 + upgrades", "DiT-XL/2", UPGRADES, 473.1, 125.5, 9.22),
                  ("MPDiT-XL k = 4", "MPDiT-XL", {"fine_depth": 4}, 481.2, 53.2, 11.11),
                  ("MPDiT-XL k = 6", "MPDiT-XL", {"fine_depth": 6}, 481.2, 59.3, 9.92),
                  ("MPDiT-XL k = 8", "MPDiT-XL", {"fine_depth": 8}, 481.2, 65.4, 9.73)]}


@pytest.mark.parametrize("table, size, printed", [("1", "B", TABLE_1), ("4", "B", TABLE_4["B"]),
                                                  ("4", "XL", TABLE_4["XL"])], ids=["1-B", "4-B", "4-XL"])
def test_the_rows_are_the_papers_rows(table, size, printed):
    described = describe(ablation_rows(table, size), IMAGENET_LATENTS)
    assert [(r["label"], r["model"], r["overrides"]) for r in described] == [p[:3] for p in printed]
    for row, (label, _, _, params, gflops, fid) in zip(described, printed):
        assert (row["paper_params_m"], row["paper_gflops"], row["paper_fid"]) == (params, gflops, fid), label
        assert abs(row["gflops"] - gflops) <= 0.1, f"{label}: the audit counts {row['gflops']:.2f} GFLOPs"
        assert abs(row["params_m"] - params) <= 0.6, label  # the paper prints DiT-B/2's 130.5 M as 130.0


def test_at_another_size_the_rows_keep_their_switches_and_name_the_papers_size():
    rows = ablation_rows("all", "S")
    assert [row.label for row in rows] == ["DiT-S/2", "+ shared AdaLN", "+ 16 class tokens", "+ FNO time embedding",
                                           "+ MPDiT (k = 6)", "DiT-S/2 + upgrades", "MPDiT-S k = 4", "MPDiT-S k = 6",
                                           "MPDiT-S k = 8"]
    assert [row.overrides for row in rows[:5]] == [p[2] for p in TABLE_1]
    assert {row.paper_size for row in rows} == {"B"}
    assert {row.paper_size for row in ablation_rows("4", "L")} == {"XL"}


def test_rows_that_build_one_network_train_once_per_seed():
    described = describe(ablation_rows("all", "S"), {"in_channels": 1, "latent_size": 16, "num_classes": 10})
    network = {row["key"]: row["network"] for row in described}
    assert network["fno-time"] == network["upgrades"] and network["mpdit-k6"] == network["k6"]
    assert len(set(network.values())) == 7
    todo = pending(described, (0, 1), done={(network["dit"], 1)})
    assert len(todo) == 13  # 7 networks x 2 seeds, less the one done
    assert len({(row["network"], seed) for row, seed in todo}) == 13


@pytest.mark.parametrize("table, size, keys, message", [
    ("2", "B", None, "table='2': expected one of 1, 4, all"),
    ("1", "M", None, "size='M': expected one of S, B, L, XL"),
    ("1", "B", ("k4",), "rows='k4': not a row of table 1; expected some of dit, shared-adaln, class-tokens"),
])
def test_an_unknown_table_size_or_row_is_refused(table, size, keys, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ablation_rows(table, size, keys)
