"""Writes reviews.csv: 240 short, made-up product reviews (positive / negative), the data of README's "Train on your
own data". Written for this project from the templates below (no third-party text); the same file every run."""

import csv
import random
from pathlib import Path

THINGS = ["kettle", "backpack", "phone case", "desk lamp", "blender", "rain jacket", "keyboard", "tent", "toaster",
          "headphones", "water bottle", "office chair"]
PRAISE = ["works perfectly", "is sturdy and well made", "was worth every penny", "exceeded my expectations",
          "is a joy to use", "arrived early and works great", "feels solid and reliable", "is simply excellent"]
COMPLAINTS = ["broke after a week", "is flimsy and cheap", "was a waste of money", "stopped working quickly",
              "is a pain to use", "arrived damaged and useless", "feels fragile and poorly made", "is simply awful"]
OPENERS = ["This", "My new", "The", "Our"]
CLOSERS = {"positive": ["Highly recommended.", "Would buy again.", "Five stars.", ""],
           "negative": ["Avoid it.", "Returning it.", "One star.", ""]}


def reviews(count: int = 240, seed: int = 0) -> list[tuple[str, str]]:
    """Distinct reviews, alternately positive and negative (a repeated text could sit in two splits)."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < count:
        label = "positive" if len(rows) % 2 == 0 else "negative"
        verdict = rng.choice(PRAISE if label == "positive" else COMPLAINTS)
        text = f"{rng.choice(OPENERS)} {rng.choice(THINGS)} {verdict}. {rng.choice(CLOSERS[label])}".strip()
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    return rows


if __name__ == "__main__":
    with open(Path(__file__).with_name("reviews.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(reviews())
