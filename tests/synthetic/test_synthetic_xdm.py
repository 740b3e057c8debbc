"""The events and profiles tables: the data contract's columns and types, XDM field values,
identities, deterministic ids, pieces that add up to the whole."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cmle.synthetic import xdm
from cmle.synthetic.simulate import generate
from tests.synthetic.synthdata import END

TS = pa.timestamp("us", tz="UTC")


@pytest.fixture(scope="module")
def data():
    return generate(3000, end=END, seed=21, tenant="acme", keep_parents=True)


@pytest.fixture(scope="module")
def events(data):
    return data.events.combine_chunks()


def test_events_columns_follow_the_contract(events):
    assert events.column_names == ["_id", "timestamp", "eventType", "producedBy", "_acme", "directMarketing", "web"]
    schema = events.schema
    assert schema.field("_id").type == pa.string()
    assert schema.field("timestamp").type == TS
    assert schema.field("eventType").type == pa.string()
    assert schema.field("producedBy").type == pa.string()
    assert schema.field("_acme").type == pa.struct([("userid", pa.string())])
    dm = schema.field("directMarketing").type
    assert [dm.field(i).name for i in range(dm.num_fields)] == [
        "emailDelivered", "sends", "opens", "offerOpens", "clicks", "emailVisitorID", "hashedEmail", "messageID"]
    web = schema.field("web").type
    assert [web.field(i).name for i in range(web.num_fields)] == ["webInteraction", "webPageDetails", "webReferrer"]
    assert schema == xdm.event_schema("acme")


def test_ids_are_unique_and_identities_ecid_like(data, events):
    ids = events["_id"]
    assert pc.count_distinct(ids).as_py() == events.num_rows
    assert set(pc.utf8_length(ids).to_pylist()) == {36}
    userid = events["_acme"].combine_chunks().field("userid")
    assert set(pc.utf8_length(userid).to_pylist()) == {38}
    assert all(u.isdigit() for u in userid.to_pylist()[:500])
    # one identity per user, the same in the profiles dataset
    assert pc.count_distinct(userid).as_py() == len(np.unique(data.user))
    profile_ids = data.profiles["_acme"].combine_chunks().field("userid")
    assert pc.count_distinct(profile_ids).as_py() == data.n_profiles
    assert set(userid.to_pylist()) <= set(profile_ids.to_pylist())
    assert xdm.ecids(np.array([7])).to_pylist() == xdm.ecids(np.array([5, 7])).to_pylist()[1:]
    assert pc.count_distinct(xdm.ecids(np.arange(200_000))).as_py() == 200_000


def test_identities_are_valid_ecids_for_any_users():
    """AEP refuses an ECID whose 19-digit half exceeds a signed 64-bit integer ("Invalid
    ECID"); taken modulo 10**19, about 8 % of hashed halves did."""
    from cmle import ecid

    for users in (np.arange(300_000), np.arange(10**12, 10**12 + 50_000), np.array([0, 2**40, 2**62])):
        ids = xdm.ecids(users)
        assert ecid.problems(ids) == (0, [])
    ids = xdm.ecids(np.arange(100_000)).to_pylist()
    assert max(max(int(i[:19]), int(i[19:])) for i in ids) <= 2**63 - 1
    # both halves use most of their range (not a narrow, guessable band)
    assert max(int(i[:19]) for i in ids) > 9 * 10**18 - 10**18


def test_event_values(data, events):
    rows = events.to_pylist()
    types = [r["eventType"] for r in rows]
    assert types == [data.model.names[c] for c in data.code]
    assert {r["producedBy"] for r in rows} == {xdm.PRODUCED_BY}
    for r in rows:
        email = r["eventType"].startswith("directMarketing")
        assert (r["directMarketing"] is not None) == email and (r["web"] is None) == email
    sent = next(r for r in rows if r["eventType"] == "directMarketing.emailSent")
    assert sent["directMarketing"]["sends"] == {"value": 1.0} and sent["directMarketing"]["opens"] is None
    assert sent["directMarketing"]["emailVisitorID"].endswith("@example.com")
    assert len(sent["directMarketing"]["hashedEmail"]) == 64
    form = next(r for r in rows if r["eventType"] == "web.formFilledOut")
    assert form["web"]["webPageDetails"]["name"] == "subscriptionForm"
    assert form["web"]["webInteraction"]["linkClicks"]["value"] == 1.0
    view = next(r for r in rows if r["eventType"] == "web.webpagedetails.pageViews")
    assert view["web"]["webInteraction"]["linkClicks"]["value"] == 0.0
    assert view["web"]["webPageDetails"]["pageViews"]["value"] == 1.0
    assert view["web"]["webReferrer"]["type"] in {t for t, _ in xdm.REFERRERS}


def test_opens_and_clicks_carry_their_sends_message_id(data, events):
    dm = events["directMarketing"].combine_chunks()
    message = dm.field("messageID").to_pylist()
    m = data.model
    chain = np.flatnonzero(np.isin(data.code, [m.code("directMarketing.emailOpened"),
                                               m.code("directMarketing.emailClicked")]))
    assert len(chain) > 100
    for row in chain:
        assert message[row] == message[data.parent[row]]
    sends = [message[i] for i in np.flatnonzero(data.code == m.code("directMarketing.emailSent"))]
    assert len(set(sends)) == len(sends)


def test_pieces_add_up_to_the_whole_table(data, events):
    pieces = list(data.iter_event_tables(max_rows=1000))
    assert all(p.num_rows <= 1000 for p in pieces)
    assert pa.concat_tables(pieces).equals(events)
    profile_pieces = list(data.iter_profile_tables(max_rows=700))
    assert pa.concat_tables(profile_pieces).equals(data.profiles)


def test_profiles_follow_the_contract(data):
    table = data.profiles
    assert table.column_names == ["_acme"]
    assert table.schema.field("_acme").type == pa.struct([
        ("userid", pa.string()), ("age", pa.int64()), ("gender", pa.string()), ("region", pa.string()),
        ("loyaltyTier", pa.string()), ("signupDate", TS)])
    rows = [r["_acme"] for r in table.to_pylist()]
    assert len(rows) == data.n_profiles
    spec = data.model.profiles
    assert {r["loyaltyTier"] for r in rows} <= {t for t, _, _ in spec.tiers}
    assert {r["gender"] for r in rows} <= {g for g, _, _ in spec.genders}
    assert all(spec.age_min <= r["age"] <= spec.age_max for r in rows)
    assert all(r["signupDate"] < data.window_start for r in rows)
    assert set(xdm.PROFILE_FIELDS) == {"userid", "age", "gender", "region", "loyaltyTier", "signupDate"}
