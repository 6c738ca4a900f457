"""Write a census-like table in the form of the UCI "adult" files: no header, a space after
every comma, text categories, '?' for a missing cell, income as '<=50K' / '>50K'.

The rows are synthetic (nothing is downloaded) but behave like the real ones: the income
depends on education, marital status and occupation (text columns) as much as on age and
hours (numbers), so a model that ignores or mis-encodes the categories is visibly worse.
`configs/data/census.csv` is this script's output with its defaults.

Usage:
    python benchmarks/make_census.py [ROWS] [PATH] [--seed N] [--test-dot]

`--test-dot` writes labels with a trailing dot ('>50K.'), as the real adult.test does.
"""

from __future__ import annotations

import argparse

import numpy as np

COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "sex",
    "hours_per_week",
    "native_country",
    "income",
]
WORKCLASS = [
    "Private",
    "Self-emp-not-inc",
    "Local-gov",
    "State-gov",
    "Self-emp-inc",
    "Federal-gov",
    "Without-pay",
]
EDUCATION = [
    ("HS-grad", 9, -0.9),
    ("Some-college", 10, -0.5),
    ("Bachelors", 13, 0.7),
    ("Masters", 14, 1.2),
    ("Assoc-voc", 11, -0.2),
    ("11th", 7, -1.8),
    ("Assoc-acdm", 12, 0.0),
    ("10th", 6, -2.0),
    ("Prof-school", 15, 1.8),
    ("Doctorate", 16, 1.9),
    ("9th", 5, -2.2),
    ("7th-8th", 4, -2.3),
]
MARITAL = [
    ("Married-civ-spouse", 1.6),
    ("Never-married", -1.9),
    ("Divorced", -1.0),
    ("Separated", -1.2),
    ("Widowed", -1.0),
    ("Married-spouse-absent", -0.8),
]
OCCUPATION = [
    ("Prof-specialty", 0.9),
    ("Craft-repair", -0.2),
    ("Exec-managerial", 1.1),
    ("Adm-clerical", -0.6),
    ("Sales", 0.1),
    ("Other-service", -1.6),
    ("Machine-op-inspct", -0.7),
    ("Transport-moving", -0.4),
    ("Handlers-cleaners", -1.3),
    ("Farming-fishing", -1.1),
    ("Tech-support", 0.4),
    ("Protective-serv", 0.3),
    ("Priv-house-serv", -2.0),
]
COUNTRIES = ["United-States"] * 30 + [
    "Mexico",
    "Philippines",
    "Germany",
    "Canada",
    "India",
    "England",
    "Cuba",
    "China",
    "Jamaica",
    "South",
    "Italy",
    "Poland",
    "Vietnam",
    "Japan",
]


def rows(n: int, seed: int) -> list[list]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        age = int(np.clip(rng.normal(38, 13), 17, 90))
        edu, edu_num, edu_effect = EDUCATION[
            rng.choice(len(EDUCATION), p=_weights(len(EDUCATION), rng=None))
        ]
        marital, marital_effect = MARITAL[
            rng.choice(len(MARITAL), p=[0.46, 0.33, 0.12, 0.03, 0.03, 0.03])
        ]
        occupation, occupation_effect = OCCUPATION[rng.integers(len(OCCUPATION))]
        sex = "Male" if rng.random() < 0.67 else "Female"
        hours = int(np.clip(rng.normal(40, 12), 1, 99))
        workclass = WORKCLASS[
            rng.choice(len(WORKCLASS), p=[0.7, 0.08, 0.06, 0.04, 0.04, 0.03, 0.05])
        ]
        country = COUNTRIES[rng.integers(len(COUNTRIES))]
        fnlwgt = int(rng.lognormal(12, 0.5))
        score = (
            edu_effect
            + marital_effect
            + occupation_effect
            + 0.04 * (age - 38)
            - 0.0006 * (age - 45) ** 2
            + 0.03 * (hours - 40)
            + 0.2 * (sex == "Male")
            - 0.9
            + rng.normal(0, 0.6)
        )
        income = ">50K" if score > 0 else "<=50K"
        if rng.random() < 0.05:
            workclass = "?"
        if rng.random() < 0.05:
            occupation = "?"
        if rng.random() < 0.02:
            country = "?"
        if rng.random() < 0.01:
            hours = "?"
        out.append(
            [age, workclass, fnlwgt, edu, edu_num, marital, occupation, sex, hours, country, income]
        )
    return out


def _weights(n: int, rng) -> list[float]:
    weights = np.array([16, 11, 8, 3, 2, 2, 2, 1.5, 1, 0.7, 0.8, 1.0])[:n]
    return list(weights / weights.sum())


def write(path: str, n: int, seed: int, dot: bool = False) -> None:
    with open(path, "w") as handle:
        for row in rows(n, seed):
            if dot:
                row[-1] = row[-1] + "."
            handle.write(", ".join(str(v) for v in row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=6000)
    parser.add_argument("path", nargs="?", default="configs/data/census.csv")
    parser.add_argument("--seed", type=int, default=1994)
    parser.add_argument(
        "--test-dot", action="store_true", help="labels with a trailing dot, as in adult.test"
    )
    args = parser.parse_args()
    write(args.path, args.rows, args.seed, args.test_dot)


if __name__ == "__main__":
    main()
