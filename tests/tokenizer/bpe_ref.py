#!/usr/bin/env python3
"""Reference test of the BPE trainer and encoder: an independent pure-Python implementation
(hand-written GPT-2 pre-tokenizer from unicodedata, naive BPE training that recounts every pair
each step, classic GPT-2 encode loop) against `monosem tokenizer-train` / `monosem encode`.

  bpe_ref.py CORPUS_FILE... [--merges N]
Environment: MS_BIN (monosem's directory), MS_TEST_TMP, optional MS_MPIRUN/MS_MPI_FLAGS (runs
the stage under 2 ranks too), optional MS_GPT2_DIR + MS_TEST_DATA (first checks this oracle
against the npm gpt-3-encoder fixture ids, so the oracle itself is validated).
Exits non-zero on any disagreement.
"""
import json
import os
import shlex
import subprocess
import sys
import unicodedata

# ECMAScript \s (the reference encoder is JavaScript): WhiteSpace + LineTerminator.
WS = set("\t\n\x0b\x0c\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {chr(c) for c in range(0x2000, 0x200B)}
CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")


def is_l(c):
    return unicodedata.category(c)[0] == "L"


def is_n(c):
    return unicodedata.category(c)[0] == "N"


def is_other(c):
    return c not in WS and not is_l(c) and not is_n(c)


def pretokenize(s):
    """The GPT-2 pattern 's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    evaluated by hand, alternative by alternative, at each position."""
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if c == "'":
            suf = next((x for x in CONTRACTIONS if s.startswith(x, i + 1)), None)
            if suf is not None:
                out.append(s[i:i + 1 + len(suf)])
                i += 1 + len(suf)
                continue
        j = i + 1 if c == " " else i
        matched = False
        for cls in (is_l, is_n, is_other):
            if j < n and cls(s[j]):
                k = j
                while k < n and cls(s[k]):
                    k += 1
                out.append(s[i:k])
                i = k
                matched = True
                break
        if matched:
            continue
        # whitespace: \s+(?!\S) backtracks to leave one space before a non-space, else \s+
        k = i
        while k < n and s[k] in WS:
            k += 1
        assert k > i, "every character matches some alternative"
        m = k - i if (k == n or k - i == 1) else k - i - 1
        out.append(s[i:i + m])
        i += m
    return out


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs))), bs


B2U, BYTE_ORDER = bytes_to_unicode()


def alpha(b):
    return "".join(B2U[x] for x in b)


def train(words, n_merges):
    """Naive BPE: each step recounts all adjacent pairs (weighted by word counts) and merges the
    most frequent; ties -> smallest (first bytes, second bytes)."""
    splits = {w: [bytes([x]) for x in w] for w in words}
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for w, cnt in words.items():
            sp = splits[w]
            for a, b in zip(sp, sp[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + cnt
        if not pairs:
            break
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))
        merges.append((a, b))
        for w in words:
            sp = splits[w]
            out, i = [], 0
            while i < len(sp):
                if i + 1 < len(sp) and sp[i] == a and sp[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(sp[i])
                    i += 1
            splits[w] = out
    return merges


def bpe_encode_word(word, ranks):
    """GPT-2 encoder.py's loop on a tuple of symbols (byte strings)."""
    w = [bytes([x]) for x in word]
    while len(w) > 1:
        pairs = set(zip(w, w[1:]))
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        a, b = best
        out, i = [], 0
        while i < len(w):
            if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                out.append(a + b)
                i += 2
            else:
                out.append(w[i])
                i += 1
        w = out
    return w


def encode(text, ranks, vocab):
    ids = []
    cache = {}
    for piece in pretokenize(text):
        b = piece.encode("utf-8")
        if b not in cache:
            cache[b] = [vocab[t] for t in bpe_encode_word(b, ranks)]
        ids.extend(cache[b])
    return ids


def load_files(vocab_path, merges_path):
    u2b = {v: k for k, v in B2U.items()}
    with open(vocab_path, encoding="utf-8") as f:
        enc = json.load(f)
    vocab = {}
    for tok, i in enc.items():
        if tok == "<|endoftext|>":
            continue
        vocab[bytes(u2b[c] for c in tok)] = i
    ranks = {}
    with open(merges_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for line in lines:
        if not line or line.startswith("#version"):
            continue
        a, b = line.split(" ")
        ranks[(bytes(u2b[c] for c in a), bytes(u2b[c] for c in b))] = len(ranks)
    return enc, vocab, ranks


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def documents(text, delimiter):
    """Documents of a text file: lines equal to the delimiter end one (the line itself dropped);
    blank documents skipped; no delimiter: the whole file."""
    if not delimiter:
        return [text]
    docs, cur = [], []
    for line in text.splitlines(keepends=True):
        body = line[:-1] if line.endswith("\n") else line
        body = body[:-1] if body.endswith("\r") else body
        if body == delimiter:
            docs.append("".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append("".join(cur))
    return [d for d in docs if d.strip(" \t\r\n")]


def run_case(corpus, n_merges, tmp, bindir, delimiter=""):
    os.makedirs(tmp, exist_ok=True)
    # 1. the C trainer through the CLI
    vocab_path, merges_path = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
    job = os.path.join(tmp, "job.yaml")
    with open(job, "w") as f:
        f.write("run: {name: tokref, out_dir: %s}\n" % json.dumps(tmp))
        f.write("corpus: {format: text, delimiter: %s, paths: [%s]}\n"
                % (json.dumps(delimiter), ", ".join(json.dumps(p) for p in corpus)))
        f.write("tokenizer: {vocab: %s, merges: %s, train_merges: %d}\n"
                % (json.dumps(vocab_path), json.dumps(merges_path), n_merges))
    r = subprocess.run([os.path.join(bindir, "monosem"), "tokenizer-train", job], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    if r.returncode != 0:
        fail("monosem tokenizer-train exited %d: %s" % (r.returncode, r.stderr))

    # 2. the oracle on the same documents (each file one document)
    words = {}
    texts = []
    for p in corpus:
        with open(p, encoding="utf-8") as f:
            text = f.read()
        texts.append(text)
        for doc in documents(text, delimiter):
            for piece in pretokenize(doc):
                b = piece.encode("utf-8")
                words[b] = words.get(b, 0) + 1
    want = train(words, n_merges)
    enc, vocab, ranks = load_files(vocab_path, merges_path)
    got = sorted(ranks, key=ranks.get)
    if len(got) != len(want):
        fail("%d merges learned, the oracle learned %d" % (len(got), len(want)))
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            fail("merge %d: C learned %s %s, the oracle %s %s" % (i, alpha(g[0]), alpha(g[1]), alpha(w[0]), alpha(w[1])))
    print("merges: all %d equal the oracle's (first: %s)" % (len(got), ", ".join("%s %s" % (alpha(a), alpha(b)) for a, b in got[:5])))

    # 3. vocab.json layout: GPT-2 byte order, merged tokens in creation order, <|endoftext|> last
    expect = {alpha(bytes([b])): i for i, b in enumerate(BYTE_ORDER)}
    for a, b in want:
        t = alpha(a + b)
        if t not in expect:
            expect[t] = len(expect)
    expect["<|endoftext|>"] = len(expect)
    if enc != expect or list(enc.values()) != list(range(len(enc))):
        fail("vocab.json differs from the expected layout (%d vs %d entries)" % (len(enc), len(expect)))
    print("vocab.json: %d entries as expected" % len(enc))

    # 4. monosem encode with the trained files == the oracle's encode (and decode back)
    for p, text in zip(corpus, texts):
        r = subprocess.run([os.path.join(bindir, "monosem"), "encode", vocab_path, merges_path, p],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail("monosem encode: %s" % r.stderr)
        got_ids = [int(x) for x in r.stdout.split()]
        want_ids = encode(text, ranks, vocab)
        if got_ids != want_ids:
            k = next((i for i, (x, y) in enumerate(zip(got_ids, want_ids)) if x != y), min(len(got_ids), len(want_ids)))
            fail("%s: monosem encode differs from the oracle at token %d (%d vs %d tokens)"
                 % (p, k, len(got_ids), len(want_ids)))
        print("encode %s: %d tokens equal the oracle's" % (os.path.basename(p), len(got_ids)))

    return job, vocab_path, merges_path, len(enc)


def main():
    args = sys.argv[1:]
    n_merges = 400
    if "--merges" in args:
        k = args.index("--merges")
        n_merges = int(args[k + 1])
        del args[k:k + 2]
    corpus = args
    if not corpus:
        print(__doc__)
        sys.exit(2)
    bindir = os.environ["MS_BIN"]
    tmp = os.path.join(os.environ["MS_TEST_TMP"], "tok_train_ref")
    os.makedirs(tmp, exist_ok=True)

    # 0. the oracle itself agrees with the npm reference on GPT-2's own files
    gdir, ddir = os.environ.get("MS_GPT2_DIR", ""), os.environ.get("MS_TEST_DATA", "")
    if gdir and os.path.exists(os.path.join(gdir, "encoder.json")) and ddir:
        _, gvocab, granks = load_files(os.path.join(gdir, "encoder.json"), os.path.join(gdir, "vocab.bpe"))
        fx = os.path.join(ddir, "tokenizer", "genesis_1_2")
        with open(fx + ".txt", encoding="utf-8") as f:
            text = f.read()
        with open(fx + ".ids") as f:
            want = [int(x) for x in f.read().split()]
        if encode(text, granks, gvocab) != want:
            fail("the Python oracle disagrees with the npm gpt-3-encoder ids on genesis_1_2")
        with open(os.path.join(ddir, "tokenizer", "pieces.json"), encoding="utf-8") as f:
            for case in json.load(f):
                if "\ufffd" not in case["text"] and pretokenize(case["text"]) != case["pieces"]:
                    fail("the Python pre-tokenizer disagrees with JavaScript on %r" % case["text"])
        print("oracle check: Python BPE == npm gpt-3-encoder on genesis_1_2 (%d tokens)" % len(want))
    else:
        print("oracle check skipped: no MS_GPT2_DIR (test_tokenizer covers the GPT-2 files)")

    job, vocab_path, merges_path, _ = run_case(corpus, n_merges, tmp, bindir)

    # 5. under 2 ranks the stage gives the same files (and nobody hangs)
    mpirun = os.environ.get("MS_MPIRUN", "")
    if mpirun:
        with open(merges_path, "rb") as f:
            m1 = f.read()
        with open(vocab_path, "rb") as f:
            v1 = f.read()
        os.remove(merges_path)
        cmd = [mpirun, "-n", "2"] + shlex.split(os.environ.get("MS_MPI_FLAGS", "").replace(";", " ")) + \
              [os.path.join(bindir, "monosem"), "tokenizer-train", job]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            fail("mpirun -n 2 monosem tokenizer-train exited %d: %s %s" % (r.returncode, r.stdout, r.stderr))
        with open(merges_path, "rb") as f:
            m2 = f.read()
        with open(vocab_path, "rb") as f:
            v2 = f.read()
        if m1 != m2 or v1 != v2:
            fail("tokenizer-train under 2 ranks wrote different files")
        print("mpirun -n 2: identical outputs")
    # 6. documents separated by a delimiter line (the demo job's layout): merges never span two
    with open(os.path.join(tmp, "docs.txt"), "w", encoding="utf-8") as f:
        for k, p in enumerate(corpus):
            with open(p, encoding="utf-8") as g:
                for para in g.read().split("\n\n"):
                    f.write(para + "\n<|doc|>\n")
    run_case([os.path.join(tmp, "docs.txt")], 300, os.path.join(tmp, "docs"), bindir, delimiter="<|doc|>")

    # 7. a small-alphabet corpus: many ties and long repetitive words
    import random
    rng = random.Random(5)
    small = os.path.join(tmp, "ab_words.txt")
    with open(small, "w") as f:
        f.write(" ".join("".join(rng.choice("ab") for _ in range(rng.randint(1, 40))) for _ in range(3000)) + "\n")
    run_case([small], 150, os.path.join(tmp, "ab"), bindir)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
