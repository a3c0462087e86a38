"""scripts/compare_results.py: the before/after check of a refactor that must keep every saved number."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_results", ROOT / "scripts" / "compare_results.py")
compare_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_results)


def row(acc=0.5, seconds=1.0, saved="2026-01-01 00:00:00", probe10=(0.1, 0.2)):
    return {"method": "m", "probe": {"10": list(probe10), "all": [acc]}, "knn": 0.3, "finetune": [],
            "compute": {"images": 10, "steps": 2, "seconds": seconds}, "saved": saved, "source": "02_x"}


def write(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


def test_rows_differing_only_in_clock_fields_are_the_same(tmp_path, capsys):
    a = write(tmp_path, "a.json", {"m": row()})
    b = write(tmp_path, "b.json", {"m": row(seconds=99.0, saved="2027-05-05 12:00:00")})
    assert compare_results.main([str(a), str(b)]) == 0
    assert "m: same" in capsys.readouterr().out


@pytest.mark.parametrize("after, field", [
    (row(acc=0.5000000000000001), "probe.all.0"),  # the last digit counts: no tolerance
    (row(probe10=(0.1,)), "probe.10.#len"),  # a label draw lost
    ({**row(), "compute": {"images": 11, "steps": 2, "seconds": 1.0}}, "compute.images"),
    ({**row(), "knn": 0}, "knn"),  # 0 (int) is not 0.3, and an int is not a float of the same value either
])
def test_any_other_difference_is_reported_with_its_field(tmp_path, capsys, after, field):
    a = write(tmp_path, "a.json", {"m": row()})
    b = write(tmp_path, "b.json", {"m": after})
    assert compare_results.main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "m: DIFFERS" in out and f"    {field}:" in out


def test_a_type_change_alone_is_a_difference():
    assert compare_results.differences({"m": {"knn": 1}}, {"m": {"knn": 1.0}}) == {"m": ["knn: 1 -> 1.0"]}


def test_a_row_on_one_side_only_is_a_difference(tmp_path, capsys):
    a = write(tmp_path, "a.json", {"m": row()})
    b = write(tmp_path, "b.json", {"m": row(), "n": row()})
    assert compare_results.main([str(a), str(b)]) == 1
    assert "n: DIFFERS\n    row only in after" in capsys.readouterr().out


def test_a_file_that_is_not_a_store_is_refused(tmp_path, capsys):
    a = write(tmp_path, "a.json", {"m": row()})
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SystemExit) as e:
        compare_results.main([str(a), str(bad)])
    assert e.value.code == 2 and "expected a JSON object of rows by method name" in capsys.readouterr().err
