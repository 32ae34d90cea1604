"""Synthetic demo data: invented people, their machines and check-up histories.

Every name is made of invented syllables (no real person), every email is at
``example.com``, and every reading follows a personal baseline that drifts slowly over the
months with day-to-day noise, as real readings do. The same ``seed`` and ``end`` make the
same people, values and times. The data is written through the same services as the Core
API (accounts, machines, check-up ingest), so it is validated exactly as uploads are.
"""

from __future__ import annotations

import math
import random
import typing
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthapp.accounts.models import User
from healthapp.domain.checkup_types import REGISTRY

_ONSETS = ("ka", "lo", "mi", "re", "sa", "vo", "ne", "ta", "bri", "dru", "fe", "qui", "zel")
_CODAS = ("n", "ra", "lia", "mo", "ssa", "th", "vin", "na", "ro", "x", "dell", "wyn")
_SURNAME_ENDS = ("brook", "vale", "mere", "holt", "ridge", "wick", "moor", "stead", "fen")
_BLOOD_GROUPS = (("O+", 37), ("A+", 33), ("B+", 9), ("O-", 7), ("A-", 6), ("AB+", 4))
_BLOOD_GROUPS_RARE = (("B-", 2), ("AB-", 2))
_SEXES = (("female", 50), ("male", 48), ("intersex", 1), ("unknown", 1))
_DISEASES = (
    ("Hypertension", "Managed with lifestyle changes and medication."),
    ("Type 2 diabetes", "Diet-controlled; quarterly review."),
    ("Asthma", "Mild, seasonal."),
    ("Hypothyroidism", None),
    ("Atrial fibrillation", "Paroxysmal; anticoagulated."),
    ("Hyperlipidaemia", None),
)
_MANUFACTURERS = ("Acme Medical", "Northwind Devices", "Globex Health", "Initech Bio")
#: How often each type is measured, relative to one another.
_TYPE_WEIGHTS = {
    "blood_pressure": 6,
    "heart_rate": 4,
    "spo2": 3,
    "body_temperature": 2,
    "blood_glucose": 2,
    "body_weight": 3,
    "height": 0.2,
    "ecg": 1,
}
_TAKERS = ("self", "self", "self", "nurse on duty", "family member")


def _weighted(rng: random.Random, choices: tuple[tuple[str, float], ...]) -> str:
    names = [name for name, _ in choices]
    return rng.choices(names, weights=[weight for _, weight in choices])[0]


def invented_name(rng: random.Random) -> tuple[str, str]:
    """An invented ``(first, last)`` name made of syllables."""
    first = rng.choice(_ONSETS) + rng.choice(_CODAS)
    if rng.random() < 0.4:
        first += rng.choice(_ONSETS[:6])
    last = rng.choice(_ONSETS) + rng.choice(_CODAS) + rng.choice(_SURNAME_ENDS)
    return first.capitalize(), last.capitalize()


@dataclass
class DemoMachine:
    machine_type: str
    manufacturer: str
    serial_number: str


@dataclass
class DemoPerson:
    """One synthetic patient and the baselines their readings drift around."""

    username: str
    email: str
    first_name: str
    last_name: str
    profile: dict[str, Any]
    diseases: list[dict[str, Any]]
    baselines: dict[str, float]
    types: list[str]
    weights: list[float]
    phase: float
    fever_days: set[int] = field(default_factory=set)


def make_machines(rng: random.Random, *, prefix: str, per_type: int) -> list[DemoMachine]:
    """``per_type`` machines for each check-up type, from invented manufacturers."""
    machines = []
    for checkup_type in REGISTRY:
        for number in range(per_type):
            code = "".join(word[0] for word in checkup_type.split("_")).upper()
            machines.append(
                DemoMachine(
                    machine_type=checkup_type,
                    manufacturer=rng.choice(_MANUFACTURERS),
                    serial_number=(
                        f"{prefix.upper()}-{code}-{number + 1:04d}-{rng.randrange(16**6):06x}"
                    ),
                )
            )
    return machines


def make_person(rng: random.Random, *, prefix: str, number: int, end: date) -> DemoPerson:
    """A patient with a profile, maybe a disease or two, and personal baselines."""
    first, last = invented_name(rng)
    username = f"{prefix}.{first.lower()[:10]}.{number:05d}"
    sex = _weighted(rng, _SEXES)
    born = end - timedelta(days=rng.randint(18 * 365, 90 * 365))
    profile = {
        "blood_group": _weighted(rng, _BLOOD_GROUPS + _BLOOD_GROUPS_RARE),
        "date_of_birth": born.isoformat(),
        "sex": sex,
    }
    age = (end - born).days / 365.25
    diseases = []
    for name, details in rng.sample(_DISEASES, k=rng.choices((0, 1, 2), (5, 3, 1))[0]):
        diagnosed = end - timedelta(days=rng.randint(30, max(31, int((age - 16) * 365))))
        diseases.append({"name": name, "details": details, "diagnosed_on": diagnosed.isoformat()})
    names = {disease["name"] for disease in diseases}
    height = rng.gauss(176 if sex == "male" else 163, 7)
    bmi = rng.uniform(19, 33)
    baselines = {
        "systolic": rng.gauss(118 + 0.35 * max(0.0, age - 30), 8)
        + (18 if "Hypertension" in names else 0),
        "diastolic_gap": rng.uniform(35, 50),
        "pulse": rng.gauss(70, 7),
        "spo2": min(99.0, rng.gauss(97.5, 0.8) - (1.5 if "Asthma" in names else 0)),
        "celsius": rng.gauss(36.7, 0.15),
        "glucose": rng.gauss(92, 7) + (45 if "Type 2 diabetes" in names else 0),
        "kg": bmi * (height / 100) ** 2,
        "kg_trend": rng.uniform(-4, 4),  # kg over the whole history
        "cm": height,
        "qt": rng.gauss(400, 15),
        "afib": 0.35 if "Atrial fibrillation" in names else 0.01,
    }
    types = list(_TYPE_WEIGHTS)
    weights = [_TYPE_WEIGHTS[name] for name in types]
    return DemoPerson(
        username=username,
        email=f"{username}@example.com",
        first_name=first,
        last_name=last,
        profile=profile,
        diseases=diseases,
        baselines=baselines,
        types=types,
        weights=weights,
        phase=rng.uniform(0, 2 * math.pi),
    )


def _field_bounds(checkup_type: str, name: str) -> tuple[float | None, float | None]:
    """``(ge, le)`` of a field of ``checkup_type``'s information in the registry."""
    info = REGISTRY[checkup_type].information.model_fields[name]
    constraints: list[Any] = list(info.metadata)
    for arg in typing.get_args(info.annotation):  # ``Annotated[...] | None``
        for extra in getattr(arg, "__metadata__", ()):
            constraints += [extra, *getattr(extra, "metadata", ())]
    low = high = None
    for constraint in constraints:
        low = getattr(constraint, "ge", None) if low is None else low
        high = getattr(constraint, "le", None) if high is None else high
    return low, high


def _bounded(checkup_type: str, name: str, value: float) -> float:
    """``value`` clamped to the registry's bounds of the field."""
    low, high = _field_bounds(checkup_type, name)
    if low is not None:
        value = max(value, float(low))
    if high is not None:
        value = min(value, float(high))
    return value


def reading(
    rng: random.Random, person: DemoPerson, checkup_type: str, progress: float, day: int
) -> dict[str, Any]:
    """One ``information`` of ``checkup_type`` at ``progress`` (0..1) through the history.

    Baseline + slow seasonal drift + noise, clamped to the registry's bounds.
    """
    b = person.baselines
    season = math.sin(2 * math.pi * progress + person.phase)
    if checkup_type == "blood_pressure":
        systolic = round(
            _bounded(checkup_type, "systolic", b["systolic"] + 4 * season + rng.gauss(0, 6))
        )
        gap = b["diastolic_gap"] + rng.gauss(0, 4)
        diastolic = round(_bounded(checkup_type, "diastolic", min(systolic - 15, systolic - gap)))
        pulse = round(_bounded(checkup_type, "pulse", b["pulse"] + rng.gauss(0, 5)))
        return {"systolic": systolic, "diastolic": diastolic, "pulse": pulse}
    if checkup_type == "heart_rate":
        return {"bpm": round(_bounded(checkup_type, "bpm", b["pulse"] + rng.gauss(0, 6)))}
    if checkup_type == "spo2":
        percent = _bounded(checkup_type, "percent", b["spo2"] + rng.gauss(0, 0.7))
        pulse = round(_bounded(checkup_type, "pulse", b["pulse"] + rng.gauss(0, 5)))
        return {"percent": round(percent, 1), "pulse": pulse}
    if checkup_type == "body_temperature":
        fever = 1.6 if day in person.fever_days else 0.0
        celsius = b["celsius"] + fever + 0.1 * season + rng.gauss(0, 0.15)
        return {"celsius": round(_bounded(checkup_type, "celsius", celsius), 1)}
    if checkup_type == "blood_glucose":
        fasting = rng.random() < 0.6
        mg_dl = b["glucose"] + (0 if fasting else rng.uniform(20, 50)) + rng.gauss(0, 8)
        return {"mg_dl": round(_bounded(checkup_type, "mg_dl", mg_dl), 1), "fasting": fasting}
    if checkup_type == "body_weight":
        kg = b["kg"] + b["kg_trend"] * progress + 0.8 * season + rng.gauss(0, 0.4)
        return {"kg": round(_bounded(checkup_type, "kg", kg), 1)}
    if checkup_type == "height":
        return {"cm": round(_bounded(checkup_type, "cm", b["cm"] + rng.gauss(0, 0.3)), 1)}
    if checkup_type == "ecg":
        afib = rng.random() < b["afib"]
        rate = b["pulse"] + (rng.uniform(15, 40) if afib else rng.gauss(0, 5))
        qt = round(_bounded(checkup_type, "qt_ms", b["qt"] + rng.gauss(0, 12)))
        return {
            "rhythm": "afib" if afib else "sinus",
            "heart_rate": round(_bounded(checkup_type, "heart_rate", rate)),
            "qt_ms": qt,
        }
    raise ValueError(f"no demo readings for check-up type {checkup_type}")


def checkup_history(
    rng: random.Random,
    person: DemoPerson,
    *,
    user_id: uuid.UUID,
    machines: dict[str, list[uuid.UUID]],
    count: int,
    end: datetime,
    days: int,
) -> list[dict[str, Any]]:
    """``count`` upload items for ``person``, oldest first, spread over ``days`` before ``end``.

    Check-up ids come from ``rng``: the same seed makes the same ids.
    """
    start = end - timedelta(days=days)
    person.fever_days = {rng.randrange(days) for _ in range(max(1, days // 120))}
    # A person uses one machine of each type (their own device), chosen once.
    own = {name: rng.choice(ids) for name, ids in machines.items()}
    offsets = sorted(rng.uniform(0, days * 86_400) for _ in range(count))
    items = []
    for offset in offsets:
        checkup_type = rng.choices(person.types, weights=person.weights)[0]
        taken_at = (start + timedelta(seconds=offset)).replace(microsecond=0)
        items.append(
            {
                "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "user_id": str(user_id),
                "machine_id": str(own[checkup_type]),
                "checkup_type": checkup_type,
                "information": reading(
                    rng, person, checkup_type, offset / (days * 86_400), int(offset // 86_400)
                ),
                "test_taken_by": rng.choice(_TAKERS),
                "taken_at": taken_at.isoformat().replace("+00:00", "Z"),
            }
        )
    return items


class PrefixTakenError(Exception):
    """Demo users with this prefix exist already: a second set needs another prefix."""


def prefix_taken(*, session: Session, prefix: str) -> bool:
    """Whether a username starts with ``prefix`` and a dot, as demo usernames do."""
    pattern = prefix.replace("_", r"\_") + ".%"
    found = session.scalar(select(User.id).where(User.username.like(pattern, escape="\\")).limit(1))
    session.rollback()  # end the read's transaction before the services open theirs
    return found is not None


@dataclass
class SeedResult:
    users: int = 0
    machines: int = 0
    diseases: int = 0
    checkups: int = 0
    usernames: list[str] = field(default_factory=list)


def seed(
    *,
    session: Session,
    users: int,
    checkups_per_user: int,
    password: str,
    seed_value: int,
    prefix: str = "demo",
    end: date | None = None,
    days: int = 365,
    max_bulk_items: int = 10_000,
    on_total: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Create the demo people and their histories through the Core API's services.

    Raises :class:`PrefixTakenError` when demo users with ``prefix`` exist already.
    ``on_total`` is called with the number of check-ups to store, ``progress`` with the
    number just stored.
    """
    from healthapp.accounts import service as accounts
    from healthapp.accounts.schemas import DiseaseCreate, ProfileCreate, UserCreate
    from healthapp.checkups import ingest as checkups
    from healthapp.checkups.schemas import parse_bulk
    from healthapp.domain.roles import Role
    from healthapp.machines import service as machines_service
    from healthapp.machines.schemas import MachineCreate
    from healthapp.problems import Problem

    if prefix_taken(session=session, prefix=prefix):
        raise PrefixTakenError(prefix)
    if on_total is not None:
        on_total(users * checkups_per_user)
    rng = random.Random(seed_value)  # noqa: S311 (reproducible demo data, not secrets)
    end_day = end or datetime.now(UTC).date()
    # Readings end at the start of ``end_day``: never in the future, whatever the hour.
    until = datetime.combine(end_day, time(0), tzinfo=UTC)
    result = SeedResult()
    machine_ids: dict[str, list[uuid.UUID]] = {}
    for demo_machine in make_machines(rng, prefix=prefix, per_type=max(1, users // 25)):
        machine = machines_service.create(
            session=session,
            machine_in=MachineCreate(
                machine_type=demo_machine.machine_type,
                manufacturer=demo_machine.manufacturer,
                serial_number=demo_machine.serial_number,
            ),
        )
        machine_ids.setdefault(demo_machine.machine_type, []).append(machine.id)
        result.machines += 1
    for number in range(1, users + 1):
        person = make_person(rng, prefix=prefix, number=number, end=end_day)
        user = accounts.create(
            session=session,
            user_in=UserCreate(
                username=person.username, email=person.email, password=password, role=Role.PATIENT
            ),
        )
        accounts.create_profile(
            session=session,
            user=user,
            profile_in=ProfileCreate.model_validate_json(orjson.dumps(person.profile)),
        )
        for disease in person.diseases:
            accounts.create_disease(
                session=session,
                user=user,
                disease_in=DiseaseCreate.model_validate_json(orjson.dumps(disease)),
            )
            result.diseases += 1
        items = checkup_history(
            rng,
            person,
            user_id=user.id,
            machines=machine_ids,
            count=checkups_per_user,
            end=until,
            days=days,
        )
        for chunk in _chunks(items, max_bulk_items):
            parsed = parse_bulk(orjson.dumps({"checkups": chunk}), max_items=max_bulk_items)
            try:
                outcome = checkups.ingest_checkups(
                    session=session,
                    parsed=parsed,
                    uploaded_by=user.id,
                    only_user_id=user.id,
                    atomic=True,
                )
            except Problem as problem:  # a bug in the generator, not in the input
                raise RuntimeError(f"demo check-ups were refused: {problem.detail}") from None
            result.checkups += outcome.created
            if progress is not None:
                progress(len(chunk))
        result.users += 1
        result.usernames.append(person.username)
    return result


def _chunks(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
