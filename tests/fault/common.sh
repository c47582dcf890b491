# Shared fixtures of the fault tests (sourced): small jobs for train-model, generate and train.
: "${MS_BIN:?}" "${MS_MPIRUN:?}" "${MS_TEST_TMP:?}" "${MS_PYTHON:?}"
FAULT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TESTS_DIR=$(dirname "$FAULT_DIR")
read -r -a MPIFLAGS <<< "${MS_MPI_FLAGS:-}"
die() { echo "FAIL: $*"; exit 1; }
ok() { echo "ok: $*"; }
# mon NP LOG STAGE JOB [args...]: one stage under mpirun, bounded in time
mon() {
  local np=$1 log=$2 stage=$3 job=$4; shift 4
  timeout 300 "$MS_MPIRUN" -n "$np" "${MPIFLAGS[@]}" "$MS_BIN/monosem" "$stage" "$job" "$@" > "$log" 2>&1
}
# flip FILE [N]: XOR N bytes (default 3) in the middle of a safetensors file's data section
flip() {
  "$MS_PYTHON" - "$1" "${2:-3}" <<'PY'
import struct, sys
p, n = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
h = struct.unpack("<Q", b[:8])[0]
start = 8 + h + (len(b) - 8 - h) // 2
for i in range(n):
    b[start + 7 * i] ^= 0x5A
open(p, "wb").write(b)
PY
}
# same_st A B: two safetensors files hold identical tensors (bitwise)
same_st() {
  "$MS_PYTHON" - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(p):
    b = open(p, "rb").read()
    h = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + h])
    return {k: b[8 + h + v["data_offsets"][0]: 8 + h + v["data_offsets"][1]] for k, v in hdr.items() if k != "__metadata__"}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if a != b:
    sys.exit(f"FAIL: tensors differ between {sys.argv[1]} and {sys.argv[2]}: " +
             ", ".join(k for k in a if a.get(k) != b.get(k)))
PY
}
# model_fixture DIR: corpus, byte-level BPE tokenizer and DIR/job.yaml for train-model + generate
model_fixture() {
  local d=$1
  mkdir -p "$d"
  "$MS_PYTHON" - "$d/corpus.txt" <<'PY'
import random, sys
r = random.Random(3)
subj = ['the whale', 'a sailor', 'the captain', 'old Ahab', 'the sea', 'a harpoon', 'the crew', 'Ishmael']
verb = ['sees', 'follows', 'fears', 'hunts', 'remembers', 'sails past', 'curses', 'loves']
obj = ['the white whale', 'the ship', 'a storm', 'the harbour', 'his leg', 'the ocean', 'a cold wind']
docs = ['\n'.join(('%s %s %s.' % (r.choice(subj), r.choice(verb), r.choice(obj))).capitalize()
                  for _ in range(r.randint(5, 30))) + '\n' for _ in range(240)]
open(sys.argv[1], 'w').write('<|doc|>\n'.join(docs))
PY
  "$MS_PYTHON" "$TESTS_DIR/train_model/make_tokenizer.py" "$d/tok" "$d/corpus.txt" 40 > /dev/null || die "tokenizer"
  cat > "$d/job.yaml" <<JOB
run: {name: f, out_dir: $d/run, seed: 11}
corpus: {format: text, paths: [$d/corpus.txt], delimiter: "<|doc|>", context: 16,
         heldout_fraction: 0.1, shard_tokens: 4096, token_dir: $d/tokens}
tokenizer: {vocab: $d/tok/vocab.json, merges: $d/tok/merges.txt}
model: {dir: $d/run/model, d_model: 16, d_mlp: 32, n_heads: 2, d_head: 8, n_ctx: 16}
train_model: {steps: 60, batch: 8, lr: 5.0e-3, warmup_steps: 5, checkpoint_every: 10, eval_every: 30,
              eval_batches: 2, log_every: 5}
generate: {sample_per_context: 8, shard_contexts: 8, batch: 4}
JOB
  mon 2 "$d/tokenize.log" tokenize "$d/job.yaml" || die "tokenize: $(tail -3 "$d/tokenize.log")"
}
# sae_fixture DIR: a synthetic activations file and DIR/job.yaml for train
sae_fixture() {
  local d=$1
  mkdir -p "$d"
  "$MS_PYTHON" "$TESTS_DIR/sae_train/make_synth.py" "$d/a.h5" --rows 40000 --d 32 --feats 64 --seed 4 > /dev/null || die synth
  cat > "$d/job.yaml" <<JOB
run: {name: s, out_dir: $d/run, seed: 5}
sae: {activations: $d/a.h5, d_sae: 128, batch: 200, steps: 120, lr: 0.01, l1_coeff: 0.3, checkpoint_every: 10,
      log_every: 5, shuffle_buffer: 10000, median_samples: 1000, resample: {at: [60], window: 2, inputs: 2000}}
JOB
}
