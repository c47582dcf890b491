#!/usr/bin/env python3
"""Writes a byte-level GPT-2 style tokenizer (256 byte tokens + <|endoftext|>, optional merges
of the most frequent adjacent pairs of a text) for the trainer's tests: make_tokenizer.py DIR [TEXT N]."""
import json, os, sys
from collections import Counter


def byte_alphabet():
    # GPT-2's printable stand-ins for the 256 bytes
    keep = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    alpha = byte_alphabet()
    vocab = {alpha[b]: b for b in range(256)}
    merges = []
    if len(sys.argv) > 3:
        # greedy merges inside words of the text (no regex pre-split needed for tests)
        words = Counter(open(sys.argv[2], 'rb').read().split())
        seqs = {w: [alpha[b] for b in w] for w in words}
        for _ in range(int(sys.argv[3])):
            pairs = Counter()
            for w, s in seqs.items():
                for a, b in zip(s, s[1:]):
                    pairs[(a, b)] += words[w]
            if not pairs:
                break
            (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
            merges.append((a, b))
            vocab[a + b] = len(vocab)
            for w, s in seqs.items():
                i, out = 0, []
                while i < len(s):
                    if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                        out.append(a + b)
                        i += 2
                    else:
                        out.append(s[i])
                        i += 1
                seqs[w] = out
    vocab['<|endoftext|>'] = len(vocab)
    with open(os.path.join(d, 'vocab.json'), 'w', encoding='utf-8') as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, 'merges.txt'), 'w', encoding='utf-8') as f:
        f.write('#version: 0.2\n')
        for a, b in merges:
            f.write(a + ' ' + b + '\n')


if __name__ == '__main__':
    main()
