#!/usr/bin/env python3
"""A tiny synthetic corpus for the report's pipeline test: documents of templated sentences in two
registers (nautical and biblical) with verse numbers and punctuation, so a small model and SAE
find token-specific features quickly. Usage: make_corpus.py OUT_DIR [N_DOCS]"""
import os
import random
import sys

SEA = ["the whale rose from the sea", "Ahab stood upon the deck", "the ship sailed into the storm",
       "Ishmael watched the harpoon fly", "the boat was lowered to the water", "the captain called the crew"]
BIBLE = ["and the Lord said unto Moses", "in the beginning God created the heaven", "and Israel went up to the land",
         "thou shalt not fear for I am with thee", "and the king commanded the people", "blessed are they that mourn"]


def main():
    out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 60
    os.makedirs(out, exist_ok=True)
    rng = random.Random(11)
    docs = []
    for d in range(n):
        src = SEA if d % 2 else BIBLE
        lines = []
        for v in range(rng.randint(6, 12)):
            s = rng.choice(src)
            if rng.random() < 0.5:
                s += ", " + rng.choice(src)
            lines.append((f"{d % 20 + 1}:{v + 1} " if src is BIBLE else "") + s[0].upper() + s[1:] +
                         rng.choice([".", ".", ";", "!", "?"]))
        docs.append(" ".join(lines) + "\n")
    with open(os.path.join(out, "corpus.txt"), "w") as f:
        f.write("<|doc|>\n".join(docs))


if __name__ == "__main__":
    main()
