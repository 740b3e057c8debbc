"""Model specs: the shipped ones validate, and every mistake is a clear error naming the
spec's line, whether the spec itself is wrong (schema, paths, conditions, names) or does not
fit the data (a field the dataset lacks, a goal that never happens, an outcome window
longer than the data, an eligibility that leaves nobody)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from cmle.errors import ConfigError
from cmle.modelspec import SpecError, load_spec, packaged_spec_text, parse_spec, resolve_spec_path, spec_for

PROJECT = Path(__file__).resolve().parents[2]
UTC = dt.timezone.utc

GOOD = """\
version: 1
name: shop
events:
  dataset: Shop events
  identity: {namespace: ECID}
goal:
  event_types: [commerce.purchases]
  window_days: 7
features:
  lookback_days: 14
  windows: [7]
  event_types: [web.webpagedetails.pageViews, commerce.productListAdds]
  numeric:
    - {field: "_{tenant}.orderValue", name: order_value, aggregations: [sum]}
"""


def _error(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "shop.yaml")
    return info.value


def test_shipped_specs_validate_and_the_packaged_synthetic_spec_is_conf_models():
    for path in sorted((PROJECT / "conf" / "models").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.name and spec.goal.window_days > 0, path
    assert (PROJECT / "conf" / "models" / "synthetic.yaml").read_text() == packaged_spec_text()


def test_a_good_spec_parses_into_typed_parts():
    spec = parse_spec(GOOD, "shop.yaml")
    assert spec.events.identity.in_identity_map and spec.events.identity.namespace == "ECID"
    assert spec.goal.outcome == "occurs" and spec.eligibility.exclude_goal_reached  # the defaults
    assert [f.count for f in spec.features.event_types] == ["count_web_webpagedetails_pageViews",
                                                            "count_commerce_productListAdds"]
    assert spec.features.numeric[0].columns() == ["order_value_sum"]


@pytest.mark.parametrize("change, line, words", [
    (("  window_days: 7", "  window_days: seven"), 8, "not of type 'integer'"),
    (("  windows: [7]", "  windws: [7]"), 11, "unknown key 'windws' (did you mean 'windows'?)"),
    (("goal:", "gaol:"), 6, "unknown key 'gaol'"),
    (("  identity: {namespace: ECID}", "  identity: {namespace: \"EC ID\"}"), 5, "does not match"),
    (("  event_types: [commerce.purchases]", "  event_types: [\"x' OR '1'='1\"]"), 7, "does not match"),
])
def test_schema_errors_name_the_line(change, line, words):
    err = _error(GOOD.replace(*change))
    assert err.line == line and words in str(err) and "shop.yaml, line" in str(err)


def test_several_schema_errors_are_reported_together():
    err = _error(GOOD.replace("  window_days: 7", "  window_days: 0").replace("version: 1", "version: 2"))
    assert "2 problems" in str(err) and "line 1 (version)" in str(err) and "line 8 (goal.window_days)" in str(err)


@pytest.mark.parametrize("change, line, words", [
    # a field path that is not one (SQL cannot ride in on it)
    (('    - {field: "_{tenant}.orderValue"', '    - {field: "_{tenant}.order Value; DROP TABLE x"'), 14,
     "is not a field name"),
    # a condition that is not in the language
    (("  window_days: 7", "  window_days: 7\n  condition: \"commerce.order.priceTotal > 0; DELETE\""), 9,
     "cannot read the condition near '; DELETE'"),
    (("  window_days: 7", "  window_days: 7\n  condition: \"commerce.order.currency = 'x'' OR 1=1'\""), 9,
     "unexpected"),
    (("  window_days: 7\nfeatures:", "  window_days: 7\n  outcome: does_not_occur\neligibility:\n"
                                     "  exclude_goal_reached: true\nfeatures:"), 11, "would leave nobody"),
    (("web.webpagedetails.pageViews, commerce", "commerce.purchases, commerce"), 12, "is the goal"),
    (("commerce.productListAdds]", "{type: commerce.productListAdds, name: count_web_webpagedetails_pageViews}]"),
     12, "used twice"),
    (("  event_types: [commerce.purchases]\n", "  event_types: [commerce.purchases]\n  any_event: true\n"), 8,
     "exclude each other"),
])
def test_rules_beyond_the_schema_name_the_line(change, line, words):
    assert change[0] in GOOD
    err = _error(GOOD.replace(*change))
    assert err.line == line and words in str(err), str(err)


def test_a_missing_file_and_the_default_fallback(settings, tmp_cwd):
    with pytest.raises(SpecError, match="does not exist"):
        spec_for(settings, "conf/models/nope.yaml")
    # the default path outside a project checkout: the packaged synthetic spec
    assert resolve_spec_path(settings) is None and spec_for(settings).synthetic
    assert isinstance(SpecError("x"), ConfigError)  # the CLI prints it and exits 2


# --- the spec against the data ------------------------------------------------------------------
def _events(tenant: str) -> pa.Table:
    idm = pa.map_(pa.string(), pa.list_(pa.struct([("id", pa.string())])))
    rows = []
    start = dt.datetime(2025, 3, 1, tzinfo=UTC)
    for u in range(12):
        for d in range(0, 40, 3):
            # a third buy after the snapshot (day 33), a third before it, a third never
            buys = (u % 3 == 0 and d == 36) or (u % 3 == 1 and d == 3)
            kind = ("commerce.purchases" if buys else "commerce.productListAdds" if (u + d) % 5 == 0
                    else "web.webpagedetails.pageViews")
            rows.append((f"e{u}-{d}", start + dt.timedelta(days=d, hours=u), kind, [("ECID", [{"id": f"u{u}"}])],
                         {"orderValue": 10.0 * u if kind == "commerce.purchases" else None}))
    cols = list(zip(*rows))
    return pa.table({"_id": pa.array(cols[0]), "timestamp": pa.array(cols[1], pa.timestamp("us", tz="UTC")),
                     "eventType": pa.array(cols[2]), "identityMap": pa.array(cols[3], idm),
                     f"_{tenant}": pa.array(cols[4], pa.struct([("orderValue", pa.float64())]))})


@pytest.fixture
def shop(ctx, tmp_cwd):
    """The events on the embedded platform; featurize is called without MLflow (fast)."""
    from cmle.ingestion import ingest_tables

    ds = ctx.platform.get_or_create_loaded_dataset("Shop events", "experienceevent")
    ingest_tables(ctx.platform, ds.id, [_events(ctx.platform.tenant_id)], key="shop")
    return ctx


def _featurize(ctx, path: Path) -> dict:
    from cmle.stages.featurize import featurize

    return featurize(ctx, spec=str(path), min_positives=1, min_negatives=1)


def _featurize_error(ctx, tmp_cwd, text: str) -> SpecError:
    path = tmp_cwd / "shop.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        _featurize(ctx, path)
    assert str(path) in str(info.value)
    return info.value


def test_the_spec_fits_the_data(shop, tmp_cwd):
    path = tmp_cwd / "shop.yaml"
    path.write_text(GOOD)
    out = _featurize(shop, path)
    assert out["training_rows"] == 8 and out["training_positives"] == 4
    assert out["training_features"] == 2 * 3 + 5 + 1  # 2 types x (count, 7-day count, recency), activity, sum


@pytest.mark.parametrize("change, line, words", [
    # an unknown field path
    (("_{tenant}.orderValue", "_{tenant}.orderTotal"), 14, "_{tenant}.orderTotal cannot be read"),
    # the goal's field is not in the dataset
    (("  window_days: 7", "  window_days: 7\n  condition: commerce.order.priceTotal > 0"), 9,
     "commerce.order.priceTotal cannot be read"),
    # the goal never happens
    (("[commerce.purchases]", "[commerce.checkouts]"), 7, "no event of dataset 'Shop events' matches the goal"),
    # the outcome window is longer than the data
    (("  window_days: 7", "  window_days: 60"), 8, "is not shorter than the data"),
    # an eligibility that leaves nobody
    (("features:", "eligibility:\n  event_condition: eventType = 'web.formFilledOut'\nfeatures:"), 9,
     "no profile is eligible"),
    # the identity is not in the data
    (("{namespace: ECID}", "{field: \"_{tenant}.crmId\", namespace: CRMID}"), 5, "_{tenant}.crmId cannot be read"),
])
def test_spec_errors_against_the_data_name_the_line(shop, tmp_cwd, change, line, words):
    assert change[0] in GOOD
    err = _featurize_error(shop, tmp_cwd, GOOD.replace(*change))
    assert err.line == line and words in str(err), str(err)


def test_a_dataset_that_does_not_exist_names_the_events_line(shop, tmp_cwd):
    err = _featurize_error(shop, tmp_cwd, GOOD.replace("Shop events", "Shop events 2"))
    assert err.line == 4 and "'Shop events 2' does not exist" in str(err) and "cmle load" in str(err)
