"""`joinedup serve` and `joinedup users`: the dashboard and who may sign in to it."""

from __future__ import annotations

import getpass
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sqlglot import exp

from joinedup.cli.main import DEFAULT_WAREHOUSE, WarehouseOption, console, err_console
from joinedup.errors import ConfigurationError, InputError
from joinedup.records import Policy, RecordsError, RecordsSettings
from joinedup.records.consent import registered_practices
from joinedup.records.proxy_age import AGE_LIMITED_RELATIONSHIPS, ProxyAgeEnd
from joinedup.warehouse import open_engine
from joinedup.warehouse.lake import Lake
from joinedup.web.access import (
    ODS_CODE,
    PROXY_RELATIONSHIPS,
    ROLE_LABELS,
    AccessStore,
    Role,
    User,
    create_demo_citizens,
    create_demo_users,
    demo_password,
)
from joinedup.web.heap import settle_heap
from joinedup.web.listening import url_address
from joinedup.web.settings import WebSettings, load_settings

users_app = typer.Typer(help="Who may sign in to the dashboard, and as what.", no_args_is_help=True)

HostOption = Annotated[
    str | None, typer.Option("--host", help="Address to listen on (env JOINEDUP_HOST).")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Port to listen on (env JOINEDUP_PORT).")
]
SettingsOption = Annotated[
    Path | None,
    typer.Option("--settings", help="A file of JOINEDUP_*=value lines (env vars win)."),
]


def _settings(
    warehouse: Path | None, settings_file: Path | None = None, **more: object
) -> WebSettings:
    given = (
        warehouse if warehouse != DEFAULT_WAREHOUSE or "JOINEDUP_WAREHOUSE" in os.environ else None
    )
    return load_settings(settings_file, warehouse=given, **more)


def _store(settings: WebSettings) -> AccessStore:
    return AccessStore(
        settings.access_path, allow_demo_users=settings.mode == "demo",
        audit_key_path=settings.audit_key_path,
    )  # fmt: skip


def _account() -> str:
    """The operating system's account running the command, for the audit log (a container's
    user may have no entry in the password file: its uid then)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"


class TerminalAudit:
    """The audit log (the access database beside `warehouse`, the one `serve` and `records
    serve` keep, as `settings_file` places it) that bulk work on the records store done at the
    terminal writes to, opened before the work starts: a log that cannot be opened stops the
    command in one line before anything is loaded or exported. Entries are written as the
    API's are (`fhir <interaction>`, the status first in the detail), so the privacy officer's
    AuditEvent search finds them; the user is the operating system's account."""

    def __init__(self, warehouse: Path, settings_file: Path | None = None) -> None:
        settings = _settings(warehouse, settings_file)
        self.path = settings.access_path
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._access = _store(settings)
        except (OSError, sqlite3.Error) as err:
            raise ConfigurationError(f"audit log {self.path}: cannot open it ({err})") from None
        self._user = f"cli:{_account()}"
        self.done = 0

    def write(self, interaction: str, store: str, detail: str, *, ok: bool = True) -> None:
        """One entry for work on the records store `store` (its dialect)."""
        try:
            self._access.audit(
                None, f"fhir {interaction}", f"fhir/records-store/{store}",
                detail=f"{200 if ok else 500}; {detail}", reason="command line", client="cli",
                username=self._user,
            )  # fmt: skip
        except sqlite3.Error as err:
            raise ConfigurationError(
                f"audit log {self.path}: the {interaction} was done but its entry could not be "
                f"written ({err})"
            ) from None

    def counted(self, advance: Callable[[int], None]) -> Callable[[int], None]:
        """`advance` (a progress bar's), counting the resources done for `stopping`."""

        def counting(n: int) -> None:
            self.done += n
            advance(n)

        return counting

    @contextmanager
    def stopping(self, interaction: str, store: str, what: str) -> Iterator[None]:
        """Work that, should it stop (an error, Ctrl-C), is logged as a failure with how far
        it got (the resources `counted` so far, then `what`), without hiding why it stopped
        should the log fail too."""
        self.done = 0
        try:
            yield
        except BaseException as err:
            stopped = f"stopped ({type(err).__name__}) after {self.done} {what}"
            with suppress(Exception):
                self.write(interaction, store, stopped, ok=False)
            raise

    def close(self) -> None:
        self._access.close()

    def __enter__(self) -> TerminalAudit:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def pcns_for_demo(warehouse: Path) -> list[str]:
    """Two PCNs in different places, so the demo clinicians can show each other's refusal."""
    with open_engine("duckdb", warehouse=warehouse, read_only=True) as engine:
        found = engine.execute(exp.select("pcn_code", "place_code").from_("pcn")).to_pylist()
    rows = sorted((r["pcn_code"], r["place_code"]) for r in found)
    first = rows[0] if rows else None
    other = next(
        (r for r in rows if first and r[1] != first[1]), rows[1] if len(rows) > 1 else None
    )
    return [str(r[0]) for r in (first, other) if r is not None]


def _organisation_kind(warehouse: Path, code: str) -> str:
    """What the warehouse knows ODS code `code` as: `practice`, `pcn`, or the organisation's
    type (acute_trust, local_authority, ...); InputError naming --organisation when none."""
    if not ODS_CODE.fullmatch(code):
        raise InputError(
            "--organisation", f"{code!r} is not an ODS code: 3 to 10 capital letters and digits"
        )
    if not warehouse.exists():
        raise InputError("--organisation", f"no warehouse at {warehouse} to find {code} in")
    value = exp.convert(code)
    queries = (
        exp.select(exp.Literal.string("practice").as_("kind"))
        .from_("practice")
        .where(exp.column("practice_code").eq(value)),
        exp.select(exp.Literal.string("pcn").as_("kind"))
        .from_("pcn")
        .where(exp.column("pcn_code").eq(value)),
        exp.select(exp.column("organisation_type").as_("kind"))
        .from_("organisation")
        .where(exp.column("organisation_code").eq(value)),
    )
    with open_engine("duckdb", warehouse=warehouse, read_only=True) as engine:
        for query in queries:
            found = engine.execute(query).to_pylist()
            if found:
                return str(found[0]["kind"])
    raise InputError(
        "--organisation", f"{code} is not a practice, PCN or organisation in the warehouse"
    )


def _council_for_demo(warehouse: Path) -> str | None:
    """The first council of the footprint, for the demo care worker (None: there is none)."""
    query = (
        exp.select("organisation_code")
        .from_("organisation")
        .where(exp.column("organisation_type").eq(exp.convert("local_authority")))
        .order_by("organisation_code")
        .limit(1)
    )
    with open_engine("duckdb", warehouse=warehouse, read_only=True) as engine:
        found = engine.execute(query).to_pylist()
    return str(found[0]["organisation_code"]) if found else None


def print_users(users: list[User], *, demo: bool = False) -> None:
    table = Table(title="Dashboard users", show_edge=False)
    for col in ("username", "role", "sees", *(("password",) if demo else ())):
        table.add_column(col)
    for u in users:
        row = [u.username, ROLE_LABELS[u.role], u.scope]
        table.add_row(*(escape(c) for c in (*row, *((demo_password(u.username),) if demo else ()))))
    console.print(table)


def _patients_for_demo(records: str | None) -> list[str]:
    """Two Patients of the records store (--records, else JOINEDUP_RECORDS) for the demo
    citizens: none when no store is configured or it has no patients."""
    if not (records or os.environ.get("JOINEDUP_RECORDS")):
        return []
    from joinedup.cli.records import open_records  # noqa: PLC0415 - it imports this module

    with open_records(records) as store:
        return [str(p["id"]) for p in store.search("Patient", [("_count", "2")]).resources]


def add_demo_users(warehouse: Path, records: str | None = None) -> list[User]:
    """The demo user of each role and, when a records store is configured and has patients,
    the demo citizens linked to two of them."""
    settings = _settings(warehouse)
    patients = _patients_for_demo(records)
    store = _store(settings)
    try:
        users = create_demo_users(
            store, pcns_for_demo(settings.warehouse), _council_for_demo(settings.warehouse)
        )
        return users + create_demo_citizens(store, patients)
    finally:
        store.close()


def serve(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    host: HostOption = None,
    port: PortOption = None,
    settings_file: SettingsOption = None,
    boundaries: Annotated[
        Path | None,
        typer.Option("--boundaries", help="ONS LAD boundaries GeoJSON for a real footprint's map."),
    ] = None,
    records: Annotated[
        str | None,
        typer.Option(
            "--records",
            help="Also serve the FHIR R4 API at /fhir/R4 over this records store (a SQLite path "
            "or postgresql:// URL; env JOINEDUP_RECORDS), with a person's joined-up record at "
            "/records and break-glass grants at /privacy/break-glass.",
        ),
    ] = None,
    code_systems: Annotated[
        Path | None,
        typer.Option(
            "--code-systems",
            help="With --records: a folder of CodeSystem resources (e.g. UK Core's) that the "
            "FHIR API's $validate checks codings against (env JOINEDUP_RECORDS_CODE_SYSTEMS).",
        ),
    ] = None,
) -> None:
    """Serve the dashboard and its JSON API (docs at /api/docs) over a warehouse, read-only.

    Settings come from JOINEDUP_* environment variables or --settings: JOINEDUP_MODE=production
    needs JOINEDUP_SECRET_KEY (32+ characters), sends cookies over HTTPS only and refuses the
    demo accounts. Add users with `joinedup users add`. Stop the server before rebuilding a
    DuckDB file warehouse (DuckDB lets one process write a file only when no other has it
    open); a lake can be rebuilt while served, and is shown as it was at start until restart.
    """
    import uvicorn  # noqa: PLC0415 - only the server needs it

    from joinedup.web.app import create_app  # noqa: PLC0415 - loads FastAPI and matplotlib
    from joinedup.web.dashboard import REQUIRED_TABLES  # noqa: PLC0415

    settings = _settings(warehouse, settings_file, host=host, port=port, boundaries=boundaries)
    if not (settings.warehouse.is_file() or Lake(settings.warehouse).exists()):
        raise ConfigurationError(
            f"warehouse {settings.warehouse} does not exist: build one with `joinedup demo`"
        )
    with open_engine("duckdb", warehouse=settings.warehouse, read_only=True) as engine:
        missing = [t for t in REQUIRED_TABLES if t not in engine.table_names()]
    if missing:
        raise ConfigurationError(
            f"warehouse {settings.warehouse} lacks {', '.join(missing)}: run `joinedup phm run` "
            "on it first (and `joinedup finance run` for the finance page), or `joinedup demo`"
        )
    app = create_app(settings)
    store = people = None
    if records or os.environ.get("JOINEDUP_RECORDS"):
        from joinedup.cli.records import (  # noqa: PLC0415 - it imports this module
            open_code_systems,
            open_records,
        )
        from joinedup.web.records_api import (  # noqa: PLC0415
            mount_records,
            open_exports,
            read_pcn_practices,
        )

        codes = open_code_systems(code_systems)
        store = open_records(records)
        mount_records(
            app, store, codes, open_exports(store, records),
            read_pcn_practices(settings.warehouse),
        )  # fmt: skip
        # The person index's review queue, in the same store (docs/linkage.md).
        from joinedup.records import PersonIndexStore, RecordsSettings  # noqa: PLC0415
        from joinedup.web.person_index import mount_person_index  # noqa: PLC0415

        people = PersonIndexStore(records or RecordsSettings().records)
        mount_person_index(app, people)
        # One person's joined-up record and the break-glass review, as pages (docs/web.md).
        from joinedup.web.records_pages import mount_records_pages  # noqa: PLC0415

        mount_records_pages(app)
    address = f"http://{url_address(settings.host, settings.port)}/"
    console.print(
        f"[bold]joinedup dashboard[/] for {escape(str(settings.warehouse))} ({settings.mode} mode)"
    )
    console.print(
        f"Open [bold cyan]{address}[/] and sign in; API documentation at {address}api/docs"
    )
    if store is not None:
        console.print(f"FHIR R4 records API ({store.dialect}) at {address}fhir/R4")
    console.print("Press Ctrl+C to stop.")
    settle_heap()
    # proxy_headers off: the application itself believes X-Forwarded-For only from
    # JOINEDUP_TRUSTED_PROXIES (Uvicorn would believe it from any loopback client).
    try:
        uvicorn.run(
            app, host=settings.host, port=settings.port, access_log=False, log_level="warning",
            proxy_headers=False,
        )  # fmt: skip
    finally:
        if store is not None:
            store.close()
        if people is not None:
            people.close()


@users_app.command("add")
def add_user(
    username: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: Annotated[Role, typer.Option("--role", help="What the user may see.")],
    pcn: Annotated[str | None, typer.Option("--pcn", help="A clinician's PCN code.")] = None,
    practice: Annotated[
        str | None,
        typer.Option(
            "--practice",
            help="A clinician's practice code (narrower); its PCN is read from the warehouse, "
            "and a --pcn given with it must match (unchecked when there is no warehouse).",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name shown on pages.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Reset an existing user.")] = False,
    patient: Annotated[
        str | None,
        typer.Option(
            "--patient", help="A citizen's own record: its FHIR Patient id in the records store."
        ),
    ] = None,
    organisation: Annotated[
        str | None,
        typer.Option(
            "--organisation",
            help="The ODS code of the organisation a clinician or care worker works for: a GP "
            "practice, a PCN, an NHS trust or a council in the warehouse.",
        ),
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Add a user. The password is asked for (or read from JOINEDUP_NEW_PASSWORD), at least
    12 characters; it is stored only as an Argon2id hash. A citizen (--role citizen) is linked
    to their own record with --patient and sees only that. A care worker (--role care-worker)
    needs --organisation (their council, say) and sees a person's record only through that
    organisation's relationship with them; a clinician of a trust gives --organisation too."""
    password = os.environ.get("JOINEDUP_NEW_PASSWORD") or typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True
    )
    settings = _settings(warehouse)
    # A bad organisation or practice is refused before the access database is opened (or
    # created), so a mistyped command leaves nothing behind.
    if organisation is not None:
        kind = _organisation_kind(settings.warehouse, organisation)
        if role is Role.CLINICIAN and kind == "practice" and not practice:
            practice, organisation = organisation, None  # registration counts too
        elif role is Role.CLINICIAN and kind == "pcn" and not pcn:
            pcn, organisation = organisation, None
    if practice and (not pcn or settings.warehouse.exists()):  # else --pcn as given, unchecked
        query = (
            exp.select("pcn_code")
            .from_("practice")
            .where(exp.column("practice_code").eq(exp.convert(practice)))
        )
        with open_engine("duckdb", warehouse=settings.warehouse, read_only=True) as engine:
            found = engine.execute(query).to_pylist()
        if not found:
            raise InputError("--practice", f"{practice} is not a practice in the warehouse")
        in_pcn = str(found[0]["pcn_code"])
        if pcn and pcn != in_pcn:
            raise InputError("--practice", f"{practice} is in PCN {in_pcn}, not --pcn {pcn}")
        pcn = in_pcn
    store = _store(settings)
    try:
        user = store.add_user(
            username, password, role, display_name=name, pcn_code=pcn,
            practice_code=practice, replace=replace, patient_id=patient,
            organisation_code=organisation,
        )  # fmt: skip
    finally:
        store.close()
    console.print(
        f"Added {escape(user.username)} ({ROLE_LABELS[user.role]}, {escape(user.scope)})."
    )


@users_app.command("proxy")
def proxy(
    username: Annotated[str, typer.Argument(help="The citizen who is the proxy.")],
    patient: Annotated[
        str, typer.Option("--patient", help="The FHIR Patient id of the person they act for.")
    ],
    relationship: Annotated[
        str,
        typer.Option(
            "--relationship", help=f"How they are related: {', '.join(PROXY_RELATIONSHIPS)}."
        ),
    ],
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the access away.")] = False,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="DATE",
            help="Its last day, YYYY-MM-DD (UTC); the access ends after it. Default: no end "
            "(a parent's or guardian's: the day before the child's 16th birthday).",
        ),
    ] = None,
    records: Annotated[
        str | None,
        typer.Option(
            "--records",
            help="The records store holding the Patient (a SQLite path or postgresql:// URL; "
            "env JOINEDUP_RECORDS): a parent's or guardian's access is checked against the "
            "child's Patient.birthDate there.",
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="USER",
            help="Who reviewed it, for a parent's or guardian's access recorded on or after "
            "the child's review birthday (required then; taken from the notice period before "
            "it): an admin, or a clinician of the child's registered GP practice. The grant "
            "is then its review: kept as renewed by them and audited as theirs.",
        ),
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Give a citizen proxy access to another person's record (a parent to their child's, a
    carer to the person they care for), until --until's day if given, or take it away with
    --revoke. Record the relationship only once it has been checked (who the proxy is, and the
    person's consent or the legal authority); both are audited with the person's Patient id
    and the relationship. `users proxies` lists them.

    A parent's or guardian's access ends on the child's 16th birthday, read from their
    Patient's birthDate in the records store (NHS England: at 16 a person is presumed able to
    decide, and parent and guardian access stops; JOINEDUP_RECORDS_PROXY_END_AGE for an
    earlier age). It is refused for someone already 16, or with no birthDate; from 16, the
    person themselves can agree to a proxy, recorded as --relationship carer. From the
    child's 11th birthday (JOINEDUP_RECORDS_PROXY_REVIEW_AGE, at most 13) it is suspended until
    their GP practice renews it after review (`users renew-proxy`); a grant recorded again
    needs that renewal again. Recorded on or after that birthday, the grant is itself the
    review: --by names who reviewed it (an admin, or a clinician of the child's registered
    practice), else it is refused. A carer's or an attorney's access does not end by age."""
    last_day = _date("--until", until) if until is not None else None
    settings = _settings(warehouse)
    ages: list[ProxyAgeEnd | None] = []
    practices: list[frozenset[str]] = []

    def age_check() -> ProxyAgeEnd | None:
        end, registered = _read_patient(records, patient, relationship)
        ages.append(end)
        practices.append(registered)
        return end

    limited = relationship in AGE_LIMITED_RELATIONSHIPS
    store = _store(settings)
    try:
        user = store.set_proxy(
            username, patient, relationship, revoke=revoke, until=last_day,
            age_check=age_check if limited else None, by=by,
            registered=lambda: practices[-1] if practices else frozenset(),
        )  # fmt: skip
    finally:
        store.close()
    age_end = ages[0] if ages else None
    if age_end is not None and age_end.last_day and (not last_day or age_end.last_day < last_day):
        last_day = age_end.last_day
    ends = f" through {last_day.isoformat()}" if last_day and not revoke else ""
    done = "no longer sees" if revoke else f"now sees, as {relationship}{ends},"
    console.print(
        f"{escape(user.username)} {done} Patient/{escape(patient)}'s record; proxy for "
        f"{len(user.proxy_for)} in all."
    )
    if by is not None and age_end is not None and age_end.reviews is not None:
        console.print(
            f"Recorded as its review ({escape(age_end.review_rule)}) by {escape(by)}: not "
            "suspended for it."
        )
    elif age_end is not None and age_end.reviews is not None and not revoke:
        # (a grant on or after the review birthday is refused without --by: not past it here)
        console.print(
            f"Comes up for review on {age_end.reviews.isoformat()} "
            f"({escape(age_end.review_rule)}): from then suspended until the person's GP "
            f"practice renews it (joinedup users renew-proxy {escape(username)} --patient "
            f"{escape(patient)} --by REVIEWER)."
        )


def _read_patient(
    records: str | None, patient: str, relationship: str
) -> tuple[ProxyAgeEnd | None, frozenset[str]]:
    """The age rule's end and review of `relationship`'s access to Patient `patient` (as for a
    grant with no renewal), and the person's registered GP practices, from one read of the
    Patient in the records store at `records` (else JOINEDUP_RECORDS); InputError naming
    --records when there is no store to read, --patient when the Patient is not in it."""
    from joinedup.cli.records import open_records  # noqa: PLC0415 - it imports this module

    target = records or os.environ.get("JOINEDUP_RECORDS")
    why = "a parent's or guardian's access is checked against the child's Patient.birthDate"
    if not target:
        raise InputError("--records", f"name the records store holding the Patient: {why}")
    if "://" not in target and not Path(target).is_file():
        raise InputError("--records", f"no records store at {target} ({why} there)")
    settings = RecordsSettings()
    with open_records(target) as store:
        try:
            found = store.read("Patient", patient)
        except RecordsError:
            raise InputError("--patient", f"no Patient/{patient} in the records store") from None
        policy = Policy(
            store, proxy_end_age=settings.records_proxy_end_age, clock=_utc_now,
            proxy_review_age=settings.records_proxy_review_age,
            proxy_notice_days=settings.records_proxy_notice_days,
        )  # fmt: skip
        end = policy.proxy_age_end_of(patient, found, relationship)
        return end, frozenset(registered_practices(found))


@users_app.command("renew-proxy")
def renew_proxy(
    username: Annotated[str, typer.Argument(help="The citizen who is the proxy.")],
    patient: Annotated[
        str, typer.Option("--patient", help="The FHIR Patient id of the child they act for.")
    ],
    by: Annotated[
        str,
        typer.Option(
            "--by",
            metavar="USER",
            help="Who reviewed it and renews it: an admin, or a clinician of the child's "
            "registered GP practice (their --practice or --organisation is named in the "
            "child's Patient.generalPractitioner). Recorded and audited.",
        ),
    ],
    records: Annotated[
        str | None,
        typer.Option(
            "--records",
            help="The records store holding the Patient (a SQLite path or postgresql:// URL; "
            "env JOINEDUP_RECORDS): the review day and the registered practice are read there.",
        ),
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Renew a parent's or guardian's proxy access after the practice's review. From the
    child's 11th birthday (JOINEDUP_RECORDS_PROXY_REVIEW_AGE, at most 13: NHS England's
    DAPB3051 7.2 review point, 11 in the RCGP's guidance for general practice) a parent's or
    guardian's access is suspended until the child's GP practice reviews it (the child's
    consent when they can give it, their best interests) and renews it here. A renewal is
    taken from JOINEDUP_RECORDS_PROXY_NOTICE_DAYS (default 30) before the review day, so
    access need not lapse, and is kept with that review day, which decides whether it counts
    (a notice period changed later does not undo it); it lasts until the access ends at 16 or
    is recorded again (`users proxy --by`, which is then its review). Refused, and
    audited, for a reviewer outside the child's registered practice, a relationship revoked or
    expired, or a child already 16."""
    settings = _settings(warehouse)
    if not settings.access_path.exists():  # not created empty by a renewal
        raise InputError("--warehouse", f"no access database at {settings.access_path}")
    store = _store(settings)
    try:
        found = [p for p in store.proxies(username) if p.patient_id == patient]
        # the Patient is read only for a relationship recorded (renew_proxy refuses others)
        age_end, registered = (
            _read_patient(records, patient, found[0].relationship) if found else (None, frozenset())
        )
        record = store.renew_proxy(
            username, patient, by, registered=registered, age_check=lambda: age_end
        )
    finally:
        store.close()
    console.print(
        f"{escape(record.username)}'s access as {record.relationship} to "
        f"Patient/{escape(record.patient_id)}'s record renewed after review by {escape(by)} "
        f"on {(record.renewed_at or '')[:10]}"
        + (f"; it ends after {record.until_date}." if record.until_date else ".")
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _date(option: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(option, f"{text!r} is not a date (YYYY-MM-DD)") from None


@users_app.command("proxies")
def list_proxies(
    username: Annotated[
        str | None, typer.Argument(help="Only this citizen's (default: everyone's).")
    ] = None,
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """List the proxy relationships recorded: who acts for which Patient, how related, since
    when, until when and why it ends then (--until, or the day before a child's 16th
    birthday for a parent or guardian), when and by whom the child's practice renewed it
    after review (`users renew-proxy`), and whether active, expired or revoked (ended ones
    stay listed)."""
    settings = _settings(warehouse)
    if not settings.access_path.exists():  # not created empty by a listing
        raise InputError("--warehouse", f"no access database at {settings.access_path}")
    store = _store(settings)
    try:
        records = store.proxies(username)
    finally:
        store.close()
    table = Table(
        "proxy", "for Patient", "relationship", "granted", "until", "why it ends", "renewed",
        "status",
    )  # fmt: skip
    for r in records:
        renewed = f"{r.renewed_at[:10]} by {r.renewed_by}" if r.renewed_at else "-"
        table.add_row(
            escape(r.username), escape(r.patient_id), r.relationship, r.granted_at[:10],
            r.until_date or "-", escape(r.until_reason or "-"), escape(renewed), r.status,
        )  # fmt: skip
    console.print(table)
    console.print(f"{len(records)} recorded.")


@users_app.command("list")
def list_users(warehouse: WarehouseOption = DEFAULT_WAREHOUSE) -> None:
    """List who may sign in (never their passwords)."""
    store = _store(_settings(warehouse))
    try:
        print_users(store.users())
    finally:
        store.close()


@users_app.command("token")
def issue_token(
    username: Annotated[str, typer.Argument(help="The user the token signs in as.")],
    hours: Annotated[
        str,
        typer.Option("--hours", metavar="HOURS", help="How long it lasts (at most a year: 8784)."),
    ] = "24",
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
) -> None:
    """Print a bearer token for a user, for a feed or API client (send it as
    `Authorization: Bearer TOKEN` to /api/v1 and /fhir/R4). No password is asked: whoever can
    run this holds the access database. Only the token's hash is stored; the issue is audited;
    `DELETE /api/v1/token` with it revokes it. The token alone goes to standard output."""
    # Parsed here rather than by Typer, so a non-number is refused in one line like the rest.
    try:
        lifetime = float(hours)
    except ValueError:
        raise InputError("--hours", f"{hours!r} is not a number of hours") from None
    settings = _settings(warehouse)
    if not settings.access_path.exists():  # refused without creating an empty access database
        raise InputError(
            "NAME",
            f"{username!r} is not an active user (no access database at {settings.access_path})",
        )
    store = _store(settings)
    try:
        user, token, expires = store.issue_token(username, lifetime)
    finally:
        store.close()
    err_console.print(
        f"Token for {escape(user.username)} ({ROLE_LABELS[user.role]}), valid until "
        f"{expires:%Y-%m-%d %H:%M} UTC:",
        highlight=False,
    )
    typer.echo(token)  # alone on standard output, for scripts: TOKEN=$(joinedup users token …)


@users_app.command("demo")
def demo_users(
    warehouse: WarehouseOption = DEFAULT_WAREHOUSE,
    records: Annotated[
        str | None,
        typer.Option(
            "--records",
            help="A records store (SQLite path or postgresql:// URL; env JOINEDUP_RECORDS) "
            "whose first two patients the demo citizens are linked to.",
        ),
    ] = None,
) -> None:
    """Create (or reset) the demo user of each role, and the two demo citizens when a records
    store is configured and has patients; they sign in in demo mode only."""
    print_users(add_demo_users(warehouse, records), demo=True)
