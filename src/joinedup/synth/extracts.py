"""Per-organisation person extracts of the synthetic population, with identity errors.

Each of five systems (GP, acute PAS, community, mental health, social care) holds the people
the population says it sees, under local record ids, keyed with the errors real systems carry:
typos in names, nicknames, surnames changed on marriage but not updated everywhere, addresses
moved, day and month transposed, sex recorded wrongly, missing fields, missing and mistyped
NHS numbers, duplicate records within a system, and twins (two distinct people sharing a
family name, birth date and postcode). Rates live in one settings object (`ExtractErrors`,
documented in docs/synthetic-data.md); every draw takes the seed. The truth (which record is
which person) is written apart, for measuring linkage.

Identity is read from the warehouse's `identity` table through an engine and a sqlglot query,
as every other reader of it does, in Arrow batches; nothing here logs a name, date or number.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from joinedup import __version__
from joinedup.errors import ConfigurationError
from joinedup.fhir.validate import is_valid_nhs_number
from joinedup.synth.identity import UNIT_LETTERS, name_lists
from joinedup.warehouse import Engine

#: The systems written, each with the activity types that put a person in it (None: everyone
#: registered, the GP system) and the prefix of its local record ids.
SYSTEMS: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "gp": (None, "GP"),
    "acute": (
        (
            "ae_attendance",
            "emergency_admission",
            "elective_admission",
            "day_case",
            "outpatient_attendance",
        ),
        "PAS",
    ),
    "community": (("community_contact",), "CHS"),
    "mental_health": (("mental_health_contact",), "MHS"),
    "social_care": (("social_care_package",), "ASC"),
}
#: The columns of every extract, in the order `joinedup link` reads them.
EXTRACT_COLUMNS = (
    "record_id",
    "given_name",
    "family_name",
    "birth_date",
    "sex",
    "postcode",
    "nhs_number",
)
TRUTH_COLUMNS = ("system", "record_id", "person_key")
TRUTH_FILE = Path("truth") / "truth.csv"
MANIFEST_FILE = "extracts.json"
_BATCH_PEOPLE = 50_000

#: Familiar forms of given names the generator draws (Faker's en_GB lists): a person known as
#: one in some systems and the other elsewhere.
NICKNAMES: dict[str, str] = {
    "William": "Bill", "Robert": "Bob", "Richard": "Dick", "Elizabeth": "Liz",
    "Margaret": "Maggie", "Thomas": "Tom", "James": "Jim", "Michael": "Mike",
    "Christopher": "Chris", "Jonathan": "Jon", "Nicholas": "Nick", "Benjamin": "Ben",
    "Alexander": "Alex", "Samuel": "Sam", "Joseph": "Joe", "Joshua": "Josh",
    "Matthew": "Matt", "Daniel": "Dan", "Anthony": "Tony", "Edward": "Ted",
    "Frederick": "Fred", "Kenneth": "Ken", "Leonard": "Len", "Raymond": "Ray",
    "Stephen": "Steve", "Steven": "Steve", "Timothy": "Tim", "Peter": "Pete",
    "Patrick": "Pat", "Andrew": "Andy", "David": "Dave", "Gregory": "Greg",
    "Catherine": "Cathy", "Katherine": "Kate", "Kathleen": "Kath", "Jennifer": "Jenny",
    "Rebecca": "Becky", "Samantha": "Sam", "Victoria": "Vicky", "Susan": "Sue",
    "Deborah": "Debbie", "Patricia": "Pat", "Jacqueline": "Jackie", "Alexandra": "Alex",
    "Josephine": "Jo", "Stephanie": "Steph", "Pamela": "Pam", "Abigail": "Abby",
    "Charlotte": "Lottie", "Dorothy": "Dot", "Frances": "Fran", "Christine": "Chris",
}  # fmt: skip
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class NhsNumberErrors(BaseModel):
    """How often a system's record lacks its NHS number or holds a mistyped one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    missing: float = Field(ge=0, le=1, description="Share of records with no NHS number.")
    invalid: float = Field(
        ge=0, le=1, description="Share with one digit mistyped (fails the Modulus 11 check)."
    )
    wrong_valid: float = Field(
        ge=0,
        le=1,
        description="Share with a different number that passes Modulus 11 (a digit mistyped "
        "and the check digit with it, or another person's number keyed).",
    )


class ExtractErrors(BaseModel):
    """The rates of every error the extracts carry; each is a share of records (per system
    record) unless it says people. docs/synthetic-data.md gives the source of each."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    given_name_typo: float = Field(0.015, ge=0, le=1)
    family_name_typo: float = Field(0.015, ge=0, le=1)
    nickname: float = Field(0.15, ge=0, le=1, description="Of records whose name has one.")
    surname_changed_people: float = Field(0.03, ge=0, le=1)
    address_moved_people: float = Field(0.10, ge=0, le=1)
    not_updated: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Of a changed person's records outside the GP system, the share still "
        "holding the old surname or postcode.",
    )
    day_month_transposed: float = Field(0.005, ge=0, le=1)
    missing_given_name: float = Field(0.002, ge=0, le=1)
    missing_family_name: float = Field(0.001, ge=0, le=1)
    missing_birth_date: float = Field(0.002, ge=0, le=1)
    missing_sex: float = Field(0.01, ge=0, le=1)
    sex_mistyped: float = Field(0.002, ge=0, le=1, description="Recorded as the other sex.")
    missing_postcode: float = Field(0.02, ge=0, le=1)
    nhs_number_gp: NhsNumberErrors = NhsNumberErrors(
        missing=0.002, invalid=0.001, wrong_valid=0.001
    )
    nhs_number_other: NhsNumberErrors = NhsNumberErrors(
        missing=0.03, invalid=0.01, wrong_valid=0.01
    )
    duplicate_gp: float = Field(0.002, ge=0, le=1)
    duplicate_other: float = Field(0.01, ge=0, le=1)
    twin_people: float = Field(
        0.01, ge=0, le=1, description="People who are one of a twin pair living together."
    )

    def scaled(self, scale: float) -> ExtractErrors:
        """Every error rate times `scale` (at most 1); `not_updated` (a share of a changed
        person's records, not an error rate) and twins (people, not errors) stay as they are."""
        if scale < 0:
            raise ConfigurationError(f"--error-scale {scale}: give a multiplier of 0 or more")
        values = self.model_dump()
        for name, value in values.items():
            if name in ("not_updated", "twin_people"):
                continue
            if isinstance(value, dict):
                values[name] = {k: min(1.0, v * scale) for k, v in value.items()}
            else:
                values[name] = min(1.0, value * scale)
        return ExtractErrors.model_validate(values)


class ExtractSettings(BaseModel):
    """What `write_extracts` writes: the seed, the error rates and who is in which system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 42
    error_scale: float = Field(1.0, ge=0, description="Multiplier on every error rate.")
    errors: ExtractErrors = ExtractErrors()
    every_system: bool = Field(
        False,
        description="Put every person in all five systems (a benchmark's fixed shape) instead "
        "of only those the population's activity sends there.",
    )

    @property
    def rates(self) -> ExtractErrors:
        return self.errors.scaled(self.error_scale)


@dataclass(frozen=True)
class ExtractsWritten:
    folder: Path
    truth: Path
    records: dict[str, int] = field(default_factory=dict)
    people: int = 0


def _people_query() -> exp.Select:
    """One row per person: identity (whole, from one source), sex and one flag per system."""
    first = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column("person_id")],
        order=exp.Order(expressions=[exp.column("source_system"), exp.column("source_id")]),
    )
    identity = exp.select(
        "person_id",
        "nhs_number",
        "given_name",
        "family_name",
        "birth_date",
        "postcode",
        first.as_("n"),
    ).from_("identity")
    flags = []
    for system, (types, _) in SYSTEMS.items():
        if types is None:
            continue
        seen = exp.case().when(
            exp.column("activity_type").isin(*[exp.Literal.string(t) for t in types]),
            exp.Literal.number(1),
        )
        flags.append(exp.Max(this=seen.else_(exp.Literal.number(0))).as_(system))
    activity = exp.select("person_id", *flags).from_("activity").group_by("person_id")
    system_flags = [
        exp.func("coalesce", exp.column(s, table="a"), exp.Literal.number(0)).as_(s)
        for s, (types, _) in SYSTEMS.items()
        if types is not None
    ]
    return (
        exp.select(
            exp.column("person_id", table="i"),
            exp.column("nhs_number", table="i"),
            exp.column("given_name", table="i"),
            exp.column("family_name", table="i"),
            exp.cast(exp.column("birth_date", table="i"), "VARCHAR").as_("birth_date"),
            exp.column("postcode", table="i"),
            exp.column("sex", table="p"),
            *system_flags,
        )
        .from_(identity.subquery("i"))
        .join(
            exp.to_table("person").as_("p"),
            on=exp.EQ(
                this=exp.column("person_id", table="i"), expression=exp.column("person_id", "p")
            ),
        )
        .join(
            activity.subquery("a"),
            on=exp.EQ(
                this=exp.column("person_id", table="i"), expression=exp.column("person_id", "a")
            ),
            join_type="left",
        )
        .where(exp.EQ(this=exp.column("n", table="i"), expression=exp.Literal.number(1)))
        .order_by(exp.column("person_id", table="i"))
    )


Text = NDArray[np.object_]


def _text(batch: pa.RecordBatch, name: str) -> Text:
    return np.asarray(batch.column(name).to_pylist(), dtype=object)


def typo(name: str, rng: np.random.Generator) -> str:
    """`name` with one keying slip: a letter replaced, dropped, doubled or swapped with the
    next."""
    if len(name) < 2:
        return name
    kind = int(rng.integers(4))
    at = int(rng.integers(1, len(name)))  # the first letter is usually right
    letter = _LETTERS[int(rng.integers(26))]
    if letter == name[at].upper():  # a slip always changes the name
        letter = _LETTERS[(_LETTERS.index(letter) + 1) % 26]
    letter = letter if name[at].isupper() else letter.lower()
    if kind == 0:
        return name[:at] + letter + name[at + 1 :]
    if kind == 1:
        return name[:at] + name[at + 1 :]
    if kind == 2:
        return name[:at] + name[at] + name[at:]
    at = min(at, len(name) - 2)
    if name[at] == name[at + 1]:
        return name[:at] + letter + name[at + 1 :]
    return name[:at] + name[at + 1] + name[at] + name[at + 2 :]


def _check_digit(body: str) -> int:
    total = sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True))
    return (11 - total % 11) % 11  # 10 cannot be a check digit


def mistyped_nhs_number(number: str, rng: np.random.Generator, *, valid: bool) -> str:
    """`number` with one of its first nine digits changed; with `valid`, the check digit is
    recomputed so the wrong number still passes Modulus 11, else it is kept (and fails)."""
    while True:
        at = int(rng.integers(9))
        digit = str((int(number[at]) + int(rng.integers(1, 10))) % 10)
        body = number[:at] + digit + number[at + 1 : 9]
        check = _check_digit(body)
        if not valid:
            wrong = body + number[9]
            if not is_valid_nhs_number(wrong):
                return wrong
            continue
        if check != 10:
            return body + str(check)


def _transposed(birth: str) -> str:
    year, month, day = birth.split("-")
    if int(day) > 12 or day == month:
        return birth
    return f"{year}-{day}-{month}"


@dataclass
class _People:
    """A batch of true identities, after twins are made and changes drawn."""

    key: Text
    nhs: Text
    given: Text
    family: Text
    birth: Text
    postcode: Text
    sex: Text
    old_family: Text  # None unless the surname changed
    old_postcode: Text  # None unless the person moved
    systems: dict[str, NDArray[np.bool_]]


def _random_postcode(districts: Text, rng: np.random.Generator) -> str:
    district = districts[int(rng.integers(len(districts)))]
    unit = "".join(UNIT_LETTERS[int(i)] for i in rng.integers(len(UNIT_LETTERS), size=2))
    return f"{district} {int(rng.integers(10))}{unit}"


def _people(batch: pa.RecordBatch, rates: ExtractErrors, settings: ExtractSettings,
            rng: np.random.Generator) -> _People:  # fmt: skip
    n = batch.num_rows
    key = np.asarray([str(p) for p in batch.column("person_id").to_pylist()], dtype=object)
    given, family = _text(batch, "given_name"), _text(batch, "family_name")
    birth, postcode = _text(batch, "birth_date"), _text(batch, "postcode")
    sex = np.asarray(
        [{"female": "F", "male": "M"}.get(s or "", "") for s in batch.column("sex").to_pylist()],
        dtype=object,
    )
    names = name_lists()
    # Twins: pairs of distinct people; the second of each pair takes the first's family name,
    # birth date and postcode in every system, and keeps a given name of their own.
    pairs = int(rng.binomial(n // 2, rates.twin_people)) if n >= 2 else 0
    chosen = rng.choice(n, size=2 * pairs, replace=False).reshape(-1, 2)
    for first, second in chosen:
        family[second], birth[second] = family[first], birth[first]
        postcode[second] = postcode[first]
        while given[second] == given[first]:
            pool = names.female if sex[second] == "F" else names.male
            given[second] = names.given[int(pool[rng.integers(len(pool))])]
    old_family = np.full(n, None, dtype=object)
    changed = np.flatnonzero(rng.random(n) < rates.surname_changed_people)
    for i in changed:
        drawn = int(np.searchsorted(names.family_cdf, rng.random(), side="right"))
        old_family[i] = names.family[min(drawn, len(names.family) - 1)]
    districts = np.unique([p.rsplit(" ", 1)[0] for p in postcode if p])
    old_postcode = np.full(n, None, dtype=object)
    for i in np.flatnonzero(rng.random(n) < rates.address_moved_people):
        old_postcode[i] = _random_postcode(districts, rng)
    systems = {
        system: np.ones(n, np.bool_)
        if types is None or settings.every_system
        else np.asarray(batch.column(system).to_numpy(zero_copy_only=False), np.int64) > 0
        for system, (types, _) in SYSTEMS.items()
    }
    return _People(key, _text(batch, "nhs_number"), given, family, birth, postcode, sex,
                   old_family, old_postcode, systems)  # fmt: skip


def _records(system: str, people: _People, rates: ExtractErrors,
             rng: np.random.Generator) -> tuple[pa.Table, Text]:  # fmt: skip
    """One system's records for a batch of people (in a shuffled order, without record ids),
    and the person key of each."""
    gp = system == "gp"
    members = np.flatnonzero(people.systems[system])
    duplicate = rates.duplicate_gp if gp else rates.duplicate_other
    twice = members[rng.random(len(members)) < duplicate]
    rows = rng.permutation(np.concatenate([members, twice]))
    m = len(rows)
    given, family = people.given[rows].copy(), people.family[rows].copy()
    birth, postcode = people.birth[rows].copy(), people.postcode[rows].copy()
    sex, nhs = people.sex[rows].copy(), people.nhs[rows].copy()

    def hit(rate: float) -> NDArray[np.int64]:
        return np.flatnonzero(rng.random(m) < rate)

    if not gp:  # the GP record is kept up to date; other systems lag
        stale = rng.random(m) < rates.not_updated
        old = people.old_family[rows]
        family = np.where(stale & (old != None), old, family)  # noqa: E711 - elementwise
        moved = people.old_postcode[rows]
        postcode = np.where(stale & (moved != None), moved, postcode)  # noqa: E711
    for i in hit(rates.nickname):
        given[i] = NICKNAMES.get(given[i], given[i])
    for i in hit(rates.given_name_typo):
        given[i] = typo(given[i], rng) if given[i] else given[i]
    for i in hit(rates.family_name_typo):
        family[i] = typo(family[i], rng) if family[i] else family[i]
    for i in hit(rates.day_month_transposed):
        birth[i] = _transposed(birth[i]) if birth[i] else birth[i]
    nhs_rates = rates.nhs_number_gp if gp else rates.nhs_number_other
    draw = rng.random(m)
    invalid_to = nhs_rates.missing + nhs_rates.invalid
    for i in np.flatnonzero(draw < invalid_to + nhs_rates.wrong_valid):
        if not nhs[i]:
            continue
        if draw[i] < nhs_rates.missing:
            nhs[i] = None
        else:
            nhs[i] = mistyped_nhs_number(nhs[i], rng, valid=draw[i] >= invalid_to)
    for column, rate in (
        (given, rates.missing_given_name),
        (family, rates.missing_family_name),
        (birth, rates.missing_birth_date),
        (postcode, rates.missing_postcode),
    ):
        column[hit(rate)] = None
    for i in hit(rates.sex_mistyped):
        sex[i] = {"F": "M", "M": "F"}.get(sex[i], sex[i])
    sex[hit(rates.missing_sex)] = ""
    table = pa.table(
        {
            "given_name": pa.array(given.tolist(), pa.string()),
            "family_name": pa.array(family.tolist(), pa.string()),
            "birth_date": pa.array(birth.tolist(), pa.string()),
            "sex": pa.array(sex.tolist(), pa.string()),
            "postcode": pa.array(postcode.tolist(), pa.string()),
            "nhs_number": pa.array(nhs.tolist(), pa.string()),
        }
    )
    return table, people.key[rows]


def _batches(engine: Engine) -> Iterator[pa.RecordBatch]:
    missing = [t for t in ("identity", "person", "activity") if t not in engine.table_names()]
    if missing:
        raise ConfigurationError(
            f"the warehouse has no {', '.join(missing)} table: build it with `joinedup synth`"
        )
    # Engines may hand back batches of any size; the random draws follow fixed-size batches,
    # so the same warehouse and seed give the same extracts whatever the engine does.
    held: list[pa.RecordBatch] = []
    rows = 0
    for batch in engine.stream(_people_query(), batch_rows=_BATCH_PEOPLE):
        held.append(batch)
        rows += batch.num_rows
        while rows >= _BATCH_PEOPLE:
            table = pa.Table.from_batches(held)
            yield table.slice(0, _BATCH_PEOPLE).combine_chunks().to_batches()[0]
            rest = table.slice(_BATCH_PEOPLE)
            held, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(held).combine_chunks().to_batches()[0]


def write_extracts(
    engine: Engine,
    folder: Path,
    settings: ExtractSettings | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExtractsWritten:
    """Write one CSV per system in `folder` (`gp.csv`, `acute.csv`, ...: the columns
    `joinedup link` reads), the truth (`truth/truth.csv`: system, record_id, person_key) and
    `extracts.json` (the seed, rates and counts), from the warehouse `engine` opens. The same
    warehouse and settings give the same files."""
    settings = settings or ExtractSettings()
    rates = settings.rates
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRUTH_FILE).parent.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(SYSTEMS, 0)
    people = 0
    handles = {s: (folder / f"{s}.csv").open("w", newline="", encoding="utf-8") for s in SYSTEMS}
    truth_handle = (folder / TRUTH_FILE).open("w", newline="", encoding="utf-8")
    try:
        writers = {s: csv.writer(h, lineterminator="\n") for s, h in handles.items()}
        for writer in writers.values():
            writer.writerow(EXTRACT_COLUMNS)
        truth = csv.writer(truth_handle, lineterminator="\n")
        truth.writerow(TRUTH_COLUMNS)
        for number, batch in enumerate(_batches(engine)):
            rng = np.random.default_rng(np.random.SeedSequence([settings.seed, number]))
            batch_people = _people(batch, rates, settings, rng)
            for system, (_, prefix) in SYSTEMS.items():
                table, keys = _records(system, batch_people, rates, rng)
                start = counts[system]
                ids = [f"{prefix}{start + i + 1:08d}" for i in range(table.num_rows)]
                columns = [table.column(c).to_pylist() for c in EXTRACT_COLUMNS[1:]]
                writers[system].writerows(
                    [rid, *("" if v is None else v for v in values)]
                    for rid, *values in zip(ids, *columns, strict=True)
                )
                truth.writerows((system, rid, key) for rid, key in zip(ids, keys, strict=True))
                counts[system] += table.num_rows
            people += batch.num_rows
            if progress is not None:
                progress(people)
    finally:
        for handle in handles.values():
            handle.close()
        truth_handle.close()
    manifest = {
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "joinedup_version": __version__,
        "seed": settings.seed,
        "error_scale": settings.error_scale,
        "every_system": settings.every_system,
        "rates": rates.model_dump(),
        "people": people,
        "records": counts,
        "truth": str(TRUTH_FILE),
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExtractsWritten(folder, folder / TRUTH_FILE, counts, people)
