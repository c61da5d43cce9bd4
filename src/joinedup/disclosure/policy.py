"""The disclosure policy: which small counts are hidden, how the rest are rounded.

The defaults follow the rule commonly used for NHS hospital statistics in the NHS England
(formerly NHS Digital) Hospital Episode Statistics Analysis Guide: counts from 1 to 7 are
suppressed and other counts are rounded to the nearest 5. Every setting can be changed, for
example to the "suppress below 5" rule some local agreements use.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from joinedup.errors import InputError, describe_validation_error


class DisclosurePolicy(BaseModel):
    """Statistical disclosure control for every published aggregate.

    Defaults: counts 1–7 are suppressed (`suppress_below=8`, "suppress ≤7") and surviving
    counts are rounded to the nearest 5, the rule commonly used under the NHS England / NHS
    Digital HES Analysis Guide. Zero may be shown (`suppress_zero=False`), since a true zero
    reveals no one. When exactly one cell of a group is suppressed the next smallest is
    suppressed too, so the hidden value cannot be recovered by subtracting the others from a
    total; and a rate whose numerator or denominator is suppressed is suppressed with it.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="Disclosure policy",
        json_schema_extra={
            "description": "Small-number suppression and rounding applied to published counts."
        },
    )

    suppress_below: int = Field(
        8,
        description="Counts from 1 up to this value minus one are suppressed (8 means 1–7). "
        "1 turns small-count suppression off.",
        json_schema_extra={"minimum": 1},
    )
    suppress_zero: bool = Field(False, description="Suppress zero counts as well.")
    round_to: int = Field(
        5,
        description="Round surviving counts to the nearest multiple of this, halves up "
        "(1 means no rounding).",
        json_schema_extra={"minimum": 1},
    )
    secondary_suppression: bool = Field(
        True,
        description="When exactly one cell in a group is suppressed, suppress the next "
        "smallest cell in that group too.",
    )
    rates_follow_counts: bool = Field(
        True,
        description="Suppress a rate, share or prevalence whose numerator or denominator "
        "count is suppressed.",
    )

    @field_validator("suppress_below")
    @classmethod
    def _check_suppress_below(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"must be at least 1 (1 means no small-count suppression), got {value}"
            )
        return value

    @field_validator("round_to")
    @classmethod
    def _check_round_to(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"must be at least 1 (1 means no rounding), got {value}")
        return value

    @classmethod
    def parse(cls, raw: object, *, source: str = "disclosure policy") -> DisclosurePolicy:
        """Validate a policy from parsed JSON; errors name the source, field and reason."""
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise InputError(source, describe_validation_error(err)) from err


def describe(policy: DisclosurePolicy) -> str:
    """One line for the footer of a printed output, e.g. "counts 1–7 suppressed, others
    rounded to the nearest 5"."""
    low = 0 if policy.suppress_zero else 1
    top = policy.suppress_below - 1
    if top < low:
        hidden = "no small counts suppressed"
    elif top == low:
        hidden = "zero counts suppressed" if low == 0 else "counts of 1 suppressed"
    else:
        hidden = f"counts {low}–{top} suppressed"
    others = "others" if top >= low else "counts"
    if policy.round_to == 1:
        return f"{hidden}, {others} shown unrounded"
    return f"{hidden}, {others} rounded to the nearest {policy.round_to}"
