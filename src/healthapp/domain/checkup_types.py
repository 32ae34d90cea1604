"""The check-up type registry (SPEC §6): one entry per type, with its information model.

Adding a check-up type is one entry in ``REGISTRY``: the upload validates against its model,
reports summarise its ``primary`` field, and the OpenAPI document lists it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Notes = Annotated[str, StringConstraints(max_length=1000)]


class Information(BaseModel):
    """Base of every type's ``information``: strict types, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    notes: Notes | None = None


Bpm = Annotated[int, Field(ge=20, le=300)]


class BloodPressure(Information):
    """Diastolic below systolic."""

    systolic: Annotated[int, Field(ge=40, le=300, description="mmHg")]
    diastolic: Annotated[int, Field(ge=20, le=200, description="mmHg")]
    pulse: Bpm | None = None

    @model_validator(mode="after")
    def _diastolic_below_systolic(self) -> BloodPressure:
        if self.diastolic >= self.systolic:
            raise ValueError("diastolic must be below systolic")
        return self


class HeartRate(Information):
    bpm: Bpm


class SpO2(Information):
    percent: Annotated[float, Field(ge=50, le=100)]
    pulse: Bpm | None = None


class BodyTemperature(Information):
    celsius: Annotated[float, Field(ge=25, le=45)]


class BloodGlucose(Information):
    mg_dl: Annotated[float, Field(ge=10, le=1000)]
    fasting: bool


class BodyWeight(Information):
    kg: Annotated[float, Field(ge=0.5, le=500)]


class Height(Information):
    cm: Annotated[float, Field(ge=20, le=272)]


class Ecg(Information):
    rhythm: Literal["sinus", "afib", "flutter", "tachycardia", "bradycardia", "other"]
    heart_rate: Bpm
    qt_ms: Annotated[int, Field(ge=150, le=800)] | None = None


@dataclass(frozen=True, slots=True)
class CheckupType:
    """One check-up type: its information model and the value reports summarise."""

    name: str
    information: type[Information]
    primary: str
    unit: str


REGISTRY: dict[str, CheckupType] = {
    entry.name: entry
    for entry in (
        CheckupType("blood_pressure", BloodPressure, primary="systolic", unit="mmHg"),
        CheckupType("heart_rate", HeartRate, primary="bpm", unit="bpm"),
        CheckupType("spo2", SpO2, primary="percent", unit="%"),
        CheckupType("body_temperature", BodyTemperature, primary="celsius", unit="°C"),
        CheckupType("blood_glucose", BloodGlucose, primary="mg_dl", unit="mg/dL"),
        CheckupType("body_weight", BodyWeight, primary="kg", unit="kg"),
        CheckupType("height", Height, primary="cm", unit="cm"),
        CheckupType("ecg", Ecg, primary="heart_rate", unit="bpm"),
    )
}

CHECKUP_TYPE_NAMES: tuple[str, ...] = tuple(REGISTRY)
#: The name of a registered check-up type.
CheckupTypeName = Literal[CHECKUP_TYPE_NAMES]  # type: ignore[valid-type]
