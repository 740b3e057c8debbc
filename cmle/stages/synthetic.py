"""Stage ``synthetic``: XDM resources, then seeded synthetic profiles and experience events.

Gets or creates (by name, :mod:`cmle.naming`) the event and profile field groups, the
ExperienceEvent schema and the Profile schema (ECID identity on ``_{tenant}.userid``, the
profile one enabled for Profile), the events dataset and the profile-enabled profiles
dataset. Then generates the data (:func:`cmle.synthetic.simulate.generate`) and ingests
events and profiles, each as ONE batch of files of at most :data:`FILE_ROWS` rows, tagged
with a hash of the generation parameters (resolved end date included): re-running with the
same parameters finds the batches and ingests nothing; other parameters replace the
datasets' content. The oracle (latent propensity) is written next to, not into, the
platform: :func:`cmle.synthetic.oracle.oracle_path`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import mlflow
import numpy as np

from cmle import ecid, modelspec, naming, tracking
from cmle.columns import ID_COLUMN
from cmle.context import Context
from cmle.errors import DataCheckError, ParameterError
from cmle.ingestion import ingest_tables
from cmle.platform.base import EXPERIENCE_EVENT, PROFILE, Dataset, Platform
from cmle.stages import SPEC_PARAM, Param, Stage
from cmle.synthetic import oracle, xdm
from cmle.synthetic.model import get_model
from cmle.synthetic.simulate import GENERATOR_VERSION, check_sizes, generate, resolve_end

log = logging.getLogger(__name__)

FILE_ROWS = 500_000  # rows per uploaded file (bounds memory and file size)
ARTIFACT_DIR = "synthetic"


def datasets(platform: Platform, owner: str) -> tuple[Dataset, Dataset]:
    """Get or create the field groups, schemas and the (events, profiles) datasets."""
    event_fg = platform.get_or_create_field_group(naming.event_field_group(owner), xdm.EVENT_FIELDS,
                                                  EXPERIENCE_EVENT)
    profile_fg = platform.get_or_create_field_group(naming.profile_field_group(owner), xdm.PROFILE_FIELDS, PROFILE)
    event_schema = platform.get_or_create_schema(naming.event_schema(owner), EXPERIENCE_EVENT, [event_fg],
                                                 identity_field=ID_COLUMN)
    profile_schema = platform.get_or_create_schema(naming.profile_schema(owner), PROFILE, [profile_fg],
                                                   identity_field=ID_COLUMN, profile_enabled=True)
    events = platform.get_or_create_dataset(naming.events_dataset(owner), event_schema)
    profiles = platform.get_or_create_dataset(naming.profiles_dataset(owner), profile_schema, profile_enabled=True)
    return events, profiles


def generation_key(profiles: int, weeks: int, end: str, seed: int, legacy: bool, churn: bool, tenant: str) -> str:
    """Batch tag of the data these parameters generate: the same parameters (and model,
    generator and XDM layout versions) give the same key, any change gives another."""
    spec = {"profiles": profiles, "weeks": weeks, "end": end, "seed": seed, "legacy": legacy,
            "churn": churn and not legacy, "tenant": tenant, "model": repr(get_model(legacy)),
            "generator": GENERATOR_VERSION, "layout": xdm.LAYOUT_VERSION}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
    return f"synthetic:{digest}"


EXTENSION_PREFIX = "synthetic-ext:"


def extension_key(key: str, weeks: int, shift_events: float, shift_conversion: float) -> str:
    """Batch tag of an extension of the data of ``key`` (its parameters, readable back)."""
    return f"{EXTENSION_PREFIX}{key.split(':', 1)[1]}:w{weeks}:e{shift_events:g}:c{shift_conversion:g}"


def parse_extension_key(ext_key: str) -> tuple[int, float, float]:
    """``(weeks, shift_events, shift_conversion)`` of an extension batch tag."""
    w, e, c = ext_key.rsplit(":", 3)[1:]
    return int(w[1:]), float(e[1:]), float(c[1:])


def current_extension(platform: Platform, dataset_id: str, key: str) -> str | None:
    """The tag of the extension of ``key``'s data that the events dataset holds, if any."""
    from cmle.ingestion import KEY_TAG

    prefix = f"{EXTENSION_PREFIX}{key.split(':', 1)[1]}:"
    held = [b.tags.get(KEY_TAG, "") for b in platform.list_batches(dataset_id) if b.status == "success"]
    return next((k for k in reversed(held) if k.startswith(prefix)), None)


def run(ctx: Context, profiles: int = 100_000, weeks: int = 10, end_date: str = "", seed: int = 42,
        legacy: bool = False, churn: bool = True, extend_weeks: int = 0, shift_events: float = 1.0,
        shift_conversion: float = 0.0, spec: str = "") -> dict:
    """Generate and ingest the synthetic data; returns dataset ids, counts, window, oracle path.

    With a model spec that names the user's own datasets (not ``synthetic: true``) there is
    nothing to generate: the stage says so and returns ``skipped``."""
    model = modelspec.spec_for(ctx.settings, spec)
    if not model.synthetic:
        log.info("synthetic: skipped; the model spec %s names your own datasets", model.name)
        mlflow.set_tag("cmle.skipped", f"the model spec {model.name} is not synthetic")
        return {"skipped": True, "spec_name": model.name, "reused": True}
    try:
        check_sizes(profiles, weeks)
        end = resolve_end(end_date)
        if seed < 0:
            raise ParameterError(f"seed = {seed} must be at least 0")
    except ParameterError as exc:
        raise ParameterError(f"synthetic: parameter {exc}") from None
    from cmle.synthetic.extend import check as check_extension

    check_extension(legacy, weeks, extend_weeks, shift_events, shift_conversion)
    platform = ctx.platform
    tenant = platform.tenant_id
    events_ds, profiles_ds = datasets(platform, ctx.owner)

    data = generate(profiles, weeks=weeks, end=end, seed=seed, legacy=legacy, churn=churn, tenant=tenant)
    log.info("generated %d events for %d profiles in %.1f s (%.2f per profile, %.1f %% converted)",
             data.n_events, data.n_profiles, data.generation_seconds, data.events_per_profile,
             100 * data.conversion_rate)
    _check_identities(data.n_profiles)
    key = generation_key(profiles, weeks, end.isoformat(), seed, legacy, churn, tenant)
    started = time.perf_counter()
    own_extension = f"{EXTENSION_PREFIX}{key.split(':', 1)[1]}:"
    events_batch = ingest_tables(platform, events_ds.id, data.iter_event_tables(FILE_ROWS), key=key,
                                 replace=True, file_prefix="events", keeps=lambda k: k.startswith(own_extension))
    profiles_batch = ingest_tables(platform, profiles_ds.id, data.iter_profile_tables(FILE_ROWS), key=key,
                                   replace=True, file_prefix="profiles")
    ingest_seconds = time.perf_counter() - started
    for what, result, expected in (("events", events_batch, data.n_events),
                                   ("profiles", profiles_batch, data.n_profiles)):
        if result.batch.records != expected:
            raise DataCheckError(f"the {what} batch {result.batch.id} holds {result.batch.records} records, "
                                 f"the generated data {expected}; revert the batch and re-run synthetic")
    ext, ext_out = _extend(platform, events_ds.id, data, key, extend_weeks, shift_events, shift_conversion)
    path = oracle.write_oracle(data, oracle.oracle_path(ctx.settings), extension=ext)

    mix = data.event_mix()
    tracking.log_table(mix, f"{ARTIFACT_DIR}/event_mix.csv")
    tracking.log_params({"window_start": data.window_start.isoformat(), "window_end": data.window_end.isoformat(),
                         "effective_churn": data.churn, "generation_key": key})
    mlflow.log_metrics({
        "events": data.n_events, "profiles": data.n_profiles, "events_per_profile": data.events_per_profile,
        "conversion_rate": data.conversion_rate, "churn_rate": data.churn_rate,
        "generation_seconds": data.generation_seconds,
        "events_per_second": data.n_events / max(data.generation_seconds, 1e-9),
        "ingest_seconds": ingest_seconds,
    })
    reused = events_batch.reused and profiles_batch.reused and ext_out.get("extension_reused", True)
    log.info("events in batch %s, profiles in batch %s (%s); oracle at %s", events_batch.batch.id,
             profiles_batch.batch.id, "already there" if reused else "ingested", path)
    return {
        "events_dataset_id": events_ds.id,
        "profiles_dataset_id": profiles_ds.id,
        "events": data.n_events,
        "profiles": data.n_profiles,
        "events_per_profile": round(data.events_per_profile, 4),
        "conversion_rate": round(data.conversion_rate, 6),
        "churn_rate": round(data.churn_rate, 6),
        "window_start": data.window_start.isoformat(),
        "window_end": (ext or data).window_end.isoformat(),
        "oracle_path": str(path),
        "events_batch_id": events_batch.batch.id,
        "profiles_batch_id": profiles_batch.batch.id,
        "reused": reused,
        **ext_out,
    }


def _extend(platform: Platform, events_id: str, data, key: str, weeks: int, shift_events: float,
            shift_conversion: float):
    """Ingest the extension of ``data`` (``weeks`` > 0), or keep the one the dataset holds
    (``weeks`` = 0); returns it (None without one) and its outputs."""
    from cmle.synthetic.extend import extend

    if weeks == 0:
        held = current_extension(platform, events_id, key)
        if held is None:
            return None, {}
        weeks, shift_events, shift_conversion = parse_extension_key(held)
        log.info("synthetic: keeping the extension the events dataset holds (%d weeks, shift_events %g, "
                 "shift_conversion %g)", weeks, shift_events, shift_conversion)
    ext = extend(data, weeks, shift_events, shift_conversion)
    result = ingest_tables(platform, events_id, ext.iter_event_tables(FILE_ROWS),
                           key=extension_key(key, weeks, shift_events, shift_conversion), replace=True,
                           file_prefix="events-ext", keeps=lambda k: not k.startswith(EXTENSION_PREFIX))
    if result.batch.records != ext.n_events:
        raise DataCheckError(f"the extension batch {result.batch.id} holds {result.batch.records} records, the "
                             f"generated extension {ext.n_events}; revert the batch and re-run synthetic")
    conversions = int((ext.code == ext.model.code("web.formFilledOut")).sum())
    mlflow.log_metrics({"extension_events": ext.n_events, "extension_conversions": conversions,
                        "extension_weeks": weeks})
    log.info("synthetic: extension of %d weeks to %s: %d events, %d conversions (batch %s, %s)", weeks,
             ext.window_end.date(), ext.n_events, conversions, result.batch.id,
             "already there" if result.reused else "ingested")
    return ext, {"extension_weeks": weeks, "extension_events": ext.n_events, "extension_conversions": conversions,
                 "extension_batch_id": result.batch.id, "extension_reused": result.reused,
                 "data_end": ext.window_end.isoformat()}


def _check_identities(n_profiles: int) -> None:
    """Every identity is a valid ECID before anything is uploaded (profiles and events carry
    ``xdm.ecids`` of the user numbers)."""
    bad, examples = ecid.problems(xdm.ecids(np.arange(n_profiles)))
    if bad:
        raise DataCheckError(f"synthetic: {bad} generated identities are not valid ECIDs (e.g. {examples}); "
                             f"{ecid.describe_rule()}. Nothing was uploaded")


STAGE = Stage(
    name="synthetic",
    func=run,
    params=(
        Param("profiles", int, 100_000, "number of synthetic profiles (users)", min=1),
        Param("weeks", int, 10, "weeks of history before end_date", min=1),
        Param("end_date", str, "", "end of the history window: YYYY-MM-DD (00:00 UTC) or an ISO 8601 "
                                   "date-time; empty = today 00:00 UTC"),
        Param("seed", int, 42, "random seed: the same parameters and seed give byte-identical data"),
        Param("legacy", bool, False, "reproduce the CMLE notebooks' generator (overwrite bug, no churn)"),
        Param("churn", bool, True, "users churn after more than 10 impressions or 5 emails (not with legacy)"),
        Param("extend_weeks", int, 0, "simulate the same users this many weeks past end_date (time moves forward; "
                                      "0 = keep the extension the data already have, if any)", min=0),
        Param("shift_events", float, 1.0, "extension only: factor on the weekly rate of the base events "
                                          "(impressions, page views, emails); 1 = no change", min=0),
        Param("shift_conversion", float, 0.0, "extension only: added to every user's latent propensity when the "
                                              "extension starts (moves the conversion rate); 0 = no change"),
        SPEC_PARAM,
    ),
    help="Create the XDM schemas and datasets, generate seeded synthetic profiles and experience events, "
         "ingest them in batches, and write the latent-propensity oracle.",
)
