"""Audience rules as Data Distiller SQL audiences (``audience --via sql``, AEP only).

Pure: no platform. Adobe's "Build audiences using SQL" page
(experience-platform ``query/data-distiller-audiences/overview.md``) documents::

    CREATE AUDIENCE table_name
    WITH (primary_identity='IdentitycolName', identity_namespace='Namespace for the identity used'
          [, schema='target_schema_title'])
    AS (select_query)

    DROP AUDIENCE [IF EXISTS] table_name

The audience's dataset holds flat attributes only, with the primary identity at the root,
so the SELECT flattens the score fields out of ``_{tenant}``. It reads the owner's scores
dataset and keeps each profile's newest score (the latest ``score_date``, the scoring run
that was ingested last), which is what Profile's timestamp-ordered merge gives the
Segmentation path; each rule then becomes a WHERE over the flattened fields:

==========  ===============================  ==============================================
rule        example                          WHERE
==========  ===============================  ==============================================
band        ``m:band:0.2:0.93``              ``propensity >= 0.2 AND propensity <= 0.93``
top         ``top10:top:10``                 ``percentile >= 91``
bucket      ``hb:bucket:high,medium``        ``bucket IN ('high', 'medium')``
+ factor    ``...:factor=F1,F2``             ``(...) AND exists(factors, f -> f.feature IN ('F1', 'F2'))``
==========  ===============================  ==============================================

Names never come from free text: the table comes from the platform's catalog and is quoted
with :func:`cmle.features.render.quote_table`, the tenant with
:func:`~cmle.features.render.tenant_root`, the fields are the score schema's, and the
values are parsed numbers or quoted literals of validated bucket and feature names.
"""

from __future__ import annotations

from cmle.audiences.rules import BandRule, BucketRule, FactorRule, Rule, TopPercentRule
from cmle.columns import ID_COLUMN
from cmle.errors import ParameterError
from cmle.features.render import quote_table, tenant_root

# What each member row carries besides the identity: the score fields an activation sends
# (flat: the audience's dataset cannot hold the nested factors).
MEMBER_FIELDS = ("propensity", "score", "percentile", "decile", "bucket", "model_name", "model_version", "score_date")
RANK = "cmle_newest"


def needs_aep(backend: str) -> ParameterError:
    """The one-line refusal of ``via = sql`` on a platform without Data Distiller."""
    return ParameterError(f"audience: via = sql creates Data Distiller SQL audiences in AEP Query Service, which the "
                          f"{backend} platform does not have: set [Platform] backend = aep (a sandbox with the Data "
                          "Distiller add-on), or use via = segments")


def literal(value: str) -> str:
    """A SQL string literal (quotes doubled, so nothing escapes it)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def condition(rule: Rule) -> str:
    """The rule as a SQL predicate over the flattened score fields (see the module table)."""
    if isinstance(rule, FactorRule):
        features = ", ".join(literal(f) for f in rule.features)
        return f"({condition(rule.rule)}) AND exists(factors, f -> f.feature IN ({features}))"
    if isinstance(rule, BandRule):
        return rule.bounds("propensity", "AND")
    if isinstance(rule, TopPercentRule):
        return f"percentile >= {rule.min_percentile}"
    if isinstance(rule, BucketRule):
        return f"bucket IN ({', '.join(literal(b) for b in rule.buckets)})"
    raise TypeError(f"not an audience rule: {rule!r}")


def newest_scores(table: str, tenant: str, with_factors: bool = False) -> str:
    """Each profile's newest score from the scores dataset ``table``, flattened (one row per profile)."""
    root = tenant_root(tenant)
    fields = [ID_COLUMN, *MEMBER_FIELDS] + (["factors"] if with_factors else [])
    cols = ", ".join(f"s.{root}.{f} AS {f}" for f in fields)
    return (f"SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY s.{root}.{ID_COLUMN} ORDER BY s.{root}.score_date DESC) "
            f"AS {RANK} FROM {quote_table(table)} s WHERE s.{root}.{ID_COLUMN} IS NOT NULL "
            f"AND s.{root}.propensity IS NOT NULL")


def select(rule: Rule, table: str, tenant: str) -> str:
    """The audience's SELECT: the members of ``rule`` with their identity and score fields."""
    factors = isinstance(rule, FactorRule)
    out = ", ".join((ID_COLUMN, *MEMBER_FIELDS))
    return (f"SELECT {out} FROM ({newest_scores(table, tenant, factors)}) newest "
            f"WHERE {RANK} = 1 AND ({condition(rule)})")


def create_audience(name: str, select_sql: str, identity_field: str, namespace: str) -> str:
    """``CREATE AUDIENCE`` as Adobe documents it (``name``, the identity column and namespace
    are plain identifiers, checked by the caller)."""
    return (f"CREATE AUDIENCE {name} WITH (primary_identity={literal(identity_field)}, "
            f"identity_namespace={literal(namespace)}) AS ({select_sql})")


def drop_audience(name: str) -> str:
    return f"DROP AUDIENCE IF EXISTS {name}"
