"""Statistical disclosure control: small counts suppressed and the rest rounded, everywhere.

Every published aggregate (CLI summaries, dashboard, API, exports) passes through `apply`
under a `DisclosurePolicy`; the default suppresses counts 1–7 and rounds the rest to the
nearest 5. `format_count` and `describe` serve printed outputs and their footers.
"""

from joinedup.disclosure.control import (
    SUPPRESSED_MARK,
    SUPPRESSED_SUFFIX,
    Nesting,
    apply,
    control_count,
    format_count,
    restate,
)
from joinedup.disclosure.policy import DisclosurePolicy, describe

__all__ = [
    "SUPPRESSED_MARK",
    "SUPPRESSED_SUFFIX",
    "DisclosurePolicy",
    "Nesting",
    "apply",
    "control_count",
    "describe",
    "format_count",
    "restate",
]
