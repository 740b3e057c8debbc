"""Why the latent propensity at the snapshot is a valid oracle for the default generator and
not for the legacy one: statistics from the generated arrays (no platform, seconds).

For each generator mode it simulates the data, takes the snapshot featurize takes by default
(14 days before the end) and, over the profiles eligible there, prints:

* the ROC-AUC of the latent propensity at T against the label (converted in (T, T + 14 d]);
* how the label depends on conversion chances *in the outcome window* (events of a type that
  draws a conversion): the share of eligible profiles with one, and their mean latent
  propensity at T against the others';
* the same AUC among profiles with a chance in the window only (is it the timing alone?);
* how much the latent propensity rises from T to the first chance in the window, for
  positives and for negatives with a chance (legacy: the burst after T carries the rise);
* the conversion rate of profiles with and without an email open before T (legacy: the
  overwrite bug ties all engagement to the *last* email, so an open before T means the
  burst is over);
* the ROC-AUC of the window probability 1 - prod(1 - p) over the window's draw events (a
  clairvoyant ceiling that knows the future events, for scale; no model can reach it).

    .venv/bin/python bench/oracle_diagnostics.py [--profiles 50000] [--seed 11] [--weeks 10]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from cmle.model.metrics import roc_auc
from cmle.synthetic.model import CONVERSION_DELAY_S
from cmle.synthetic.simulate import US_PER_S, generate

OUTCOME_DAYS = 14


def diagnose(legacy: bool, profiles: int, seed: int, weeks: int, end: str) -> dict:
    d = generate(profiles, weeks=weeks, seed=seed, legacy=legacy, end=end)
    m, n = d.model, d.n_profiles
    day_us = 86_400 * US_PER_S
    t = d.window_end_us - OUTCOME_DAYS * day_us
    conv = d.code == m.code("web.formFilledOut")
    conv_ts = np.full(n, np.iinfo(np.int64).max)
    conv_ts[d.user[conv]] = d.ts[conv]
    eligible = conv_ts > t
    label = (conv_ts <= t + OUTCOME_DAYS * day_us)[eligible]
    latent = d.profile.p0.copy()
    upto = np.flatnonzero(d.ts <= t)
    latent[d.user[upto]] = d.propensity[upto]
    p_t = latent[eligible]
    # conversion chances whose conversion (60 s later) lands in the outcome window
    draws = np.array([e.draws for e in m.events])[d.code]
    delay = CONVERSION_DELAY_S * US_PER_S
    window = draws & (d.ts > t - delay) & (d.ts <= t + OUTCOME_DAYS * day_us - delay)
    chances = np.bincount(d.user[window], minlength=n)[eligible] > 0
    log_miss = np.zeros(n)
    np.add.at(log_miss, d.user[window], np.log1p(-np.minimum(d.propensity[window], 1 - 1e-12)))
    ceiling = 1 - np.exp(log_miss[eligible])
    # the propensity at the window's first chance (rows are in user, time order)
    idx = np.flatnonzero(window)
    first = idx[np.r_[True, d.user[idx][1:] != d.user[idx][:-1]]] if len(idx) else idx
    at_first = np.full(n, np.nan)
    at_first[d.user[first]] = d.propensity[first]
    rise = at_first[eligible] - p_t
    opened = np.bincount(d.user[(d.code == m.code("directMarketing.emailOpened")) & (d.ts <= t)],
                         minlength=n)[eligible] > 0
    return {
        "eligible": int(eligible.sum()), "positives": int(label.sum()), "rate": label.mean(),
        "auc_latent": roc_auc(label, p_t), "latent_pos": p_t[label].mean(), "latent_neg": p_t[~label].mean(),
        "share_chances": chances.mean(), "positives_with_chance": (chances & label).sum() / max(label.sum(), 1),
        "latent_with": p_t[chances].mean(), "latent_without": p_t[~chances].mean(),
        "auc_latent_given_chance": roc_auc(label[chances], p_t[chances]),
        "rate_opened": label[opened].mean(), "rate_not_opened": label[~opened].mean(), "share_opened": opened.mean(),
        "auc_ceiling": roc_auc(label, ceiling),
        "rise_pos": np.nanmean(rise[label]), "rise_neg": np.nanmean(rise[chances & ~label]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--weeks", type=int, default=10)
    parser.add_argument("--end-date", default="2024-06-01")
    args = parser.parse_args()
    rows = {mode: diagnose(mode == "legacy", args.profiles, args.seed, args.weeks, args.end_date)
            for mode in ("default", "legacy")}
    print(f"{args.profiles:,} profiles, seed {args.seed}, {args.weeks} weeks; snapshot T = end - {OUTCOME_DAYS} days")
    print(f"{'':<62} {'default':>9} {'legacy':>9}")
    lines = [
        ("eligible profiles at T", "eligible", "{:,}"),
        ("positives (converted in (T, T+14 d])", "positives", "{:,}"),
        ("ROC-AUC of the latent propensity at T", "auc_latent", "{:.3f}"),
        ("mean latent propensity at T: positives", "latent_pos", "{:.4f}"),
        ("                              negatives", "latent_neg", "{:.4f}"),
        ("share of eligible with a conversion chance in the window", "share_chances", "{:.3f}"),
        ("share of positives with one (by construction)", "positives_with_chance", "{:.3f}"),
        ("mean latent propensity at T: with a chance in the window", "latent_with", "{:.4f}"),
        ("                              without", "latent_without", "{:.4f}"),
        ("ROC-AUC of the latent propensity, profiles with a chance", "auc_latent_given_chance", "{:.3f}"),
        ("latent propensity rise from T to the first chance: positives", "rise_pos", "{:+.4f}"),
        ("                                                   negatives", "rise_neg", "{:+.4f}"),
        ("share of eligible with an email open before T", "share_opened", "{:.3f}"),
        ("conversion rate: email open before T", "rate_opened", "{:.4f}"),
        ("                 none", "rate_not_opened", "{:.4f}"),
        ("ROC-AUC of the clairvoyant window probability (ceiling)", "auc_ceiling", "{:.3f}"),
    ]
    for text, key, fmt in lines:
        print(f"{text:<62} {fmt.format(rows['default'][key]):>9} {fmt.format(rows['legacy'][key]):>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
