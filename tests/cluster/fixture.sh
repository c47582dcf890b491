#!/usr/bin/env bash
# Sourced by the cluster tests: make_tiny_job DIR writes a tiny whole-pipeline job into DIR
# (a pseudo-prose corpus, a byte-level BPE tokenizer, job.yaml with every path under DIR) whose
# stages tokenize, train-model, generate and train each take a second or two on one core.
make_tiny_job() {
  local dir=$1 py=${MS_PYTHON:-/usr/bin/python3}
  local here; here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  mkdir -p "$dir"
  "$py" - "$dir/corpus.txt" <<'PYEOF' || return 1
import random, sys
r = random.Random(3)
subj = ['the whale', 'a sailor', 'the captain', 'old Ahab', 'the sea', 'a harpoon', 'the crew', 'Ishmael']
verb = ['sees', 'follows', 'fears', 'hunts', 'remembers', 'sails past', 'curses', 'loves']
obj = ['the white whale', 'the ship', 'a storm', 'the harbour', 'his leg', 'the ocean', 'a cold wind']
docs = []
for d in range(240):
    docs.append('\n'.join(('%s %s %s.' % (r.choice(subj), r.choice(verb), r.choice(obj))).capitalize()
                          for _ in range(r.randint(5, 30))) + '\n')
open(sys.argv[1], 'w').write('<|doc|>\n'.join(docs))
PYEOF
  "$py" "$here/../train_model/make_tokenizer.py" "$dir/tok" "$dir/corpus.txt" 40 >/dev/null || return 1
  cat > "$dir/job.yaml" <<YAML
run: {name: tiny, out_dir: $dir/run, seed: 11, log_every_s: 1}
corpus: {format: text, paths: [$dir/corpus.txt], delimiter: "<|doc|>", context: 16,
         heldout_fraction: 0.1, shard_tokens: 4096, token_dir: $dir/tokens}
tokenizer: {vocab: $dir/tok/vocab.json, merges: $dir/tok/merges.txt}
model: {dir: $dir/model, d_model: 16, d_mlp: 32, n_heads: 2, d_head: 8, n_ctx: 16}
train_model: {steps: 60, batch: 8, lr: 5.0e-3, warmup_steps: 5, checkpoint_every: 25, eval_every: 30,
              eval_batches: 2, log_every: 5}
generate: {out: $dir/acts.h5, sample_per_context: 4, shard_contexts: 64, batch: 16}
sae: {activations: $dir/acts.h5, out_dir: $dir/sae, d_sae: 64, batch: 128, steps: 60, lr: 1.0e-3,
      checkpoint_every: 25, log_every: 5, shuffle_buffer: 4096, median_samples: 512}
YAML
}
