#!/usr/bin/env bash
# tokenizer-train keeps existing vocab/merges files (they may be GPT-2's, or what a model was
# trained with) and replaces them only with --force.
set -u
tmp="${MS_TEST_TMP:?}/tok_keep"; rm -rf "$tmp"; mkdir -p "$tmp"
printf 'the cat sat on the mat. the cat ate the rat.\n' > "$tmp/a.txt"
printf 'old vocab\n' > "$tmp/vocab.json"; printf 'old merges\n' > "$tmp/merges.txt"
cat > "$tmp/job.yaml" <<YAML
run: {name: keep, out_dir: $tmp/run}
corpus: {paths: [$tmp/a.txt]}
tokenizer: {vocab: $tmp/vocab.json, merges: $tmp/merges.txt, train_merges: 10}
YAML
out=$("$MS_BIN/monosem" tokenizer-train "$tmp/job.yaml" 2>&1) || { echo "FAIL: exit $? without --force: $out"; exit 1; }
[ "$(cat "$tmp/vocab.json")" = "old vocab" ] && [ "$(cat "$tmp/merges.txt")" = "old merges" ] \
  || { echo "FAIL: existing tokenizer files were replaced without --force"; exit 1; }
printf '%s\n' "$out" | grep -q "exist: kept" || { echo "FAIL: no message saying the files were kept: $out"; exit 1; }
out=$("$MS_BIN/monosem" tokenizer-train "$tmp/job.yaml" --force 2>&1) || { echo "FAIL: --force run failed (exit $?): $out"; exit 1; }
grep -q '<|endoftext|>' "$tmp/vocab.json" && head -1 "$tmp/merges.txt" | grep -q '^#version' \
  || { echo "FAIL: --force did not write a trained tokenizer"; exit 1; }
echo "2 passed, 0 failed"
