import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from cmle.errors import RegistryError
from cmle.scoring.schema import SCORE_COLUMNS, SCORE_SCHEMA, XDM_FIELDS, score_table, to_xdm
from cmle.scoring.summary import ScoreSummary, histogram_figure

WHEN = pa.scalar(dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc), pa.timestamp("us", "UTC"))


def _outputs(**over):
    df = pd.DataFrame({"propensity": [0.1, 0.5, 0.9], "score": [10, 50, 90], "percentile": [5, 50, 99],
                       "decile": [10, 5, 1], "bucket": ["low", "medium", "high"]})
    for k, v in over.items():
        df[k] = v
    return df


def test_score_table_appends_the_run_metadata():
    t = score_table(_outputs(), pa.array(["a", "b", "c"]), "m", "3", WHEN)
    assert t.schema == SCORE_SCHEMA
    assert t.column("model_version").to_pylist() == ["3"] * 3
    assert t.column("score_date").to_pylist()[0] == dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("bad, message", [
    (dict(propensity=[0.1, 1.5, 0.2]), "propensity outside"),
    (dict(percentile=[0, 50, 99]), "percentile outside 1-100"),
    (dict(bucket=["low", "mid", "high"]), r"buckets \['mid'\]"),
    (dict(score=[1.5, 2.0, 3.0]), "wrong type"),
])
def test_outputs_that_break_the_contract_are_refused(bad, message):
    with pytest.raises(RegistryError, match=message):
        score_table(_outputs(**bad), pa.array(["a", "b", "c"]), "m", "1", WHEN)


def test_missing_output_columns_are_refused():
    with pytest.raises(RegistryError, match=r"without \['decile', 'bucket'\]"):
        score_table(_outputs().drop(columns=["decile", "bucket"]), pa.array(["a", "b", "c"]), "m", "1", WHEN)


def test_xdm_shape_nests_every_score_field_under_the_tenant():
    t = to_xdm(score_table(_outputs(), pa.array(["a", "b", "c"]), "m", "1", WHEN), "acme")
    assert t.column_names == ["_acme"]
    struct = t.schema.field("_acme").type
    assert [struct.field(i).name for i in range(struct.num_fields)] == list(SCORE_COLUMNS) == list(XDM_FIELDS)
    assert t.column("_acme").to_pylist()[2]["bucket"] == "high"
    assert to_xdm(SCORE_SCHEMA.empty_table(), "acme").num_rows == 0


def test_summary_counts_scores_and_buckets():
    s = ScoreSummary()
    t = score_table(_outputs(), pa.array(["a", "b", "c"]), "m", "1", WHEN)
    s.add(t)
    s.add(t.slice(2))
    assert s.rows == 4 and s.score_counts[90] == 2 and s.score_counts.sum() == 4
    assert s.bucket_counts == {"low": 1, "medium": 1, "high": 2}
    m = s.metrics()
    assert m["rows"] == 4 and m["bucket_high"] == 2 and m["propensity_max"] == 0.9
    assert m["propensity_mean"] == pytest.approx((0.1 + 0.5 + 0.9 + 0.9) / 4)
    assert histogram_figure(s, "t").axes[0].get_xlabel().startswith("score")
