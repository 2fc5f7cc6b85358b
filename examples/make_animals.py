"""Write ``examples/animals.csv``: a realistic 50 animals × 85 binary attributes table (seeded, reproducible).

The rows and columns carry the names of the Animals-with-Attributes classes and predicates (Lampert, Nickisch &
Harmeling, CVPR 2009), but the 0/1 values are *generated*, not the published matrix: every animal belongs to a
family (whales, big cats, canines, …) and a class-wide mammal prototype; each attribute is drawn from the family's
probability (itself the prototype's probability pulled towards 0 or 1 per family) and then flipped with a small
per-animal probability. That gives the nested, partly shared structure of real feature norms — a few strong
modes (everything about being a mammal, marine vs land, predator vs grazer) and many weak ones — with
duplicated-looking rows impossible by construction.

    python examples/make_animals.py            # rewrites examples/animals.csv (same bytes every time)
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FAMILIES = {
    "whales": ["killer+whale", "blue+whale", "humpback+whale", "dolphin"],
    "pinnipeds": ["seal", "walrus", "otter", "beaver"],
    "bears": ["grizzly+bear", "polar+bear", "giant+panda", "raccoon"],
    "big_cats": ["tiger", "leopard", "lion", "bobcat"],
    "house_cats": ["persian+cat", "siamese+cat"],
    "canines": ["dalmatian", "german+shepherd", "chihuahua", "collie", "wolf", "fox"],
    "bovids": ["antelope", "ox", "sheep", "buffalo", "cow", "moose", "deer", "giraffe"],
    "equids": ["horse", "zebra"],
    "pachyderms": ["hippopotamus", "elephant", "rhinoceros", "pig"],
    "primates": ["spider+monkey", "gorilla", "chimpanzee"],
    "rodents": ["hamster", "squirrel", "rabbit", "rat", "mouse", "mole"],
    "mustelids": ["skunk", "weasel", "bat"],
}
ATTRIBUTES = (
    "black white blue brown gray orange red yellow patches spots stripes furry hairless toughskin big small bulbous "
    "lean flippers hands hooves pads paws longleg longneck tail chewteeth meatteeth buckteeth strainteeth horns "
    "claws tusks smelly flys hops swims tunnels walks fast slow strong weak muscle bipedal quadrapedal active "
    "inactive nocturnal hibernate agility fish meat plankton vegetation insects forager grazer hunter scavenger "
    "skimmer stalker newworld oldworld arctic coastal desert bush plains forest fields jungle mountains ocean "
    "ground water tree cave fierce timid smart group solitary nestspot domestic"
).split()
FAMILY_PULL = 0.75  # how far a family moves each attribute's probability from the prototype towards 0 or 1
FLIP = 0.06  # per-animal chance that an attribute differs from its family's draw


def make(seed: int = 2009) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    prototype = rng.beta(0.6, 0.9, size=len(ATTRIBUTES))
    names, rows = [], []
    for members in FAMILIES.values():
        pole = (rng.random(len(ATTRIBUTES)) < prototype).astype(float)
        p_family = (1 - FAMILY_PULL) * prototype + FAMILY_PULL * pole
        base = rng.random(len(ATTRIBUTES)) < p_family
        for name in members:
            flips = rng.random(len(ATTRIBUTES)) < FLIP
            rows.append(np.where(flips, ~base, base).astype(int))
            names.append(name)
    return names, np.array(rows)


def main() -> None:
    names, table = make()
    assert table.shape == (50, 85) and len(set(map(tuple, table))) == 50
    out = Path(__file__).with_name("animals.csv")
    with out.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["animal", *ATTRIBUTES])
        for name, row in zip(names, table):
            w.writerow([name, *row.tolist()])
    print(f"wrote {out}: {table.shape[0]} animals × {table.shape[1]} attributes, {table.mean():.2f} ones")


if __name__ == "__main__":
    main()
