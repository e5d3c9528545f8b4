"""Writes train.csv and dev.csv (header label,text): news-style headlines in the four AG News classes,
generated from templates written for this repository. Deterministic; run it to regenerate the files."""

from __future__ import annotations

import csv
import random
from pathlib import Path

FILL = {
    "country": ["France", "Japan", "Brazil", "Kenya", "Canada", "India", "Norway", "Peru", "Egypt", "Chile"],
    "leader": ["The prime minister", "The president", "The foreign minister", "A UN envoy", "The chancellor"],
    "issue": ["border talks", "a ceasefire", "refugee aid", "election reform", "a trade dispute", "sanctions"],
    "team": ["United", "Rovers", "the Lions", "City", "the Eagles", "Athletic", "the Sharks", "Wanderers"],
    "event": ["the cup final", "the league opener", "the derby", "the semi-final", "the title race"],
    "company": ["Acme Corp", "Globex", "Initech", "Umbrella Inc", "Hooli", "Vandelay", "Stark Ltd", "Wonka"],
    "money": ["profit", "revenue", "sales", "earnings", "dividend"],
    "gadget": ["smartphone", "laptop chip", "search engine", "space telescope", "battery", "robot", "browser"],
    "science": ["astronomers", "biologists", "physicists", "researchers", "engineers"],
}
TEMPLATES = {
    0: ["{leader} of {country} holds {issue} in the capital", "{country} and its neighbours agree on {issue}",
        "Protests in {country} over {issue} enter third day", "{leader} visits {country} to discuss {issue}"],
    1: ["{team} beat {team} in {event}", "{team} coach resigns after {event}",
        "Late goal lifts {team} in {event}", "{team} sign striker ahead of {event}"],
    2: ["{company} {money} rises as demand grows", "{company} shares fall after weak {money}",
        "{company} to cut jobs as {money} slips", "Investors cheer {company} {money} outlook"],
    3: ["{company} unveils new {gadget}", "{science} test a faster {gadget}",
        "{company} recalls faulty {gadget}", "{science} say new {gadget} breaks record"],
}


def headline(rng: random.Random, label: int) -> str:
    text = rng.choice(TEMPLATES[label])
    while "{" in text:
        key = text[text.index("{") + 1: text.index("}")]
        text = text.replace("{" + key + "}", rng.choice(FILL[key]), 1)
    return text


def main() -> None:
    rng = random.Random(0)
    rows = [(label, headline(rng, label)) for _ in range(125) for label in range(4)]
    here = Path(__file__).parent
    for name, part in (("train", rows[:400]), ("dev", rows[400:])):
        with (here / f"{name}.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "text"])
            writer.writerows(part)


if __name__ == "__main__":
    main()
