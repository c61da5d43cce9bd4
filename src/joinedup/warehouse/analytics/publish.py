"""Disclosure control for analytic outputs: which columns are counts and which rates follow them.

Every canonical analytic's output passes through `publish` before anyone outside the warehouse
sees it, so small numbers are suppressed and the rest rounded under the policy in force, and
every ratio of counts is restated on the published counts (an exact ratio beside a rounded
denominator would give the exact numerator back).
"""

from __future__ import annotations

import pyarrow as pa

from joinedup.disclosure import DisclosurePolicy, apply, restate

#: Count columns of the canonical analytics.
COUNT_COLUMNS: tuple[str, ...] = (
    "people",
    "events",
    "deaths",
    "pathways",
    "denominator",
    "aged_65_plus",
    "deaths_last_year",
    "emergency_admissions_last_year",
    "bed_days",
)
#: Rates (and money) and the counts they are computed from.
RATE_SOURCES: dict[str, tuple[str, ...]] = {
    "prevalence": ("people", "denominator"),
    "rate_per_1000": ("events", "people"),
    "rate_per_100000": ("deaths", "people"),
    "share": ("pathways",),
    "emergency_admissions_per_1000": ("emergency_admissions_last_year", "people"),
    "opted_out_share": ("people",),
    "cost_gbp": ("events",),
}
#: Rates that are a ratio of counts in the row: (numerator, denominator or None for a share of
#: a total that is not in the row); restated on the published counts. `opted_out_share` (its
#: numerator is not published) and money are not ratios of published counts.
RATIOS: dict[str, tuple[str, str | None]] = {
    "prevalence": ("people", "denominator"),
    "rate_per_1000": ("events", "people"),
    "rate_per_100000": ("deaths", "people"),
    "share": ("pathways", None),
    "emergency_admissions_per_1000": ("emergency_admissions_last_year", "people"),
}
#: Decimal places of a restated ratio.
RATIO_DIGITS = 6


def publish(
    result: pa.Table, policy: DisclosurePolicy | None = None, group_by: tuple[str, ...] = ()
) -> pa.Table:
    """`result` with small counts suppressed, the rest rounded, and dependent rates hidden."""
    chosen = policy or DisclosurePolicy()
    names = set(result.column_names)
    counts = [c for c in COUNT_COLUMNS if c in names]
    rates = {
        rate: tuple(s for s in sources if s in names)
        for rate, sources in RATE_SOURCES.items()
        if rate in names and any(s in names for s in sources)
    }
    published = apply(result, chosen, counts=counts, rates=rates, group_by=group_by)
    ratios = {
        rate: (num, den)
        for rate, (num, den) in RATIOS.items()
        if rate in names and num in names and (den is None or den in names)
    }
    return restate(result, published, ratios, digits=RATIO_DIGITS) if ratios else published
