#!/usr/bin/env bash
# `monosem encode` / `monosem decode` with the GPT-2 files: fixture ids (npm gpt-3-encoder) from a
# file and from stdin, decode back to the exact bytes, streaming across the 16 MB read chunk,
# random bytes, and one-line errors with exit codes.
set -u
G=${MS_GPT2_DIR:?}
D=${MS_TEST_DATA:?}/tokenizer
T=${MS_TEST_TMP:?}/tok_cli
M="$MS_BIN/monosem"
mkdir -p "$T"
pass=0 failn=0
ok() { pass=$((pass + 1)); }
bad() { failn=$((failn + 1)); echo "FAIL: $*"; }
if [ ! -f "$G/encoder.json" ] || [ ! -f "$G/vocab.bpe" ]; then
  echo "FAIL: GPT-2 BPE files not in $G: run scripts/fetch-gpt2-bpe $G (scripts/test does it)"; exit 1
fi
V=("$G/encoder.json" "$G/vocab.bpe")

for f in moby_ch1 genesis_1_2; do
  "$M" encode "${V[@]}" "$D/$f.txt" > "$T/$f.ids" && cmp -s "$T/$f.ids" "$D/$f.ids" && ok || bad "encode $f.txt != reference ids"
  "$M" encode "${V[@]}" < "$D/$f.txt" | cmp -s - "$D/$f.ids" && ok || bad "encode from stdin $f"
  "$M" decode "${V[@]}" "$D/$f.ids" | cmp -s - "$D/$f.txt" && ok || bad "decode $f.ids != text"
done

# 2048 copies of Moby-Dick chapter 1 (25 MB, more than one read chunk): every copy encodes alone
# (the text starts with a letter and ends with a newline), so the ids are the copies' ids.
cp "$D/moby_ch1.txt" "$T/big.txt"; cp "$D/moby_ch1.ids" "$T/big.want"
for i in $(seq 11); do
  cat "$T/big.txt" "$T/big.txt" > "$T/big.tmp" && mv "$T/big.tmp" "$T/big.txt"
  cat "$T/big.want" "$T/big.want" > "$T/big.tmp" && mv "$T/big.tmp" "$T/big.want"
done
"$M" encode "${V[@]}" "$T/big.txt" > "$T/big.ids" && cmp -s "$T/big.ids" "$T/big.want" && ok || bad "streamed encode of 25 MB differs"
"$M" decode "${V[@]}" "$T/big.ids" | cmp -s - "$T/big.txt" && ok || bad "streamed decode of 25 MB differs"

# any bytes round-trip (invalid UTF-8 included; seeded, so a failure reproduces)
"${MS_PYTHON:-/usr/bin/python3}" -c 'import random, sys; r = random.Random(1); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(300000)))' > "$T/random.bin"
"$M" encode "${V[@]}" "$T/random.bin" | "$M" decode "${V[@]}" | cmp -s - "$T/random.bin" && ok || bad "random bytes do not round-trip"
printf 'caf\xe9 \xff\xfe na\xc3\xafve \xed\xa0\x80 \xf0\x9f\xa4' > "$T/invalid.txt"
"$M" encode "${V[@]}" "$T/invalid.txt" | "$M" decode "${V[@]}" | cmp -s - "$T/invalid.txt" && ok || bad "invalid UTF-8 does not round-trip"

# errors: usage (exit 2), unknown id and garbage (exit 1, file:line in the message)
"$M" encode "$G/encoder.json" > /dev/null 2> "$T/err"; [ $? -eq 2 ] && grep -q usage "$T/err" && ok || bad "missing MERGES: expected usage error, exit 2"
printf '15496 995\n50257\n' > "$T/badid.txt"
"$M" decode "${V[@]}" "$T/badid.txt" > /dev/null 2> "$T/err"; [ $? -eq 1 ] && grep -q "badid.txt:2: token id 50257" "$T/err" && ok || bad "unknown id: $(cat "$T/err")"
printf '15496 hello\n' > "$T/garbage.txt"
"$M" decode "${V[@]}" "$T/garbage.txt" > /dev/null 2> "$T/err"; [ $? -eq 1 ] && grep -q "garbage.txt:1:" "$T/err" && ok || bad "garbage: $(cat "$T/err")"
"$M" encode "$T/nonexistent.json" "$G/vocab.bpe" "$D/moby_ch1.txt" > /dev/null 2> "$T/err"; [ $? -eq 1 ] && grep -q "nonexistent.json" "$T/err" && ok || bad "missing vocab: $(cat "$T/err")"

rm -f "$T/big.txt" "$T/big.want" "$T/big.ids"
echo "$pass passed, $failn failed"
[ $failn -eq 0 ]
