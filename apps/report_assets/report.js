/* monosem report: the feature dashboard's page logic. Data arrives as script files that call
 * msReport.run/vocab/units/block (docs/report.md); views are chosen by the URL hash:
 *   #            overview (eval vs the paper, density, features vs neurons, unit list)
 *   #<dict>/feature/<id>, #neurons/neuron/<id>   one unit's page
 * Plots are SVG strings built here from the numbers C computed (histograms, medians, summaries):
 * the page draws, it does not recompute statistics. No network, no libraries. */
"use strict";
var msReport = (function () {
  var S = { run: null, vocab: [], units: {}, blocks: {}, waiting: {}, list: null };

  /* ------------------------------------------------------------ data loading */
  function loadScript(key, src) {
    if (S.waiting[key]) return S.waiting[key].promise;
    var w = {};
    w.promise = new Promise(function (resolve, reject) {
      w.resolve = resolve;
      var el = document.createElement("script");
      el.src = src;
      el.onerror = function () { reject(new Error("cannot load " + src)); };
      document.head.appendChild(el);
    });
    S.waiting[key] = w;
    return w.promise;
  }
  function done(key, value) {
    var w = S.waiting[key];
    if (w) w.resolve(value);
    else S.waiting[key] = { promise: Promise.resolve(value), resolve: function () {} };
  }
  function units(name) {
    if (S.units[name]) return Promise.resolve(S.units[name]);
    return loadScript("units:" + name, "data/" + enc(name) + "/units.js");
  }
  function block(name, b) {
    var k = name + ":" + b;
    if (S.blocks[k]) return Promise.resolve(S.blocks[k]);
    var f = "block-" + ("0000" + b).slice(-5) + ".js";
    return loadScript("block:" + k, "data/" + enc(name) + "/" + f);
  }

  /* ------------------------------------------------------------ helpers */
  function enc(s) { return encodeURIComponent(s); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function $(id) { return document.getElementById(id); }
  function num(v) { var x = typeof v === "string" ? parseFloat(v) : v; return typeof x === "number" && isFinite(x) ? x : null; }
  function fmt(v, d) {
    v = num(v);
    if (v === null) return "—";
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (Number.isInteger(v) && a < 1e7) return String(v);
    if (a >= 1e4 || a < 1e-3 || (d !== undefined && a < Math.pow(10, -d))) return v.toExponential(2);
    return v.toFixed(d === undefined ? (a >= 100 ? 1 : a >= 1 ? 2 : 3) : d);
  }
  /* counts of tokens: 20.0M, 1.5k */
  function big(v) {
    v = num(v);
    if (v === null) return "—";
    var a = Math.abs(v);
    return a >= 1e9 ? (v / 1e9).toFixed(1) + "B" : a >= 1e6 ? (v / 1e6).toFixed(1) + "M" : a >= 1e4 ? (v / 1e3).toFixed(1) + "k" : String(v);
  }
  function legend(series) {
    return '<div class="legend">' + series.map(function (s) {
      return '<span><i style="background:' + s.color + '"></i>' + esc(s.label) + "</span>";
    }).join("") + "</div>";
  }
  function pct(v, d) { v = num(v); return v === null ? "—" : (100 * v).toFixed(d === undefined ? 1 : d) + "%"; }
  /* the first of several dotted paths ("loss.recovered") that leads to a number or an object */
  function pick(obj, paths) {
    for (var i = 0; i < paths.length; i++) {
      var o = obj, parts = paths[i].split(".");
      for (var j = 0; j < parts.length && o !== undefined && o !== null; j++) o = typeof o === "object" ? o[parts[j]] : undefined;
      if (o !== undefined && o !== null && typeof o !== "string" && typeof o !== "boolean") return o;
    }
    return undefined;
  }
  /* a token id as display text: whitespace made visible, ids without strings as #id */
  function tokText(id) {
    if (id === null || id === undefined || id < 0) return "";
    var s = S.vocab[id];
    if (s === undefined || s === null) return "#" + id;
    return s.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, function (c) {
      return "\\x" + ("0" + c.charCodeAt(0).toString(16)).slice(-2);
    });
  }
  function tokChip(id) {
    return '<span class="chip" title="token ' + id + '">' + esc(tokText(id)).replace(/ /g, "\u00b7") + "</span>";
  }
  function dict(name) {
    var ds = S.run.dicts;
    for (var i = 0; i < ds.length; i++) if (ds[i].name === name) return ds[i];
    return null;
  }
  function unitWord(d) { return d.kind === "neurons" ? "neuron" : "feature"; }
  function unitHref(d, id) { return "#" + enc(d.name) + "/" + unitWord(d) + "/" + id; }
  function attr(d, name) { return d.attrs ? num(d.attrs[name]) : null; }

  /* ------------------------------------------------------------ SVG plots */
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    var err = (hi - lo) / n / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    var t = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) t.push(Math.abs(v) < 1e-12 ? 0 : v);
    return t;
  }
  function tickLabel(v) {
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(0);
    return String(Math.round(v * 1000) / 1000);
  }
  /* series: [{edges: [n+1], counts: [n], color, label}] drawn as step-bars on shared axes.
   * opts: width, height, xlabel, ylabel, normalize (each series to a fraction), marks [{x,label}],
   * xfmt (tick label function) */
  function histSvg(series, opts) {
    var W = opts.width || 420, H = opts.height || 170, L = 46, R = 10, T = 18, B = 34;
    var x0 = Infinity, x1 = -Infinity, ymax = 0;
    var ss = series.filter(function (s) { return s.edges && s.counts && s.counts.length; }).map(function (s) {
      var tot = s.counts.reduce(function (a, b) { return a + (b || 0); }, 0) || 1;
      var ys = s.counts.map(function (c) { return opts.normalize ? (c || 0) / tot : (c || 0); });
      x0 = Math.min(x0, s.edges[0]);
      x1 = Math.max(x1, s.edges[s.edges.length - 1]);
      ys.forEach(function (y) { ymax = Math.max(ymax, y); });
      return { edges: s.edges, ys: ys, color: s.color, label: s.label };
    });
    if (!ss.length || !(x1 > x0)) return '<svg class="plot empty" width="' + W + '" height="40"><text x="4" y="24">no data</text></svg>';
    if (opts.x0 !== undefined) x0 = opts.x0;
    if (opts.x1 !== undefined) x1 = opts.x1;
    if (ymax <= 0) ymax = 1;
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return H - B - y / ymax * (H - B - T); };
    var o = ['<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '">'];
    var yt = niceTicks(0, ymax, 4);
    yt.forEach(function (v) {
      o.push('<line class="grid" x1="' + L + '" x2="' + (W - R) + '" y1="' + sy(v) + '" y2="' + sy(v) + '"/>');
      o.push('<text class="tick" x="' + (L - 4) + '" y="' + (sy(v) + 3) + '" text-anchor="end">' + (opts.normalize ? tickLabel(v) : tickLabel(v)) + "</text>");
    });
    niceTicks(x0, x1, 6).forEach(function (v) {
      o.push('<line class="axis" x1="' + sx(v) + '" x2="' + sx(v) + '" y1="' + (H - B) + '" y2="' + (H - B + 4) + '"/>');
      o.push('<text class="tick" x="' + sx(v) + '" y="' + (H - B + 15) + '" text-anchor="middle">' + esc(opts.xfmt ? opts.xfmt(v) : tickLabel(v)) + "</text>");
    });
    ss.forEach(function (s, si) {
      var op = ss.length > 1 ? 0.55 : 0.85;
      for (var i = 0; i < s.ys.length; i++) {
        if (!s.ys[i]) continue;
        var a = Math.max(sx(s.edges[i]), L), b = Math.min(sx(s.edges[i + 1]), W - R);
        if (b <= a) continue;
        o.push('<rect class="bar s' + si + '" x="' + a.toFixed(1) + '" y="' + sy(s.ys[i]).toFixed(1) + '" width="' + Math.max(0.8, b - a - 0.6).toFixed(1) +
          '" height="' + (H - B - sy(s.ys[i])).toFixed(1) + '" fill="' + s.color + '" fill-opacity="' + op + '"><title>' +
          esc(s.label + ": [" + fmt(s.edges[i]) + ", " + fmt(s.edges[i + 1]) + ") " + (opts.normalize ? pct(s.ys[i]) : s.ys[i])) + "</title></rect>");
      }
    });
    (opts.marks || []).forEach(function (m) {
      if (m.x < x0 || m.x > x1) return;
      o.push('<line class="mark" x1="' + sx(m.x) + '" x2="' + sx(m.x) + '" y1="' + T + '" y2="' + (H - B) + '" stroke="' + (m.color || "#555") + '"/>');
      o.push('<text class="marklabel" x="' + (sx(m.x) + 3) + '" y="' + (T + 8 + 11 * (m.row || 0)) + '" fill="' + (m.color || "#555") + '">' + esc(m.label) + "</text>");
    });
    o.push('<line class="axis" x1="' + L + '" x2="' + (W - R) + '" y1="' + (H - B) + '" y2="' + (H - B) + '"/>');
    if (opts.xlabel) o.push('<text class="label" x="' + ((L + W - R) / 2) + '" y="' + (H - 4) + '" text-anchor="middle">' + esc(opts.xlabel) + "</text>");
    if (opts.ylabel) o.push('<text class="label" x="4" y="11">' + esc(opts.ylabel) + "</text>");
    o.push("</svg>");
    return o.join("");
  }
  /* horizontal bars for logit effects: rows [{id, v}] */
  function logitSvg(rows, color, title) {
    var W = 250, rh = 15, H = rows.length * rh + 18, L = 92;
    var m = 0;
    rows.forEach(function (r) { if (num(r.v) !== null) m = Math.max(m, Math.abs(r.v)); });
    m = m || 1;
    var o = ['<svg class="plot logits" xmlns="http://www.w3.org/2000/svg" width="' + W + '" height="' + H + '" viewBox="0 0 ' + W + " " + H + '">'];
    o.push('<text class="label" x="2" y="11">' + esc(title) + "</text>");
    rows.forEach(function (r, i) {
      var y = 16 + i * rh, w = Math.abs(num(r.v) || 0) / m * (W - L - 42);
      o.push('<text class="toklabel" x="' + (L - 5) + '" y="' + (y + 11) + '" text-anchor="end">' + esc(tokText(r.id).replace(/ /g, "\u00b7")) + "</text>");
      o.push('<rect x="' + L + '" y="' + (y + 2) + '" width="' + w.toFixed(1) + '" height="' + (rh - 4) + '" fill="' + color + '"><title>token ' + r.id + ": " + fmt(r.v, 3) + "</title></rect>");
      o.push('<text class="tick" x="' + (L + w + 3) + '" y="' + (y + 11) + '">' + fmt(r.v, 2) + "</text>");
    });
    o.push("</svg>");
    return o.join("");
  }

  /* ------------------------------------------------------------ the paper's reference numbers */
  var PAPER = [
    { name: "paper A/1", d_sae: 4096, loss_recovered: 0.79, dead: 168, ultralow: 292, note: "dead: never fired on 100M tokens; ultralow: density < 1e-6" },
    { name: "paper A/5", d_sae: 131072, loss_recovered: 0.945, note: "the paper calls loss recovered an overestimate of quality" }
  ];
  /* where eval.json keeps each number (the layout of `monosem eval`; a few other spellings) */
  var EVAL_KEYS = {
    loss_recovered: ["loss.recovered", "loss_recovered"], loss_clean: ["loss.clean"], loss_zero: ["loss.zero"],
    l0: ["reconstruction.l0", "l0"], fvu: ["reconstruction.fvu", "fvu"], mse: ["reconstruction.mse", "mse"],
    kl: ["loss.kl", "kl"], dead: ["features.dead", "dead"], ultralow: ["features.ultralow", "ultralow"],
    tokens: ["heldout.tokens", "n_tokens", "tokens"],
    hist: ["features.log10_density_histogram", "log10_density_histogram", "log10_density_hist"],
    min_detectable: ["features.min_detectable_density"],
    rare: ["features.rare"], rare_density: ["features.rare_density"]
  };
  /* the neurons' numbers come from the neurons section of an SAE's eval.json (eval measures
   * them on the same tokens) */
  var NEURON_KEYS = { l0: ["neurons.l0"], dead: ["neurons.dead"], ultralow: ["neurons.ultralow"],
    tokens: ["heldout.tokens"], hist: ["neurons.log10_density_histogram"], min_detectable: ["neurons.min_detectable_density"],
    rare: ["neurons.rare"], rare_density: ["neurons.rare_density"] };
  function evalOf(d, k) {
    if (d.kind === "neurons" && !d.eval) { /* an SAE of the same model measured them */
      var f = S.run.dicts.filter(function (x) { return x.eval && (x.model || "A") === (d.model || "A"); })[0];
      return f && NEURON_KEYS[k] ? pick(f.eval, NEURON_KEYS[k]) : undefined;
    }
    return pick(d.eval, EVAL_KEYS[k]);
  }
  /* a histogram as {edges, counts}: eval writes {lo, step, counts} */
  function histOf(h) {
    if (!h || !h.counts) return null;
    if (h.edges) return h;
    if (num(h.lo) === null || num(h.step) === null) return null;
    var e = [];
    for (var i = 0; i <= h.counts.length; i++) e.push(h.lo + h.step * i);
    return { edges: e, counts: h.counts };
  }

  /* the monosemanticity measures of docs/analysis.md: which direction means "more specific" */
  var MEASURES = [
    { key: "top_token_share", label: "top-token share", better: "higher",
      help: "share of the top activations' mass on the single most common token" },
    { key: "eff_tokens", label: "effective tokens", better: "lower",
      help: "exp(entropy) of the activating tokens in the top activations" },
    { key: "logit_agreement", label: "logit agreement", better: "higher",
      help: "how often the next token after a top activation is one the unit promotes" }
  ];
  var COLORS = { features: "#2563eb", neurons: "#ea580c" };
  /* the untrained control's dictionaries in muted tones of the same two hues */
  var CONTROL_COLORS = { features: "#93c5fd", neurons: "#fdba74" };
  function colorOf(d) { return (d.model === "R" ? CONTROL_COLORS : COLORS)[d.kind] || COLORS.features; }
  function kindLabel(d) { return d.kind + (d.model === "R" ? ", untrained control" : ""); }

  /* ------------------------------------------------------------ overview */
  function overview() {
    var run = S.run, feats = run.dicts.filter(function (d) { return d.kind !== "neurons"; });
    var neur = run.dicts.filter(function (d) { return d.kind === "neurons"; });
    var h = [];
    h.push('<section><h2>Dictionaries against the paper</h2><table class="num" id="evaltable"><thead><tr>' +
      "<th>dictionary</th><th>units</th><th>eval tokens</th><th>L0</th><th>loss recovered</th><th>FVU</th><th>MSE</th><th>KL</th>" +
      "<th>dead</th><th>ultralow</th><th>analysed tokens</th></tr></thead><tbody>");
    run.dicts.forEach(function (d) {
      var n = d.n_units, dead = evalOf(d, "dead"), ul = evalOf(d, "ultralow");
      if (dead === undefined && d.attrs && d.attrs.dead !== undefined) dead = num(d.attrs.dead);
      h.push("<tr><td><a href=\"#list/" + enc(d.name) + '">' + esc(d.name) + "</a> <span class=\"muted\">" + esc(kindLabel(d)) + "</span></td><td>" + n +
        "</td><td>" + big(evalOf(d, "tokens")) + "</td><td>" + fmt(evalOf(d, "l0")) + "</td><td>" + recoveredCell(d) +
        "</b></td><td>" + fmt(evalOf(d, "fvu"), 3) + "</td><td>" + fmt(evalOf(d, "mse"), 4) + "</td><td>" + fmt(evalOf(d, "kl"), 3) +
        "</td><td>" + (num(dead) === null ? "—" : dead + ' <span class="muted">' + pct(dead / n) + "</span>") +
        "</td><td>" + (num(ul) === null ? "—" : ul + ' <span class="muted">' + pct(ul / n) + "</span>" +
          (num(evalOf(d, "min_detectable")) > 1e-6 ? ' <span class="warn" title="fewer eval tokens than 1e6: a density below 1e-6 cannot be told from 0">(not measurable: min density ' + fmt(evalOf(d, "min_detectable"), 1) + ")</span>" : "")) +
        "</td><td>" + big(attr(d, "tokens")) + "</td></tr>");
      if (!d.eval && d.kind !== "neurons") h.push('<tr class="note"><td colspan="11">no eval.json for ' + esc(d.name) + ": run <code>monosem eval</code></td></tr>");
    });
    PAPER.forEach(function (p) {
      h.push('<tr class="paper"><td>' + esc(p.name) + "</td><td>" + p.d_sae + "</td><td>—</td><td>—</td><td><b>" + pct(p.loss_recovered) +
        "</b></td><td>—</td><td>—</td><td>—</td><td>" + (p.dead ? p.dead + ' <span class="muted">' + pct(p.dead / p.d_sae) + "</span>" : "—") +
        "</td><td>" + (p.ultralow ? p.ultralow + ' <span class="muted">' + pct(p.ultralow / p.d_sae) + "</span>" : "—") + "</td><td>100M</td></tr>");
    });
    h.push('</tbody></table><p class="muted small">Loss recovered = (L<sub>zero</sub> − L<sub>SAE</sub>) / (L<sub>zero</sub> − L<sub>clean</sub>). ' +
      "Paper rows: Bricken et al. 2023 (A/1: 4096 features, A/5: 131072), " + esc(PAPER[0].note) + ".</p></section>");

    h.push('<div class="cols"><section><h2>Feature density</h2><div id="densplots"></div><p class="muted small">log<sub>10</sub> of the fraction of tokens on which a unit fires. ' +
      "The paper's dictionaries are bimodal: an ultralow cluster near 10<sup>−7</sup> and the interpretable features near 10<sup>−5</sup>–10<sup>−3</sup>. Dead units (never fired) are not on a log axis; their count is in the legend.</p></section>");
    h.push('<section><h2>Features vs neurons</h2><div id="measures"></div></section></div>');
    h.push(universalitySection(run.universality));
    h.push('<section><h2>Units</h2><div class="listbar"><span id="dicttabs"></span><input id="search" type="search" placeholder="search: id or token (e.g. 42, whale, \\n)" autocomplete="off">' +
      '<span id="listcount" class="muted"></span></div><div id="list"></div></section>');
    $("main").innerHTML = h.join("");

    var ps = run.dicts.map(function (d) { return units(d.name); });
    Promise.all(ps).then(function () {
      densityPlots();
      measurePanel(feats, neur);
      var want = S.listDict && dict(S.listDict) ? S.listDict : run.dicts[0].name;
      showList(want);
    }).catch(fail);
  }

  /* loss recovered, flagged when zero-ablating the MLP barely moves the loss (an untrained
   * model): the ratio's denominator is then noise, not a scale */
  function recoveredCell(d) {
    var r = evalOf(d, "loss_recovered"), gap = num(evalOf(d, "loss_zero")) - num(evalOf(d, "loss_clean"));
    if (num(r) !== null && isFinite(gap) && Math.abs(gap) < 0.1)
      return '<span class="muted" title="L_zero − L_clean = ' + fmt(gap, 3) + ' nats: the MLP barely matters to this model">' + pct(r) +
        " (ill-defined: L<sub>zero</sub> − L<sub>clean</sub> " + fmt(gap, 2) + " nats)</span>";
    return "<b>" + pct(r) + "</b>";
  }

  /* compare's universality medians: the trained pair (A vs B), the control (untrained R vs the
   * trained reference) and the paper */
  function universalitySection(u) {
    var h = ['<section><h2>Universality</h2>'];
    if (!u) return h.concat(['<p class="muted">no compare/universality.json: run <code>monosem compare</code></p></section>']).join("");
    h.push('<table class="num" id="univtable"><thead><tr><th>models</th><th>features</th><th>neurons</th></tr></thead><tbody>');
    h.push("<tr><td>A vs B (trained)</td><td><b>" + fmt(u.features_median, 3) + "</b></td><td><b>" + fmt(u.neurons_median, 3) + "</b></td></tr>");
    if (u.control) h.push("<tr><td>R (untrained control) vs " + esc(u.control.reference || "?") + "</td><td>" + fmt(u.control.features_median, 3) +
      "</td><td>" + fmt(u.control.neurons_median, 3) + "</td></tr>");
    if (u.paper) h.push('<tr class="paper"><td>paper (A vs B)</td><td>' + fmt(u.paper.features_median, 2) + "</td><td>" + fmt(u.paper.neurons_median, 2) + "</td></tr>");
    h.push('</tbody></table><p class="muted small">Median over one model\'s units of the best Pearson correlation of activations with any unit of the other model, over ' +
      big(u.tokens) + " tokens." + (u.reason ? " " + esc(u.reason) + "." : "") + "</p></section>");
    return h.join("");
  }

  function densityPlots() {
    var out = [], all = [];
    S.run.dicts.forEach(function (d) {
      /* eval's histogram, else analyze's: both computed by C with the same bins (libunits/density.c) */
      var hist = histOf(evalOf(d, "hist")), g = d.globals || {}, series, src, dead = null;
      if (hist) {
        series = { edges: hist.edges, counts: hist.counts };
        src = "eval (held-out tokens)";
        dead = num(evalOf(d, "dead"));
      } else if (g.log10_density_hist && g.log10_density_edges) {
        series = { edges: g.log10_density_edges, counts: g.log10_density_hist };
        dead = attr(d, "dead");
        src = "analysis (" + big(attr(d, "tokens")) + " tokens)";
      } else return;
      series.color = colorOf(d);
      var rare = num(evalOf(d, "rare")), rd = num(evalOf(d, "rare_density"));
      series.label = d.name + (dead !== null ? " (" + dead + " dead" + (rare !== null && rd ? ", " + rare + " below " + fmt(rd, 1) : "") + ")" : "");
      series.rare_density = rd;
      all.push({ d: d, series: series, src: src });
    });
    /* one x range for every dictionary, so their modes line up */
    var x0 = -8, x1 = 0;
    all.forEach(function (a) { x0 = Math.min(x0, a.series.edges[0]); x1 = Math.max(x1, a.series.edges[a.series.edges.length - 1]); });
    all.forEach(function (a) {
      var d = a.d, series = a.series, src = a.src;
      out.push('<div class="plotbox"><div class="plottitle">' + esc(d.name) + ' <span class="muted">' + esc(src) + "</span>" + legend([series]) + "</div>" +
        histSvg([series], { width: 520, height: 160, xlabel: "log10 density", ylabel: "units", x0: x0, x1: x1,
          marks: [{ x: -6, label: "ultralow < 1e-6", color: "#b91c1c" }].concat(series.rare_density > 0 ?
            [{ x: Math.log10(series.rare_density), label: "rare < " + fmt(series.rare_density, 1), color: "#a16207", row: 1 }] : []) }) + "</div>");
    });
    $("densplots").innerHTML = out.join("") || '<p class="muted">no densities</p>';
  }

  function measurePanel(feats, neurs) {
    var rows = [], plots = [];
    MEASURES.forEach(function (m) {
      var series = [], meds = [];
      feats.concat(neurs).forEach(function (d) {
        /* analyze's distribution of the measure (docs/analysis.md): its histogram, edges and
         * median over the units it counts (alive, outside the ultralow cluster); n = their number */
        var e = d.globals && d.globals["measure_edges_" + m.key], c = d.globals && d.globals["measure_hist_" + m.key];
        var med = attr(d, "median_" + m.key);
        if (!e || !c) return;
        meds.push({ d: d, med: med, n: c.reduce(function (a, b) { return a + b; }, 0) });
        series.push({ edges: e, counts: c, color: colorOf(d), label: d.name + " (median " + fmt(med, 2) + ")" });
      });
      if (!series.length) return;
      rows.push("<tr><td>" + esc(m.label) + ' <span class="muted">(' + m.better + " = more specific)</span></td>" +
        meds.map(function (x) { return '<td style="color:' + colorOf(x.d) + '">' + esc(x.d.name) + " <b>" + fmt(x.med, 2) + '</b> <span class="muted">n=' + x.n + "</span></td>"; }).join("") + "</tr>");
      plots.push('<div class="plotbox"><div class="plottitle">' + esc(m.label) + ' <span class="muted">' + esc(m.help) + "</span>" + legend(series) + "</div>" +
        histSvg(series, { width: 520, height: 140, normalize: true, ylabel: "fraction of alive units",
          marks: meds.map(function (x, i) { return { x: x.med, label: "", color: colorOf(x.d), row: i }; }) }) + "</div>");
    });
    $("measures").innerHTML = rows.length ?
      '<table class="compact">' + rows.join("") + "</table>" + plots.join("") :
      '<p class="muted">the analysis files carry no monosemanticity measures</p>';
  }

  /* ------------------------------------------------------------ the unit list */
  var LIST_PAGE = 50;
  function listColumns(d) {
    var u = S.units[d.name], cols = [{ key: "id", label: d.kind === "neurons" ? "neuron" : "feature" }, { key: "_top_token", label: "top token" }];
    [["density", "density"], ["max_act", "max act"], ["mean_act", "mean act"]].concat(MEASURES.map(function (m) { return [m.key, m.label]; }))
      .forEach(function (c) { if (u[c[0]]) cols.push({ key: c[0], label: c[1] }); });
    return cols;
  }
  function showList(name) {
    var d = dict(name);
    S.listDict = name;
    $("dicttabs").innerHTML = S.run.dicts.map(function (x) {
      return '<button class="tab' + (x.name === name ? " on" : "") + '" data-dict="' + esc(x.name) + '">' + esc(x.name) + " <span class=\"muted\">" + x.n_units + " " + unitWord(x) + "s</span></button>";
    }).join("");
    Array.prototype.forEach.call($("dicttabs").querySelectorAll("button"), function (b) {
      b.onclick = function () { showList(b.getAttribute("data-dict")); };
    });
    var L = S.list = { d: d, sort: "id", desc: false, q: $("search").value || "", shown: LIST_PAGE, cols: listColumns(d) };
    $("search").oninput = function () { L.q = this.value; L.shown = LIST_PAGE; renderList(); };
    renderList();
  }
  function colValue(u, key, i) { return key === "id" ? i : u[key][i]; }
  function renderList() {
    var L = S.list, d = L.d, u = S.units[d.name], n = d.n_units, q = L.q.trim(), ids = [], i;
    var ql = q.toLowerCase(), isNum = /^\d+$/.test(q);
    var tt = u._top_token || [];
    for (i = 0; i < n; i++) {
      if (!q) { ids.push(i); continue; }
      if (isNum && String(i).indexOf(q) === 0) { ids.push(i); continue; }
      var t = tt[i] >= 0 ? S.vocab[tt[i]] : null;
      if (t && (t.toLowerCase().indexOf(ql) >= 0 || (ql === "\\n" && t.indexOf("\n") >= 0))) ids.push(i);
    }
    var key = L.sort, sgn = L.desc ? -1 : 1;
    if (key !== "id" || L.desc) {
      ids.sort(function (a, b) {
        var x = colValue(u, key, a), y = colValue(u, key, b);
        if (key === "_top_token") { x = S.vocab[x] || ""; y = S.vocab[y] || ""; }
        var xn = x === null || x === undefined, yn = y === null || y === undefined;
        if (xn || yn) return xn && yn ? a - b : xn ? 1 : -1; /* missing values last either way */
        return x < y ? -sgn : x > y ? sgn : a - b;
      });
    }
    var h = ['<table class="num list" id="unitlist"><thead><tr>'];
    L.cols.forEach(function (c) {
      h.push('<th data-key="' + c.key + '" class="sortable' + (L.sort === c.key ? (L.desc ? " desc" : " asc") : "") + '">' + esc(c.label) + "</th>");
    });
    h.push("</tr></thead><tbody>");
    ids.slice(0, L.shown).forEach(function (i) {
      h.push('<tr class="unit-row" data-id="' + i + '">');
      L.cols.forEach(function (c) {
        if (c.key === "id") h.push('<td><a href="' + unitHref(d, i) + '">' + i + "</a></td>");
        else if (c.key === "_top_token") h.push("<td class=\"tokcell\">" + (tt[i] >= 0 ? tokChip(tt[i]) : '<span class="muted">dead</span>') + "</td>");
        else h.push("<td>" + fmt(u[c.key][i], c.key === "density" ? 2 : undefined) + "</td>");
      });
      h.push("</tr>");
    });
    h.push("</tbody></table>");
    if (ids.length > L.shown) h.push('<button id="more" class="more">show ' + Math.min(LIST_PAGE, ids.length - L.shown) + " more</button>");
    $("list").innerHTML = h.join("");
    $("listcount").textContent = ids.length + " of " + n + " " + unitWord(d) + "s";
    Array.prototype.forEach.call($("list").querySelectorAll("th.sortable"), function (th) {
      th.onclick = function () {
        var k = th.getAttribute("data-key");
        if (L.sort === k) L.desc = !L.desc;
        else { L.sort = k; L.desc = k !== "id" && k !== "_top_token" && k !== "eff_tokens"; }
        renderList();
      };
    });
    Array.prototype.forEach.call($("list").querySelectorAll("tr.unit-row"), function (tr) {
      tr.onclick = function (ev) { if (ev.target.tagName !== "A") location.hash = unitHref(d, +tr.getAttribute("data-id")); };
    });
    if ($("more")) $("more").onclick = function () { L.shown += LIST_PAGE; renderList(); };
  }

  /* ------------------------------------------------------------ one unit */
  function contextRow(tokens, acts, scale, center, label) {
    var h = ['<div class="ctx">', '<span class="ctxact">' + label + "</span>", '<span class="toks">'];
    for (var j = 0; j < tokens.length; j++) {
      var t = tokens[j];
      if (t < 0) continue;
      var a = num(acts[j]) || 0, f = scale > 0 ? Math.max(0, Math.min(1, a / scale)) : 0;
      var style = f > 0 ? ' style="background:rgba(234,88,12,' + (0.08 + 0.82 * f).toFixed(3) + ")" + (f > 0.6 ? ";color:#fff" : "") + '"' : "";
      h.push('<span class="tok' + (j === center ? " center" : "") + '"' + style + ' title="' + esc("token " + t + " · act " + fmt(a, 3)) + '">' + esc(tokText(t)) + "</span>");
    }
    h.push("</span></div>");
    return h.join("");
  }

  function unitPage(name, id) {
    var d = dict(name);
    if (!d || !(id >= 0 && id < d.n_units)) {
      $("main").innerHTML = '<p class="error">no such unit: ' + esc(name) + " " + esc(String(id)) + '</p><p><a href="#">overview</a></p>';
      return;
    }
    $("main").innerHTML = '<p class="muted">Loading ' + esc(name) + " " + id + "…</p>";
    var b = Math.floor(id / d.block);
    Promise.all([units(name), block(name, b)]).then(function (r) {
      if (location.hash !== unitHref(d, id) && location.hash !== "#" + name + "/" + unitWord(d) + "/" + id) return; /* navigated away */
      renderUnit(d, id, r[0], r[1]);
    }).catch(fail);
  }

  function renderUnit(d, id, u, blk) {
    var i = id - blk.u0, D = blk.data, word = unitWord(d);
    function row(key) { var x = D[key]; return x ? x[i] : null; }
    function col(key) { return u[key] ? u[key][id] : null; } /* units.js columns are indexed by unit id */
    var maxAct = num(col("max_act")) || 0, w = attr(d, "context_window");
    var h = [];
    h.push('<div class="unithead"><h1>' + esc(d.name) + " · " + word + " " + id + "</h1>");
    h.push('<span class="pager">' + (id > 0 ? '<a href="' + unitHref(d, id - 1) + '">← ' + (id - 1) + "</a>" : "") +
      ' <a href="#">overview</a> <a href="#list/' + enc(d.name) + '">list</a> ' + (id + 1 < d.n_units ? '<a href="' + unitHref(d, id + 1) + '">' + (id + 1) + " →</a>" : "") + "</span></div>");
    var dens = num(col("density"));
    h.push('<table class="facts"><tr>' +
      "<td>top token<br>" + (u._top_token && u._top_token[id] >= 0 ? tokChip(u._top_token[id]) : '<span class="muted">—</span>') + "</td>" +
      "<td>density<br><b>" + fmt(dens, 2) + "</b>" + (dens > 0 ? ' <span class="muted">1 in ' + fmt(Math.round(1 / dens)) + "</span>" : dens === 0 ? ' <span class="dead">dead</span>' : "") + "</td>" +
      "<td>log10 density<br><b>" + (dens > 0 ? Math.log10(dens).toFixed(2) : "—") + "</b></td>" +
      "<td>active tokens<br><b>" + big(col("count")) + "</b></td>" +
      "<td>max act<br><b>" + fmt(col("max_act")) + "</b></td><td>mean act<br><b>" + fmt(col("mean_act")) + "</b></td>" +
      MEASURES.map(function (m) { return u[m.key] ? "<td>" + esc(m.label) + "<br><b>" + fmt(col(m.key), 2) + "</b></td>" : ""; }).join("") +
      "</tr></table>");

    /* nearest units in the other dictionaries */
    var near = blk.nearest || {}, nk = Object.keys(near);
    if (nk.length) {
      h.push('<div class="nearest"><span class="muted">nearest by decoder cosine:</span> ');
      nk.forEach(function (o) {
        var od = dict(o);
        if (!od) return;
        h.push('<span class="nearset"><b>' + esc(o) + "</b> ");
        near[o].ids[i].forEach(function (j, k) {
          if (j < 0) return;
          var ot = S.units[o] && S.units[o]._top_token ? S.units[o]._top_token[j] : -1;
          h.push('<a class="near" href="' + unitHref(od, j) + '">' + j + (ot >= 0 ? " " + tokChip(ot) : "") + ' <span class="muted">' + fmt(near[o].cos[i][k], 2) + "</span></a>");
        });
        h.push("</span>");
      });
      h.push("</div>");
    } else if (S.run.dicts.length < 2) {
      h.push('<div class="nearest muted">one dictionary in this run: no nearest units to link</div>');
    }

    h.push('<div class="cols unitcols"><div class="left">');
    /* top activations */
    var tt = row("top_tokens"), ta = row("top_token_acts"), tact = row("top_act"), tctx = row("top_ctx"), tpos = row("top_pos");
    h.push('<section id="topctx"><h2>Top activations <span class="muted">±' + (w === null ? "?" : w) + " tokens, shaded by activation / max</span></h2>");
    var nshown = 0;
    if (tt) tt.forEach(function (toks, k) {
      if (tctx && tctx[k] < 0) return;
      nshown++;
      h.push(contextRow(toks, ta ? ta[k] : [], maxAct, (toks.length - 1) >> 1, fmt(tact ? tact[k] : null, 2)) +
        (tctx ? "" : ""));
    });
    if (!nshown) h.push('<p class="muted">no activations: this ' + word + " never fired on the analysed tokens</p>");
    h.push("</section>");

    /* interval samples, top interval first */
    var it = row("interval_tokens"), ia = row("interval_token_acts"), iact = row("interval_act"), ictx = row("interval_ctx"),
      ie = row("interval_edges"), ic = row("interval_count");
    if (it) {
      h.push('<section id="intervals"><h2>Interval samples <span class="muted">activations drawn uniformly from equal intervals of (0, max]</span></h2>');
      for (var I = it.length - 1; I >= 0; I--) {
        var any = false, part = [];
        it[I].forEach(function (toks, s) {
          if (ictx && ictx[I][s] < 0) return;
          any = true;
          part.push(contextRow(toks, ia ? ia[I][s] : [], maxAct, (toks.length - 1) >> 1, fmt(iact ? iact[I][s] : null, 2)));
        });
        if (!any) continue;
        h.push('<div class="interval"><div class="ivhead">interval ' + I + ": " + (ie ? fmt(ie[I], 2) + " – " + fmt(ie[I + 1], 2) : "") +
          (ic ? ' <span class="muted">' + ic[I] + (ic[I] === 1 ? " token" : " tokens") + "</span>" : "") + "</div>" + part.join("") + "</div>");
      }
      h.push("</section>");
    }
    h.push('</div><div class="right">');
    /* histogram and logits */
    var hist = row("hist");
    if (hist) {
      var edges = [];
      for (var k = 0; k <= hist.length; k++) edges.push(maxAct * k / hist.length);
      h.push('<section id="acthist"><h2>Activation histogram</h2>' +
        histSvg([{ edges: edges, counts: hist, color: COLORS[d.kind], label: "active tokens" }], { width: 520, height: 170, xlabel: "activation", ylabel: "tokens" }) + "</section>");
    }
    var lt = row("logit_top_ids"), lv = row("logit_top"), bt = row("logit_bottom_ids"), bv = row("logit_bottom");
    if (lt && lv) {
      h.push('<section id="logits"><h2>Logit effects <span class="muted">direction → W<sub>out</sub> → LN → W<sub>U</sub></span></h2><div class="logitcols">' +
        logitSvg(lt.map(function (t, k) { return { id: t, v: lv[k] }; }), "#15803d", "promoted") +
        (bt && bv ? logitSvg(bt.map(function (t, k) { return { id: t, v: bv[k] }; }), "#b91c1c", "suppressed") : "") + "</div></section>");
    } else {
      h.push('<section id="logits"><h2>Logit effects</h2><p class="muted">none for this hook</p></section>');
    }
    h.push("</div></div>");
    $("main").innerHTML = h.join("");
    window.scrollTo(0, 0);
  }

  /* ------------------------------------------------------------ routing */
  function fail(e) {
    console.error(e);
    $("main").innerHTML = '<p class="error">' + esc(e && e.message ? e.message : String(e)) + "</p>";
  }
  function route() {
    var hsh = decodeURIComponent(location.hash.replace(/^#/, ""));
    var p = hsh.split("/");
    if (p.length === 3 && /^\d+$/.test(p[2])) return unitPage(p[0], +p[2]);
    if (p[0] === "list" && p[1]) S.listDict = p[1];
    overview();
    if (p[0] === "list") setTimeout(function () { var s = $("search"); if (s) s.scrollIntoView(); }, 0);
  }

  return {
    run: function (r) { S.run = r; },
    vocab: function (v) { S.vocab = v; },
    units: function (name, cols) { S.units[name] = cols; done("units:" + name, cols); },
    block: function (name, b, obj) { S.blocks[name + ":" + b] = obj; done("block:" + name + ":" + b, obj); },
    start: function () {
      if (!S.run) { $("main").innerHTML = '<p class="error">data/run.js did not load</p>'; return; }
      $("runname").textContent = S.run.name;
      document.title = S.run.name + " · monosem report";
      $("nav").innerHTML = '<a href="#">overview</a>' + S.run.dicts.map(function (d) {
        return ' <a href="#list/' + enc(d.name) + '">' + esc(d.name) + "</a>";
      }).join("");
      $("foot").textContent = "monosem " + S.run.version + " · config " + S.run.config_hash + " · " +
        S.run.dicts.map(function (d) { return d.name + ": " + d.analysis; }).join(" · ");
      window.addEventListener("hashchange", route);
      /* on a unit page, left/right arrows step to the previous/next unit */
      document.addEventListener("keydown", function (ev) {
        var t = ev.target && ev.target.tagName;
        if (t === "INPUT" || t === "TEXTAREA" || ev.altKey || ev.ctrlKey || ev.metaKey) return;
        var p = decodeURIComponent(location.hash.replace(/^#/, "")).split("/"), d = dict(p[0]);
        if (p.length !== 3 || !d || !/^\d+$/.test(p[2])) return;
        var id = +p[2] + (ev.key === "ArrowRight" ? 1 : ev.key === "ArrowLeft" ? -1 : 0);
        if (id !== +p[2] && id >= 0 && id < d.n_units) location.hash = unitHref(d, id);
      });
      route();
    }
  };
})();
