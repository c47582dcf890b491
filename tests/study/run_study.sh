#!/usr/bin/env bash
# monosem run end to end on a synthetic corpus: tokenizer, model A, model B and the untrained
# control R, two SAE sizes on A and one on B and on R, compare (splitting, universality and the
# control's), summary.json; a second run skips every
# unit; a changed key redoes only what depends on it, with a note; an interrupted unit resumes.
set -u
tmp="${MS_TEST_TMP:?}/study_run"
rm -rf "$tmp"; mkdir -p "$tmp"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
py=${MS_PYTHON:-/usr/bin/python3}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
run() { # run LOG JOB [args...]
  local log=$1 job=$2; shift 2
  timeout 300 "$MS_MPIRUN" -n 2 $MS_MPI_FLAGS "$MS_BIN/monosem" run "$job" "$@" >"$log" 2>&1
}

"$py" - "$tmp/corpus.txt" <<'PY'
import random, sys
r = random.Random(3)
subj = ['the whale', 'a sailor', 'the captain', 'old Ahab', 'the sea', 'a harpoon', 'the crew', 'Ishmael']
verb = ['sees', 'follows', 'fears', 'hunts', 'remembers', 'sails past', 'curses', 'loves']
obj = ['the white whale', 'the ship', 'a storm', 'the harbour', 'his leg', 'the ocean', 'a cold wind']
docs = ['\n'.join(('%s %s %s.' % (r.choice(subj), r.choice(verb), r.choice(obj))).capitalize()
                  for _ in range(r.randint(5, 30))) + '\n' for d in range(240)]
open(sys.argv[1], 'w').write('<|doc|>\n'.join(docs))
PY
cat > "$tmp/job.yaml" <<JOB
run: {name: t, out_dir: $tmp/out, seed: 11, log_every_s: 5}
corpus: {format: text, paths: [$tmp/corpus.txt], delimiter: "<|doc|>", context: 16, heldout_fraction: 0.1,
         shard_tokens: 4096}
tokenizer: {train_merges: 60}
model: {d_model: 16, d_mlp: 32, n_heads: 2, d_head: 8, n_ctx: 16}
train_model: {steps: 40, batch: 8, lr: 5.0e-3, warmup_steps: 5, checkpoint_every: 20, eval_every: 20,
              eval_batches: 2, log_every: 10}
generate: {sample_per_context: 8, shard_contexts: 16}
model_b: {seed: 12}
model_r: {seed: 13}
sae: {batch: 64, steps: 60, lr: 1.0e-3, l1_coeff: 1.0e-3, checkpoint_every: 30, log_every: 20, repeat: true,
      median_samples: 256, shuffle_buffer: 1024}
saes:
  - {name: A0, d_sae: 32}
  - {name: A1, d_sae: 96}
  - {name: B1, model: B, d_sae: 96}
  - {name: R1, model: R, d_sae: 96}
compare: {tokens: 3000, batch: 8}
JOB

# ---- 1. the whole study from nothing
run "$tmp/run1.log" "$tmp/job.yaml" || { cat "$tmp/run1.log"; echo "FAIL: first run"; exit 1; }
tail -1 "$tmp/run1.log" | grep -q "^dashboard: $tmp/out/report/index.html" || fail "last line must name the dashboard"
for f in model/model.safetensors model-b/model.safetensors activations.h5 activations-b.h5 sae-A0/sae.h5 \
         sae-A1/sae.h5 sae-B1/sae.h5 sae-A0/run-train.yaml compare/splitting.json compare/splitting.h5 \
         compare/universality.json summary.json run-train-model-b.yaml run-generate-b.yaml \
         model-r/model.safetensors activations-r.h5 sae-R1/sae.h5 run-train-model-r.yaml run-generate-r.yaml \
         neurons/analysis.h5 neurons-r/analysis.h5 sae-R1/analysis.h5 run-analyze-r.yaml; do
  [ -e "$tmp/out/$f" ] || fail "missing $f"
done
"$py" - "$tmp/out" <<'PY' || fail "summary.json / compare outputs"
import json, math, sys
import h5py, numpy as np
out = sys.argv[1]
s = json.load(open(out + '/summary.json'))
bad = []
names = [e['name'] for e in s['saes']]
if names != ['A0', 'A1', 'B1', 'R1'] or [e['model'] for e in s['saes']] != ['A', 'A', 'B', 'R']:
    bad.append('saes: %s' % names)
for e in s['saes']:
    for k in ('d_sae', 'l0', 'fvu', 'mse', 'loss_recovered', 'kl', 'dead', 'ultralow'):
        if k not in e: bad.append('%s lacks %s' % (e['name'], k))
    # the numbers are eval.json's, copied (not recomputed): every field present and equal
    ev = json.load(open('%s/sae-%s/eval.json' % (out, e['name'])))
    want = {'l0': ev['reconstruction']['l0'], 'fvu': ev['reconstruction']['fvu'], 'mse': ev['reconstruction']['mse'],
            'loss_recovered': ev['loss']['recovered'], 'kl': ev['loss']['kl'], 'dead': ev['features']['dead'],
            'ultralow': ev['features']['ultralow']}
    for k, v in want.items():
        if e.get(k) != v: bad.append('%s.%s = %r, eval.json %r' % (e['name'], k, e.get(k), v))
    if not (e['training_time']['step'] == 60 and e['training_time']['l0'] > 0): bad.append('%s training_time' % e['name'])
for m in ('A', 'B', 'R'):
    if m not in s['models'] or not all(isinstance(s['models'][m].get(k), float) for k in ('loss_clean', 'loss_zero')):
        bad.append('model %s fields: %r' % (m, s['models'].get(m)))
# the control is the initialised model, never trained: its loss is the uniform guess's, ln(vocab)
mr, ma = s['models']['R'], s['models']['A']
vocab = json.load(open(out + '/model-r/config.json'))['d_vocab']
if not (abs(mr['train_model_heldout_loss'] - math.log(vocab)) < 0.05 and mr['loss_clean'] > ma['loss_clean'] + 0.5):
    bad.append('model R is not untrained: heldout %r (ln vocab %.3f), clean loss %r vs A %r' % (
        mr.get('train_model_heldout_loss'), math.log(vocab), mr['loss_clean'], ma['loss_clean']))
rlog = [json.loads(l) for l in open(out + '/train_model-r/log.jsonl')]
if [(l['step'], l['split']) for l in rlog] != [(0, 'heldout')]: bad.append('model R log: %r' % rlog)
if 'null_fields' in s: bad.append('null fields: %r' % s['null_fields'])
u = s['universality']
for k in ('features_median', 'neurons_median'):
    if not (isinstance(u.get(k), float) and -1 <= u[k] <= 1): bad.append('universality %s = %r' % (k, u.get(k)))
sp = s['splitting']['pairs']
if len(sp) != 1 or (sp[0]['a'], sp[0]['b']) != ('A0', 'A1'): bad.append('splitting pairs %r' % sp)
if 'features_vs_neurons' not in s: bad.append('features_vs_neurons')
# the full splitting file agrees with its HDF5 twin and is self-consistent
full = json.load(open(out + '/compare/splitting.json'))['pairs'][0]
h = h5py.File(out + '/compare/splitting.h5', 'r')
arg = np.array(full['decoder_cos']['b_arg']); mem = np.array(full['families']['member_of'])
if not np.array_equal(arg, h['A0__A1__cos_b_arg'][()]): bad.append('cos_b_arg json vs h5')
if not np.array_equal(mem, h['A0__A1__family_member'][()]): bad.append('family_member json vs h5')
sizes = np.bincount(mem[mem >= 0], minlength=32)
if not np.array_equal(sizes, np.array(full['families']['size'])): bad.append('family sizes')
if len(arg) != 96 or len(full['activation_corr']['a_max']) != 32: bad.append('shapes')
uj = json.load(open(out + '/compare/universality.json'))
med = np.median([x for x in uj['neurons']['activation_corr']['a_max'] if x is not None])
if abs(med - u['neurons_median']) > 1e-3: bad.append('neurons median %g vs %g' % (med, u['neurons_median']))
# the control: R's SAE against B's of its size, R's neurons against B's
c = uj.get('control') or {}
if c.get('reference') != 'B' or [(f['a'], f['b']) for f in c.get('features', [])] != [('R1', 'B1')] or \
        (c.get('neurons') or {}).get('a') != 'neurons-R' or c['neurons'].get('b') != 'neurons-B':
    bad.append('control pairs: %r' % {k: v for k, v in c.items() if k not in ('features', 'neurons')})
else:
    cm = np.median([x for x in c['neurons']['activation_corr']['a_max'] if x is not None])
    if abs(cm - c['neurons_median']) > 1e-3: bad.append('control neurons median %g vs %g' % (cm, c['neurons_median']))
    for k in ('features_median', 'neurons_median'):
        if not (isinstance(c.get(k), float) and -1 <= c[k] <= 1): bad.append('control %s = %r' % (k, c.get(k)))
    if s['universality'].get('control', {}).get('features_median') != c['features_median']:
        bad.append('summary.json lacks the control')
if bad:
    print('\n'.join(bad)); sys.exit(1)
PY

# model B shares model A's token shards and held-out split: tokenized once, never again
[ "$(grep -c '^tokenize: train ' "$tmp/run1.log")" -eq 1 ] || fail "the corpus was tokenized more than once"
[ "$(grep -c 'tokenize: .* is up to date' "$tmp/run1.log")" -eq 3 ] || fail "generate A, B and R should find the tokens up to date"
grep -q '"seed":	12' "$tmp/out/summary.json" || grep -q '"seed": 12' "$tmp/out/summary.json" || fail "model B's seed"

# compare in several passes (column blocks under a 10 KiB budget) gives the one-pass results
cp -r "$tmp/out/compare" "$tmp/compare1"
timeout 120 "$MS_MPIRUN" -n 3 $MS_MPI_FLAGS "$MS_BIN/monosem" compare "$tmp/job.yaml" --compare.block_mb=0.01 \
  >"$tmp/compare3.log" 2>&1 || { cat "$tmp/compare3.log"; fail "compare on 3 ranks in blocks"; }
grep -q "pass(es)" "$tmp/compare3.log" && ! grep -q " 1 pass(es)" "$tmp/compare3.log" || fail "expected several passes"
"$py" - "$tmp/compare1" "$tmp/out/compare" <<'PY' || fail "multi-pass compare differs from one pass"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1] + '/splitting.h5', 'r'), h5py.File(sys.argv[2] + '/splitting.h5', 'r')
assert sorted(a.keys()) == sorted(b.keys())
for k in a:
    x, y = a[k][()], b[k][()]
    if x.dtype.kind == 'f':
        fin = np.isfinite(x)
        assert np.array_equal(fin, np.isfinite(y)) and np.all(np.abs(x[fin] - y[fin]) < 1e-4), k
    elif 'arg' in k and 'corr' in k:
        assert np.mean(x == y) > 0.95, k   # near-ties may flip under another summation order
    else:
        assert np.array_equal(x, y), k
PY

# ---- 2. again: every unit is skipped but compare: the manual compare above rewrote the files
# compare's unit made (other timings), so `run` redoes it and names the file (issue 23). The analyze stage's medians (model A's
# SAEs and neurons, and the control R's) reach summary.json; model B's SAE is not analysed.
run "$tmp/run2.log" "$tmp/job.yaml" || { cat "$tmp/run2.log"; fail "second run"; }
"$py" - "$tmp/out/summary.json" <<'PY' || fail "features_vs_neurons in summary.json"
import json, math, sys
fv = json.load(open(sys.argv[1]))['features_vs_neurons']
for k in ('A0', 'A1', 'neurons', 'R1', 'neurons-R'):
    v = fv[k]['median_top_token_share']
    assert isinstance(v, float) and 0 <= v <= 1, (k, fv)
    assert isinstance(fv[k]['median_eff_tokens'], float) and fv[k]['median_eff_tokens'] >= 1, (k, fv)
assert fv['B1'] is None, fv
PY
n_skip=$(grep -c ": skipped, up to date" "$tmp/run2.log")
[ "$n_skip" -eq 15 ] || { cat "$tmp/run2.log"; fail "second run: expected 15 units skipped, got $n_skip"; }
grep -q "^== compare: redone: its output $tmp/out/compare/" "$tmp/run2.log" ||
  fail "second run: compare's rewritten outputs not noticed"
grep -v "^== compare: redone" "$tmp/run2.log" | grep -q "resuming\|redone" && fail "second run redid something else"

# ---- 3. a changed key of A1 redoes train A1 and the units that read it (eval, analyze, compare,
# report), each with its reason; the 11 others are skipped
sed 's/{name: A1, d_sae: 96}/{name: A1, d_sae: 96, l1_coeff: 2.0e-3}/' "$tmp/job.yaml" > "$tmp/job2.yaml"
run "$tmp/run3.log" "$tmp/job2.yaml" || { cat "$tmp/run3.log"; fail "third run"; }
grep -q "== train A1: redone: changed sae.l1_coeff 0.001 -> 0.002" "$tmp/run3.log" || { cat "$tmp/run3.log"; fail "no note for train A1"; }
grep -q "== compare: redone: its input 'train-A1' was made differently" "$tmp/run3.log" || fail "no note for compare"
for u in eval analyze report; do
  grep -q "== $u: redone: its input '[a-z-]*A*1*[a-z]*' was made differently" "$tmp/run3.log" || fail "no note for $u"
done
[ "$(grep -c ': redone' "$tmp/run3.log")" -eq 5 ] || fail "only train A1 and what reads it (eval, analyze, compare, report) should be redone"
[ "$(grep -c ': skipped, up to date' "$tmp/run3.log")" -eq 11 ] || fail "the 11 other units should be skipped"
"$py" -c "
import json,sys; s=json.load(open('$tmp/out/summary.json'))
st={x['unit']:x['status'] for x in s['stages']}
sys.exit(0 if st['train-A1']=='redone' and st['compare']=='redone' and st['train-A0']=='skipped' and st['eval']=='redone' else 1)" ||
  fail "summary stages"

# ---- 4. an interrupted unit (record 'started', checkpoint present) resumes
"$py" -c "
import json; p='$tmp/out/stages/train-A0.json'; j=json.load(open(p)); j['state']='started'; json.dump(j, open(p,'w'))"
run "$tmp/run4.log" "$tmp/job2.yaml" --run.stages=[train] || { cat "$tmp/run4.log"; fail "fourth run"; }
grep -q "== train A0: a run of the same configuration was interrupted: resuming" "$tmp/run4.log" || { cat "$tmp/run4.log"; fail "no resume"; }
grep -q "sae.resumed" "$tmp/out/sae-A0/run-train.yaml" || fail "train A0 did not resume from its checkpoint"
grep -q "== compare" "$tmp/run4.log" && fail "run.stages: [train] ran compare"

# ---- 5. usage errors
timeout 60 "$MS_MPIRUN" -n 1 $MS_MPI_FLAGS "$MS_BIN/monosem" train "$tmp/job.yaml" --only NOPE >"$tmp/only.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "no SAE of that name (it has: A0, A1, B1, R1)" "$tmp/only.log" || { cat "$tmp/only.log"; fail "train --only NOPE (exit $rc)"; }
timeout 60 "$MS_MPIRUN" -n 1 $MS_MPI_FLAGS "$MS_BIN/monosem" run "$tmp/job.yaml" --run.stages=[trian] >"$tmp/st.log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "unknown stage 'trian'" "$tmp/st.log" || { cat "$tmp/st.log"; fail "run.stages typo (exit $rc)"; }

[ $fails -eq 0 ] && echo "ok: study run, skip, redo with notes, resume" || exit 1
