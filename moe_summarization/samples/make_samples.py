"""Writes train.jsonl and dev.jsonl ({id, source, document, summary}): short news-style documents and their
headline summaries, generated from templates written for this repository. Deterministic."""

from __future__ import annotations

import json
import random
from pathlib import Path

FILL = {
    "company": ["Acme Corp", "Globex", "Initech", "Hooli", "Vandelay", "Wonka", "Stark Ltd", "Umbrella Inc"],
    "product": ["phones", "cars", "software", "chips", "coffee", "shoes"],
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
    "team": ["United", "Rovers", "City", "Athletic", "Wanderers", "Albion"],
    "city": ["Oslo", "Lima", "Cairo", "Osaka", "Quebec", "Nairobi", "Perth"],
    "weather": ["snow", "rain", "wind", "heat"],
    "country": ["France", "Japan", "Brazil", "Kenya", "Canada", "Norway"],
    "tax": ["fuel", "income", "sales", "property"],
    "n": [str(i) for i in range(2, 20)],
}
TEMPLATES = [
    ("business", "{company} said on {day} that its quarterly profit rose {n} percent, helped by strong demand for "
                 "its {product}. Analysts had expected a smaller gain. The company also raised its forecast.",
     "{company} profit rises {n} percent"),
    ("sport", "{team} beat {team2} on {day} to move to the top of the league. The winning goal came late in the "
              "second half, and the coach praised the defence.", "{team} beat {team2}"),
    ("weather", "Heavy {weather} hit {city} on {day}, closing schools and several roads. Officials said the "
                "conditions would ease by the weekend.", "{weather} hits {city}"),
    ("politics", "The government of {country} announced on {day} a plan to cut {tax} taxes by {n} percent. "
                 "The opposition said the plan would help only a few.", "{country} to cut {tax} taxes"),
]


def main() -> None:
    rng = random.Random(0)
    rows = []
    for i in range(160):
        source, doc, summary = TEMPLATES[i % len(TEMPLATES)]
        values = {k: rng.choice(v) for k, v in FILL.items()}
        values["team2"] = rng.choice([t for t in FILL["team"] if t != values["team"]])
        rows.append({"id": f"demo-{i}", "source": source, "document": doc.format(**values),
                     "summary": summary.format(**values)})
    here = Path(__file__).parent
    for name, part in (("train", rows[:128]), ("dev", rows[128:])):
        (here / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")


if __name__ == "__main__":
    main()
