"""The score-file contract's pieces: column mapping, reading CSV without losing digits,
the looked-up ids in bounded queries, and the derived rows."""

from __future__ import annotations

import numpy as np
import pytest

from cmle.errors import ParameterError
from cmle.model import scoring
from cmle.scoring import external, known_ids
from tests.scoring.external_files import make_profiles, propensities, write_csv


def test_column_map_reads_contract_names_and_refuses_the_rest():
    assert external.parse_column_map(" userid = cid , propensity=p1 ") == {"userid": "cid", "propensity": "p1"}
    assert external.parse_column_map("") == {}
    for bad in ("userid", "userid=", "=cid", "prob=p", "userid=a,userid=b"):
        with pytest.raises(ParameterError):
            external.parse_column_map(bad)


def test_csv_ids_keep_every_digit_and_propensities_parse_per_row(tmp_path):
    ecid = "12345678901234567890123456789012345678"
    path = write_csv(tmp_path / "s.csv", ["userid", "propensity"], [[ecid, "0.25"], ["7", "1"]])
    sf = external.load(str(path))
    assert sf.ids.to_pylist() == [ecid, "7"] and sf.propensity.tolist() == [0.25, 1.0]
    assert not sf.problems and sf.kind == "csv" and sf.model_name == "external"


def test_gzip_csv_is_read(tmp_path):
    import gzip

    path = tmp_path / "s.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("userid,propensity\na,0.5\nb,0.1\n")
    sf = external.load(str(path))
    assert sf.ids.to_pylist() == ["a", "b"] and not sf.problems


def test_derived_rows_follow_cmles_own_scoring(tmp_path):
    p = propensities(500)
    path = write_csv(tmp_path / "s.csv", ["userid", "propensity"], [[f"u{i}", repr(float(v))] for i, v in enumerate(p)])
    sf = external.load(str(path), model_version="3")
    rows = external.score_rows(sf).to_pandas()
    want = scoring.outputs(p, scoring.Reference.from_propensities(p))
    for col in ("score", "percentile", "decile", "bucket"):
        assert rows[col].tolist() == want[col].tolist()
    assert set(rows["model_version"]) == {"3"} and rows["score_date"].notna().all()
    # the file's own distribution is the reference: an average profile scores about 50
    assert abs(float(np.median(rows["percentile"])) - 50) <= 2


def test_unknown_ids_are_found_with_range_and_in_list_queries(platform, settings, monkeypatch):
    ids = make_profiles(platform, 300)
    from cmle import naming

    ds = platform.find_dataset(naming.profiles_dataset(settings.platform.owner))
    asked = []
    real_query = platform.query
    monkeypatch.setattr(platform, "query", lambda sql, **kw: asked.append(sql) or real_query(sql, **kw))
    monkeypatch.setattr(known_ids, "CAP", 50)
    monkeypatch.setattr(known_ids, "IN_LIST_MAX", 10)
    wanted = ids[::3] + ["0" * 38, "9" * 38, ids[5] + "x"]  # 103 ids, a range of 25 spans 75 profiles
    missing = known_ids.unknown_ids(platform, ds.table, "`_cmle`.`userid`", wanted)
    assert missing == sorted(["0" * 38, "9" * 38, ids[5] + "x"])
    assert any(" IN (" in q for q in asked) and any(">=" in q for q in asked)  # both kinds were needed
    assert all("LIMIT 50" in q for q in asked if ">=" in q)
    assert len(asked) > 5  # 5 ranges of 25 ids, halved when they hit the cap of 50
    assert known_ids.unknown_ids(platform, ds.table, "`_cmle`.`userid`", []) == []
