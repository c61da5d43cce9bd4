"""Published England figures the synthetic population is calibrated to, with their sources.

Figures are parameters, not fitted results: where a figure is approximate the comment says so.
Changing one changes the population; `joinedup synth calibrate` shows how close the result is.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Population structure ----------------------------------------------------------------------
# England, thousands, single year of age 0..89 and 90+, 2023.
# Source: ONS 2020-based national population projections (England), projected 2023 population.
NATIONAL_MALE_K: tuple[int, ...] = (
    290, 294, 300, 316, 329, 341, 350, 360, 358, 361, 368, 379, 371, 365, 360, 364, 354, 348,
    336, 333, 329, 329, 342, 356, 368, 373, 382, 382, 378, 387, 386, 391, 401, 394, 385, 385,
    371, 378, 377, 366, 368, 366, 369, 371, 358, 336, 330, 334, 340, 344, 358, 373, 381, 372,
    380, 379, 385, 381, 381, 376, 365, 356, 341, 325, 316, 308, 294, 281, 268, 265, 259, 248,
    247, 247, 251, 260, 278, 208, 196, 189, 168, 143, 122, 121, 112, 102, 89, 77, 66, 54, 186,
)  # fmt: skip
NATIONAL_FEMALE_K: tuple[int, ...] = (
    276, 280, 286, 301, 312, 323, 333, 341, 340, 343, 349, 360, 352, 347, 342, 345, 333, 329,
    317, 314, 309, 307, 321, 331, 344, 350, 360, 359, 360, 368, 369, 383, 388, 381, 382, 389,
    383, 382, 381, 374, 377, 377, 378, 379, 362, 337, 332, 338, 345, 351, 365, 380, 394, 384,
    392, 390, 393, 395, 395, 390, 380, 370, 356, 340, 331, 323, 310, 297, 286, 286, 280, 272,
    272, 276, 279, 292, 312, 238, 227, 221, 202, 176, 154, 155, 148, 137, 125, 111, 99, 84, 362,
)  # fmt: skip
MAX_AGE_INDEX = 90  # index 90 is "90 and over"

# Deaths per 100,000 by single year of age 0..89; 90+ is a population-weighted value.
# Source: ONS 2020-based national population projections, mortality assumptions for 2024.
MORTALITY_MALE_PER_100K: tuple[float, ...] = (
    69.2, 21.3, 8.7, 7.2, 6.9, 6.7, 6.4, 5.9, 5.5, 5.4, 5.7, 6.4, 7.6, 9.3, 11.8, 15.0, 19.1, 23.8,
    28.9, 33.6, 36.9, 38.9, 39.9, 40.6, 41.6, 43.4, 46.1, 49.7, 53.9, 59.2, 64.5, 69.1, 73.7, 78.8,
    84.5, 91.1, 98.8, 107.8, 117.9, 129.1, 141.5, 154.8, 168.6, 183.5, 199.6, 216.6, 234.4, 253.1,
    272.8, 293.7, 315.8, 339.6, 365.7, 394.4, 426.9, 461.8, 502.3, 552.5, 610.1, 672.6, 739.5,
    811.9, 890.1, 974.7, 1065.8, 1164.0, 1270.6, 1386.7, 1515.1, 1658.6, 1821.4, 2008.7, 2223.3,
    2468.1, 2743.9, 3051.7, 3396.3, 3785.1, 4223.7, 4722.9, 5296.5, 5957.9, 6717.6, 7570.7, 8519.9,
    9575.0, 10724.5, 11964.1, 13307.3, 14766.4, 20500.0,
)  # fmt: skip
MORTALITY_FEMALE_PER_100K: tuple[float, ...] = (
    57.9, 18.6, 7.9, 6.6, 6.4, 6.1, 5.7, 5.1, 4.7, 4.5, 4.8, 5.3, 6.1, 7.3, 8.8, 10.4, 12.1, 13.8,
    15.3, 16.3, 17.1, 17.7, 18.3, 18.9, 19.9, 21.4, 23.4, 25.8, 28.7, 31.9, 35.3, 38.8, 42.4, 46.2,
    50.6, 55.1, 59.9, 65.1, 70.9, 77.5, 84.8, 93.0, 102.1, 112.0, 122.6, 133.8, 145.8, 158.8, 172.8,
    188.0, 204.1, 220.7, 238.8, 259.1, 282.2, 307.8, 336.9, 370.0, 406.3, 445.4, 488.1, 534.5,
    583.9, 636.9, 694.3, 757.4, 827.6, 905.8, 993.8, 1094.3, 1210.1, 1344.2, 1498.8, 1676.0,
    1878.4, 2107.1, 2364.6, 2657.2, 2993.5, 3382.7, 3837.2, 4366.1, 4978.2, 5682.5, 6483.7, 7385.5,
    8396.4, 9523.3, 10764.3, 12126.7, 18000.0,
)  # fmt: skip

# Births per 1,000 women by age of mother 15..46.
# Source: ONS 2020-based national population projections, fertility assumptions for 2024.
FERTILITY_PER_1000: dict[int, float] = {
    15: 0.9, 16: 2.1, 17: 6.0, 18: 11.1, 19: 18.5, 20: 26.5, 21: 33.7, 22: 40.5, 23: 46.8,
    24: 53.0, 25: 63.2, 26: 71.0, 27: 79.5, 28: 88.1, 29: 95.7, 30: 110.0, 31: 112.4, 32: 110.7,
    33: 105.1, 34: 96.2, 35: 83.9, 36: 71.6, 37: 59.2, 38: 47.4, 39: 37.0, 40: 32.4, 41: 22.0,
    42: 14.4, 43: 9.1, 44: 4.9, 45: 2.8, 46: 4.4,
}  # fmt: skip
MALE_SHARE_AT_BIRTH = 0.512  # ONS births in England and Wales: about 105 boys per 100 girls

NATIONAL_DATA_OPT_OUT_RATE = 0.054  # NHS England National Data Opt-out, 2024: about 5.4%
PRACTICE_MOVE_RATE_PER_YEAR = 0.03  # moves between practices inside the footprint (approximate)

# --- Long-term conditions -------------------------------------------------------------------
# Relative prevalence shape by age is given at these anchor ages and interpolated on a log scale.
CONDITION_ANCHOR_AGES: tuple[int, ...] = (0, 20, 40, 60, 75, 90)


@dataclass(frozen=True)
class ConditionParams:
    """How one long-term condition is distributed and coded."""

    name: str
    label: str
    #: England prevalence among people aged `min_age` and over (crude, registered population).
    target_prevalence: float
    min_age: int
    source: str
    #: relative prevalence at CONDITION_ANCHOR_AGES (only the shape matters).
    age_shape: tuple[float, ...]
    #: male to female prevalence ratio.
    male_ratio: float
    #: prevalence ratio, most deprived IMD decile to least deprived.
    deprivation_ratio: float
    #: loading on the shared latent health factor: multimorbidity clusters through it.
    latent_loading: float
    #: mean years since first diagnosis among prevalent cases.
    mean_duration_years: float
    snomed: tuple[str, ...]
    icd10: tuple[str, ...]
    #: BNF chemical substance codes and names of the usual long-term medicines.
    medicines: tuple[tuple[str, str], ...] = ()
    #: log hazard ratio for death.
    mortality_weight: float = 0.0


QOF = "NHS England, Quality and Outcomes Framework 2023-24, register prevalence (approximate)"
CPRD = "Cassell et al., Br J Gen Pract 2018 (CPRD, England), prevalence in adults (approximate)"

CONDITIONS: tuple[ConditionParams, ...] = (
    ConditionParams(
        "hypertension", "Hypertension", 0.148, 0, QOF,
        (0.001, 0.02, 0.10, 0.35, 0.55, 0.65), 1.05, 1.15, 0.6, 10.0,
        ("38341003", "1201005"), ("I10",),
        (("0206020A0", "Amlodipine"), ("0205051R0", "Ramipril")), 0.05,
    ),
    ConditionParams(
        "diabetes", "Diabetes mellitus", 0.077, 17, QOF,
        (0.001, 0.01, 0.04, 0.12, 0.19, 0.17), 1.25, 1.6, 0.7, 9.0,
        ("44054006", "46635009"), ("E11", "E10"),
        (("0601022B0", "Metformin hydrochloride"), ("0212000B0", "Atorvastatin")), 0.3,
    ),
    ConditionParams(
        "asthma", "Asthma", 0.065, 6, QOF,
        (0.08, 0.07, 0.06, 0.065, 0.07, 0.06), 0.85, 1.15, 0.3, 15.0,
        ("195967001",), ("J45",),
        (("0301011R0", "Salbutamol"), ("0302000C0", "Beclometasone dipropionate")), 0.05,
    ),
    ConditionParams(
        "coronary_heart_disease", "Coronary heart disease", 0.030, 0, QOF,
        (0.0, 0.0005, 0.005, 0.04, 0.10, 0.15), 1.8, 1.5, 0.7, 9.0,
        ("53741008", "22298006"), ("I25", "I21"),
        (("0209000A0", "Aspirin"), ("0212000B0", "Atorvastatin")), 0.3,
    ),
    ConditionParams(
        "atrial_fibrillation", "Atrial fibrillation", 0.022, 0, QOF,
        (0.0, 0.0002, 0.002, 0.02, 0.08, 0.15), 1.4, 0.95, 0.5, 6.0,
        ("49436004",), ("I48",),
        (("0208020Z0", "Apixaban"), ("0204000H0", "Bisoprolol fumarate")), 0.3,
    ),
    ConditionParams(
        "chronic_kidney_disease", "Chronic kidney disease (stages 3-5)", 0.043, 18, QOF,
        (0.0, 0.001, 0.005, 0.04, 0.15, 0.35), 0.8, 1.2, 0.7, 7.0,
        ("433144002", "431857002"), ("N183",), (), 0.35,
    ),
    ConditionParams(
        "copd", "Chronic obstructive pulmonary disease", 0.019, 0, QOF,
        (0.0, 0.0005, 0.005, 0.03, 0.07, 0.07), 1.1, 2.5, 0.6, 8.0,
        ("13645005",), ("J44",),
        (("0301020Q0", "Tiotropium"), ("0301011R0", "Salbutamol")), 0.6,
    ),
    ConditionParams(
        "stroke_tia", "Stroke or transient ischaemic attack", 0.019, 0, QOF,
        (0.0, 0.0005, 0.004, 0.025, 0.07, 0.11), 1.1, 1.4, 0.6, 7.0,
        ("230690007", "266257000"), ("I63", "G45"),
        (("0209000X0", "Clopidogrel"), ("0212000B0", "Atorvastatin")), 0.4,
    ),
    ConditionParams(
        "heart_failure", "Heart failure", 0.011, 0, QOF,
        (0.0, 0.0002, 0.001, 0.008, 0.035, 0.09), 1.4, 1.5, 0.8, 5.0,
        ("84114007",), ("I50",),
        (("0204000H0", "Bisoprolol fumarate"), ("0202020L0", "Furosemide")), 0.8,
    ),
    ConditionParams(
        "depression", "Depression (ever recorded)", 0.132, 18, QOF,
        (0.005, 0.12, 0.17, 0.17, 0.14, 0.13), 0.6, 1.4, 0.5, 10.0,
        ("35489007",), ("F32", "F33"), (("0403030Q0", "Sertraline hydrochloride"),), 0.05,
    ),
    ConditionParams(
        "dementia", "Dementia", 0.0077, 0, QOF,
        (0.0, 0.0, 0.0005, 0.004, 0.04, 0.20), 0.7, 1.1, 0.6, 3.5,
        ("52448006", "26929004"), ("F03", "G30"), (("0411000D0", "Donepezil hydrochloride"),), 1.0,
    ),
    ConditionParams(
        "cancer", "Cancer (ever recorded, excluding non-melanoma skin)", 0.036, 0, QOF,
        (0.001, 0.003, 0.015, 0.05, 0.11, 0.14), 0.9, 1.0, 0.4, 7.0,
        ("363346000", "254837009", "363406005"), ("C50", "C18", "C34", "C61"), (), 0.7,
    ),
    ConditionParams(
        "severe_mental_illness", "Schizophrenia, bipolar disorder and other psychoses", 0.010, 0,
        QOF, (0.0, 0.008, 0.012, 0.012, 0.009, 0.007), 1.1, 2.2, 0.4, 12.0,
        ("58214004", "13746004"), ("F20", "F31"), (("0402010D0", "Olanzapine"),), 0.4,
    ),
    ConditionParams(
        "epilepsy", "Epilepsy", 0.008, 18, QOF,
        (0.005, 0.008, 0.009, 0.009, 0.010, 0.010), 1.1, 1.3, 0.3, 15.0,
        ("84757009",), ("G40",), (("0408010AE", "Levetiracetam"),), 0.3,
    ),
    ConditionParams(
        "learning_disability", "Learning disability", 0.006, 0, QOF,
        (0.006, 0.006, 0.006, 0.005, 0.003, 0.002), 1.4, 1.3, 0.2, 30.0,
        ("110359009",), ("F79",), (), 0.4,
    ),
    ConditionParams(
        "painful_condition", "Painful condition", 0.108, 18, CPRD,
        (0.005, 0.04, 0.09, 0.16, 0.22, 0.25), 0.75, 1.3, 0.5, 5.0,
        ("82423001",), ("M54", "M79"), (("0407010F0", "Co-codamol"),), 0.05,
    ),
    ConditionParams(
        "hearing_loss", "Hearing loss", 0.045, 18, CPRD,
        (0.005, 0.005, 0.01, 0.04, 0.12, 0.25), 1.2, 1.1, 0.3, 8.0,
        ("15188001",), ("H90", "H91"), (), 0.0,
    ),
    ConditionParams(
        "irritable_bowel", "Irritable bowel syndrome", 0.045, 18, CPRD,
        (0.005, 0.04, 0.06, 0.06, 0.05, 0.04), 0.5, 1.1, 0.3, 10.0,
        ("10743008",), ("K58",), (("0102000P0", "Mebeverine hydrochloride"),), 0.0,
    ),
    ConditionParams(
        "constipation", "Constipation (treated)", 0.025, 18, CPRD,
        (0.01, 0.01, 0.01, 0.02, 0.05, 0.10), 0.6, 1.2, 0.4, 3.0,
        ("14760008",), ("K59",), (("0106040M0", "Macrogol 3350"),), 0.2,
    ),
    ConditionParams(
        "connective_tissue_disorder", "Connective tissue disorder", 0.015, 18, CPRD,
        (0.0, 0.002, 0.01, 0.025, 0.035, 0.035), 0.4, 1.2, 0.4, 10.0,
        ("69896004", "200936003"), ("M06", "M32"), (("1001030U0", "Methotrexate"),), 0.2,
    ),
    ConditionParams(
        "alcohol_problems", "Alcohol problems", 0.015, 18, CPRD,
        (0.0, 0.01, 0.02, 0.025, 0.015, 0.005), 2.5, 2.0, 0.5, 8.0,
        ("7200002",), ("F10",), (), 0.5,
    ),
)  # fmt: skip
CONDITION_INDEX: dict[str, int] = {c.name: i for i, c in enumerate(CONDITIONS)}

# Frailty (electronic frailty index categories, people 65+). eFI shares in England's 65+
# population are about fit 50%, mild 35%, moderate 12%, severe 3% (Clegg et al. 2016).
FRAILTY_CODES: dict[str, str] = {
    "mild": "925791000000100",
    "moderate": "925831000000107",
    "severe": "925861000000102",
}
FRAILTY_MORTALITY_WEIGHT = {"mild": 0.2, "moderate": 0.5, "severe": 1.0}
PREGNANCY_SNOMED = "77386006"
DELIVERY_ICD10 = "Z370"
PALLIATIVE_SNOMED = "103735009"
PALLIATIVE_SHARE_OF_DEATHS = 0.4
# People still alive at the end of the history who are near the end of life (severe frailty,
# cancer or heart failure, aged 65+) and already on a palliative care register: the share is
# chosen so that about 0.2% of the population is coded palliative at the extract date.
PALLIATIVE_SHARE_ALIVE_AT_END = 0.06
# Falls: about a third of people over 65 fall each year (NICE CG161), frail people more often;
# a share reach the GP record (SNOMED 1912002 "Fall"). Hip fracture admissions carry the
# external cause W19 (unspecified fall) as a secondary diagnosis.
FALL_SNOMED = "1912002"
FALL_ICD10 = "W19"
FALLS_CODED_PER_YEAR_BY_FRAILTY = {"mild": 0.12, "moderate": 0.25, "severe": 0.4}
HIP_FRACTURE_ICD10 = "S720"  # roughly the share of deaths preceded by palliative care coding

# --- Services ----------------------------------------------------------------------------------
# Base rates per person-year by age, interpolated linearly between anchor ages.
SERVICE_ANCHOR_AGES: tuple[int, ...] = (0, 1, 5, 15, 20, 30, 40, 50, 60, 70, 80, 90)


@dataclass(frozen=True)
class ServiceParams:
    """How often a service is used, by whom, and what it costs."""

    activity_type: str
    rates: tuple[float, ...]  # per person-year at SERVICE_ANCHOR_AGES
    male_ratio: float
    condition_effect: float  # log rate ratio per long-term condition
    deprivation_ratio: float  # rate ratio, most to least deprived decile
    frailty_effect: float  # log rate ratio for moderate (x1) and severe (x2) frailty
    heterogeneity_shape: float  # gamma shape of person-level variation (smaller = more skewed)
    unit_cost_gbp: float
    source: str


NCC = "NHS England National Cost Collection 2022/23 (approximate national averages)"
PSSRU = "PSSRU Unit Costs of Health and Social Care 2023 (approximate)"
HES = "HES 2018/19 via the Strategy Unit NHP inputs (England per 1,000, approximate shape by age)"

SERVICES: tuple[ServiceParams, ...] = (
    ServiceParams(
        "gp_consultation", (6.5, 5.0, 3.0, 2.6, 3.2, 3.6, 3.9, 4.5, 5.8, 7.5, 9.5, 10.5),
        0.72, 0.20, 1.1, 0.2, 2.0, 42.0,
        "NHS England Appointments in General Practice (about 5 GP-practice appointments a person "
        "a year, approximate); cost: " + PSSRU,
    ),
    ServiceParams(
        "ae_attendance", (0.65, 0.45, 0.28, 0.33, 0.42, 0.38, 0.33, 0.32, 0.33, 0.40, 0.62, 0.95),
        1.0, 0.15, 1.6, 0.2, 0.8, 250.0,
        "NHS England A&E attendances (about 0.4 a person a year); cost: " + NCC,
    ),
    ServiceParams(
        "emergency_admission",
        # Scaled so England's ages give HES 2018: children 76, adults 119 per 1,000.
        (0.30, 0.115, 0.047, 0.06, 0.058, 0.058, 0.061, 0.075, 0.106, 0.174, 0.322, 0.466),
        1.0, 0.30, 1.5, 0.35, 0.7, 1650.0, HES + "; cost: " + NCC,
    ),
    ServiceParams(
        "elective_admission",
        (0.005, 0.006, 0.005, 0.010, 0.015, 0.022, 0.030, 0.038, 0.045, 0.050, 0.040, 0.022),
        1.0, 0.15, 0.85, 0.0, 1.0, 3800.0, HES + "; cost: " + NCC,
    ),
    ServiceParams(
        "day_case",
        (0.020, 0.020, 0.020, 0.030, 0.050, 0.075, 0.110, 0.155, 0.215, 0.275, 0.275, 0.16),
        0.95, 0.15, 0.85, 0.0, 0.6, 950.0, HES + "; cost: " + NCC,
    ),
    ServiceParams(
        "outpatient_attendance", (1.5, 0.8, 0.7, 1.0, 1.4, 1.7, 2.1, 2.7, 3.5, 4.2, 4.4, 3.2),
        0.85, 0.20, 0.9, 0.1, 1.0, 160.0,
        "NHS England Hospital Outpatient Activity (about 2.2 attendances a person a year); "
        "cost: " + NCC,
    ),
    ServiceParams(
        "community_contact", (1.0, 0.3, 0.2, 0.3, 0.4, 0.45, 0.5, 0.7, 1.0, 2.2, 6.0, 13.0),
        0.8, 0.30, 1.1, 0.5, 0.5, 85.0,
        "NHS England Community Services Data Set (about 1.7 contacts a person a year, mostly "
        "older people); cost: " + NCC,
    ),
    ServiceParams(
        "mental_health_contact", (0.0, 0.01, 0.1, 0.5, 0.8, 0.7, 0.6, 0.5, 0.35, 0.3, 0.5, 0.7),
        0.9, 0.05, 1.5, 0.0, 0.3, 190.0,
        "NHS England Mental Health Services Data Set (about 0.45 contacts a person a year); "
        "cost: " + NCC,
    ),
    ServiceParams(
        "social_care_package",
        (0.0, 0.0, 0.001, 0.002, 0.003, 0.004, 0.005, 0.007, 0.010, 0.022, 0.075, 0.19),
        0.75, 0.25, 1.2, 0.8, 1.0, 0.0,
        "NHS England Adult Social Care Activity and Finance (about 840,000 people in long-term "
        "support a year); cost per week: " + PSSRU,
    ),
)  # fmt: skip
SERVICE_INDEX: dict[str, int] = {s.activity_type: i for i, s in enumerate(SERVICES)}

# Mental health contacts concentrate in people with these conditions (log rate ratios).
MENTAL_HEALTH_CONDITION_EFFECT = {"severe_mental_illness": 2.7, "depression": 1.1, "dementia": 1.0}
SOCIAL_CARE_CONDITION_EFFECT = {"dementia": 1.2, "learning_disability": 1.5}

EXCESS_BED_DAY_GBP = 430.0  # NCC excess bed day, approximate
SOCIAL_CARE_WEEKLY_GBP = {"residential": 1050.0, "home_care": 330.0}  # PSSRU 2023, approximate

# Hospital specialties (NHS Data Dictionary treatment function codes) with their shares.
EMERGENCY_SPECIALTIES: dict[str, float] = {
    "300": 0.40, "100": 0.14, "110": 0.11, "320": 0.08, "340": 0.07, "430": 0.10, "420": 0.10,
}  # fmt: skip
ELECTIVE_SPECIALTIES: dict[str, float] = {
    "110": 0.18, "130": 0.16, "100": 0.14, "301": 0.14, "101": 0.10, "120": 0.08, "502": 0.10,
    "330": 0.10,
}  # fmt: skip
OUTPATIENT_SPECIALTIES: dict[str, float] = {
    "110": 0.14, "130": 0.14, "100": 0.08, "301": 0.07, "101": 0.06, "120": 0.07, "502": 0.07,
    "330": 0.07, "320": 0.10, "340": 0.06, "300": 0.08, "420": 0.06,
}  # fmt: skip

# Primary diagnoses of emergency admissions (ICD-10 without the dot) with their shares.
EMERGENCY_PRIMARY_DIAGNOSES: dict[str, float] = {
    "R074": 0.10, "J189": 0.10, "N390": 0.08, "R104": 0.09, "J441": 0.05, "I509": 0.04,
    "S720": 0.04, "R55": 0.05, "L031": 0.05, "K359": 0.04, "J22": 0.08, "I214": 0.03,
    "A099": 0.05, "R069": 0.05, "K922": 0.03, "T391": 0.02, "E86": 0.03, "R51": 0.07,
}  # fmt: skip

# Acute (one-off) prescriptions given to anyone, with a rate per person-year.
ACUTE_MEDICINES: tuple[tuple[str, str], ...] = (
    ("0501013B0", "Amoxicillin"),
    ("0501050B0", "Nitrofurantoin"),
    ("1001010P0", "Naproxen"),
    ("0501030I0", "Doxycycline hyclate"),
)
ACUTE_PRESCRIPTION_RATE = 0.45

# Referral-to-treatment: clock starts per person-year relative to the outpatient rate, and waits.
# NHS England RTT waiting times 2024/25: about 1.5 million clock starts a month in England,
# median wait of completed pathways about 13 weeks (approximate).
RTT_STARTS_PER_OUTPATIENT = 0.14
RTT_MEDIAN_WAIT_WEEKS = 13.0
RTT_WAIT_SIGMA = 0.75
RTT_ADMITTED_SHARE = 0.22

# --- Observations ------------------------------------------------------------------------------
OBSERVATION_CODES: dict[str, str] = {
    "systolic_bp": "72313002",
    "diastolic_bp": "1091811000000102",
    "bmi": "60621009",
    "egfr": "1011481000000105",
    "hba1c": "1049301000000100",
    "smoking_status": "365981007",
}
SMOKING_VALUE_CODES: dict[str, str] = {
    "current": "77176002",
    "ex": "8517006",
    "never": "266919005",
}
# ONS Annual Population Survey 2023: 11.9% of adults in England smoke (approximate);
# about a quarter are ex-smokers.
ADULT_SMOKING_RATE = 0.12
ADULT_EX_SMOKING_RATE = 0.25
UNDIAGNOSED_HYPERTENSION_RATE_40_PLUS = 0.06
SMI_CHECK_SHARE = 0.6

# --- Ethnicity ----------------------------------------------------------------------------------
# Shares of NHS Data Dictionary ethnic categories for England, Census 2021 (approximate),
# and the profile-specific shares used for the fictional footprint's places.
ETHNICITY_ENGLAND: dict[str, float] = {
    "A": 0.734, "B": 0.009, "C": 0.064, "D": 0.009, "E": 0.005, "F": 0.009, "G": 0.008,
    "H": 0.033, "J": 0.027, "K": 0.011, "L": 0.017, "M": 0.011, "N": 0.025, "P": 0.005,
    "R": 0.008, "S": 0.022,
}  # fmt: skip
NOT_STATED_ETHNICITY_RATE = 0.05  # share of records with ethnic category Z (not stated)
