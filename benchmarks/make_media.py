"""Write a text corpus or a folder of recordings, one sub-folder per class, for the text
and audio examples and benchmarks (nothing is downloaded).

- `tickets`: support tickets of four teams (billing, delivery, account, bug), each a few
  sentences built from its team's phrases, words every team uses, and now and then a phrase
  of another team, so a model has to weigh the evidence (a bag of words reaches about 0.9).
- `tickets-table`: the same tickets as a CSV table, beside the amount involved and the
  channel the ticket came in by (a table with a text column; FOLDER names the .csv file).
- `tones`: noisy tones of three pitch classes (low, mid, high) around 220, 440 and 880 Hz,
  of 0.25 to 0.5 s, 16-bit PCM WAV, as a spectrogram model tells them apart.

`configs/data/tickets/` and `configs/data/tones/` are this script's output with the defaults.

Usage:
    python benchmarks/make_media.py tickets FOLDER [--per-class N] [--seed S]
    python benchmarks/make_media.py tones FOLDER [--per-class N] [--rate HZ] [--seed S]
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import numpy as np

PHRASES = {
    "billing": [
        "I was charged twice for my order",
        "the invoice shows the wrong amount",
        "please refund the payment",
        "my credit card was declined at checkout",
        "why did the subscription price go up",
        "I need a copy of last month's receipt",
        "the discount code was not applied to my bill",
    ],
    "delivery": [
        "my parcel has not arrived yet",
        "the tracking number shows no updates",
        "the courier left the package at the wrong address",
        "the box arrived damaged",
        "can I change the delivery date",
        "the shipment is stuck in customs",
        "only half of my items were delivered",
    ],
    "account": [
        "I cannot log in to my account",
        "the password reset email never comes",
        "please change the email address on my profile",
        "my account was locked after too many attempts",
        "how do I delete my account",
        "two factor authentication codes do not work",
        "I want to merge my two accounts",
    ],
    "bug": [
        "the app crashes when I open the settings page",
        "the button does nothing when I click it",
        "pages load very slowly since the last update",
        "I get an error message saying something went wrong",
        "the search results are empty for every query",
        "images do not show on the product page",
        "the screen freezes after I upload a file",
    ],
}
FILLER = [
    "hello",
    "hi team",
    "thanks in advance",
    "this is urgent",
    "I have been a customer for years",
    "please help",
    "it happened again today",
    "I tried twice already",
    "regards",
    "can someone look at this",
]


def tickets(folder: Path, per_class: int = 100, seed: int = 0) -> Path:
    """`per_class` tickets per team, as UTF-8 .txt files in one folder per team."""
    rng = np.random.default_rng(seed)
    teams = list(PHRASES)
    for team in teams:
        (folder / team).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            parts = [str(rng.choice(FILLER))]
            for _ in range(int(rng.integers(1, 3))):
                parts.append(str(rng.choice(PHRASES[team])))
            if rng.random() < 0.35:  # a phrase of another team: the evidence is mixed
                other = teams[(teams.index(team) + int(rng.integers(1, len(teams)))) % len(teams)]
                parts.insert(int(rng.integers(0, len(parts) + 1)), str(rng.choice(PHRASES[other])))
            parts.append(str(rng.choice(FILLER)))
            text = ". ".join(p[0].upper() + p[1:] for p in parts) + ".\n"
            (folder / team / f"{i:04d}.txt").write_text(text, encoding="utf-8")
    return folder


def tickets_table(path: Path, per_class: int = 100, seed: int = 0) -> Path:
    """The tickets as a CSV table beside two columns that carry some of the answer: the
    amount involved (billing tickets name larger ones) and the channel it came in by."""
    import csv

    rng = np.random.default_rng(seed)
    folder = path.parent / f".{path.stem}-documents"
    tickets(folder, per_class, seed)
    channels = {"billing": 0.5, "delivery": 0.2, "account": 0.3, "bug": 0.1}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["amount", "channel", "body", "team"])
        for team in PHRASES:
            for i in range(per_class):
                body = (folder / team / f"{i:04d}.txt").read_text(encoding="utf-8").strip()
                amount = rng.lognormal(4.5 if team == "billing" else 3.5, 0.8)
                channel = (
                    "phone" if rng.random() < channels[team] else str(rng.choice(["mail", "chat"]))
                )
                writer.writerow([round(float(amount), 2), channel, body, team])
    return path


PITCHES = {"low": 220.0, "mid": 440.0, "high": 880.0}


def tones(folder: Path, per_class: int = 20, rate: int = 4000, seed: int = 0) -> Path:
    """`per_class` noisy tones per pitch class, as 16-bit PCM WAV files."""
    rng = np.random.default_rng(seed)
    for label, pitch in PITCHES.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            t = np.arange(int(rate * rng.uniform(0.25, 0.5))) / rate
            signal = 0.4 * np.sin(2 * np.pi * pitch * rng.uniform(0.94, 1.06) * t)
            signal += 0.1 * np.sin(2 * np.pi * pitch * 2 * t)  # a harmonic
            signal += 0.05 * rng.standard_normal(len(t))
            data = (np.clip(signal, -1, 1) * 32767).astype("<i2").tobytes()
            with wave.open(str(folder / label / f"{i:04d}.wav"), "wb") as handle:
                handle.setnchannels(1)
                handle.setsampwidth(2)
                handle.setframerate(rate)
                handle.writeframes(data)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["tickets", "tickets-table", "tones"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--rate", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.kind == "tickets":
        tickets(args.folder, args.per_class or 100, args.seed)
    elif args.kind == "tickets-table":
        tickets_table(args.folder, args.per_class or 100, args.seed)
    else:
        tones(args.folder, args.per_class or 20, args.rate, args.seed)
    print(args.folder)


if __name__ == "__main__":
    main()
