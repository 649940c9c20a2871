"""Generate names.txt, the dataset: made-up names from a small syllable grammar (seeded, so reproducible).

    python3 make_names.py > names.txt
"""

import random

ONSETS = ["", "b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kr", "l", "m", "n", "p",
          "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "z"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ie", "ou", "y"]
CODAS = ["", "", "", "n", "l", "r", "s", "th", "nd", "m", "x", "ck"]
ENDINGS = ["", "", "a", "ia", "on", "el", "en", "ie", "us", "ine", "o", "an"]


def name(rng: random.Random) -> str:
    syllables = rng.choices([1, 2, 3], weights=[3, 5, 2])[0]
    text = "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))
    return (text + rng.choice(ENDINGS))[:12]


if __name__ == "__main__":
    rng = random.Random(1234)
    names = []
    while len(names) < 2000:
        candidate = name(rng)
        if 3 <= len(candidate) <= 12 and candidate not in names:
            names.append(candidate)
    print("\n".join(names))
