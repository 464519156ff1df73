// recal report explorer: reads the document embedded in #recal-data and draws the page.
// Every text that comes from the data is set with textContent (never as markup).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 100;
  const INVISIBLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  function sv(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }
  function fmt(x, d) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(d === undefined ? 3 : d); }
  // A model's text, shown as text: isolated direction, whitespace kept, invisible characters named.
  function answer(text, cls) {
    const span = el("span", { class: "ans " + (cls || "") });
    span.append(el("bdi", { class: "txt", text: text === "" ? "" : text }));
    if (text === "") span.append(el("i", { class: "muted", text: "(empty)" }));
    const hidden = [...new Set((text.match(INVISIBLE) || []))];
    if (hidden.length) {
      const names = hidden.map((c) => "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0"));
      span.append(el("span", { class: "badge", title: "invisible characters in this text", text: names.join(" ") }));
    }
    return span;
  }
  function mark(ok) { return ok === null || ok === undefined ? el("span", { text: "?" }) : el("span", { class: ok ? "ok" : "bad", text: ok ? "\u2713 correct" : "\u2717 wrong" }); }

  async function load() {
    const node = document.getElementById("recal-data");
    if (node.dataset.format === "json") return JSON.parse(node.textContent);
    const bytes = Uint8Array.from(atob(node.textContent.trim()), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  // A table whose columns sort on a click of their header (numbers by value, text by text).
  function sortable(header, rows, opts) {
    const o = opts || {};
    const table = el("table", { class: "sortable" + (o.cls ? " " + o.cls : "") });
    const thead = el("thead"), tbody = el("tbody");
    const tr = el("tr");
    let sortCol = -1, dir = 1;
    const key = (v) => { const n = parseFloat(String(v)); return isNaN(n) ? String(v) : n; };
    function draw() {
      tbody.replaceChildren();
      const order = rows.map((r, i) => i);
      if (sortCol >= 0) order.sort((a, b) => { const x = key(rows[a][sortCol]), y = key(rows[b][sortCol]); return (x < y ? -1 : x > y ? 1 : 0) * dir; });
      for (const i of order) {
        const tr = el("tr", { "data-row": i }, ...rows[i].map((c) => el("td", { text: String(c) })));
        if (o.onRow && o.linked && o.linked[i]) { tr.classList.add("linked"); tr.title = "show its reliability diagram"; tr.addEventListener("click", () => o.onRow(i, tr)); }
        tbody.append(tr);
      }
    }
    header.forEach((h, j) => tr.append(el("th", { text: h, title: "sort", on: { click: () => { dir = sortCol === j ? -dir : 1; sortCol = j; table.dataset.sorted = j + (dir > 0 ? "+" : "-"); draw(); } } })));
    thead.append(tr); table.append(thead, tbody); draw();
    return table;
  }

  // ---------------------------------------------------------------- reliability diagram
  function diagram(name, d, onSelect) {
    const W = 300, H = 300, L = 40, T = 14, P = 240, HH = 36;
    const x = (c) => L + c * P, y = (a) => T + (1 - a) * P;
    const svg = sv("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "diagram", "data-scorer": name, role: "img" });
    svg.append(sv("rect", { x: L, y: T, width: P, height: P, class: "frame" }));
    for (let t = 0; t <= 1.0001; t += 0.25) {
      svg.append(sv("line", { x1: L - 3, x2: L, y1: y(t), y2: y(t), class: "tick" }));
      const lab = sv("text", { x: L - 5, y: y(t) + 3, class: "axis", "text-anchor": "end" }); lab.textContent = t.toFixed(2); svg.append(lab);
      const lb = sv("text", { x: x(t), y: T + P + 12, class: "axis", "text-anchor": "middle" }); lb.textContent = t.toFixed(2); svg.append(lb);
    }
    const xl = sv("text", { x: L + P / 2, y: H - 4, class: "axis", "text-anchor": "middle" }); xl.textContent = "confidence (" + name + ")"; svg.append(xl);
    // histogram of confidences along the bottom
    const hmax = Math.max(1, ...d.hist_counts);
    d.hist_counts.forEach((c, k) => { if (c) svg.append(sv("rect", { x: x(d.hist_edges[k]), width: Math.max(0.5, (d.hist_edges[k + 1] - d.hist_edges[k]) * P - 0.5), y: T + P - HH * c / hmax, height: HH * c / hmax, class: "hist" })); });
    // smoothed curve with its band
    const band = d.grid.map((g, i) => `${x(g)},${y(d.band_high[i])}`).concat(d.grid.map((g, i) => `${x(g)},${y(d.band_low[i])}`).reverse());
    svg.append(sv("polygon", { points: band.join(" "), class: "band" }));
    svg.append(sv("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), class: "diag" }));
    // bins: a bar for the accuracy, and a full-height target for the click
    const nb = d.bin_count.length;
    d.bin_count.forEach((n, k) => {
      const x0 = x(d.bin_edges[k]), w = (d.bin_edges[k + 1] - d.bin_edges[k]) * P;
      if (n) {
        const a = d.bin_accuracy[k];
        svg.append(sv("rect", { x: x0 + 1, width: w - 2, y: y(a), height: Math.max(0.5, a * P), class: "bar" }));
      }
      const hit = sv("rect", { x: x0, width: w, y: T, height: P, class: "bin", "data-bin": k, "data-count": n });
      const tip = sv("title"); tip.textContent = `bin ${k}: [${fmt(d.bin_edges[k], 2)}, ${fmt(d.bin_edges[k + 1], 2)}${k === nb - 1 ? "]" : ")"}, ${n} questions, accuracy ${fmt(d.bin_accuracy[k])}`;
      hit.append(tip); svg.append(hit);
    });
    svg.append(sv("polyline", { points: d.grid.map((g, i) => `${x(g)},${y(d.curve[i])}`).join(" "), class: "curve" }));
    const brush = sv("rect", { x: 0, y: T, width: 0, height: P, class: "brush", visibility: "hidden" });
    svg.append(brush);
    // click a bin, or drag across the plot to brush a confidence range
    const toConf = (ev) => { const r = svg.getBoundingClientRect(); const px = (ev.clientX - r.left) * W / r.width; return Math.min(1, Math.max(0, (px - L) / P)); };
    let start = null;
    svg.addEventListener("pointerdown", (ev) => { start = { c: toConf(ev), x: ev.clientX, bin: ev.target.dataset ? ev.target.dataset.bin : undefined }; svg.setPointerCapture(ev.pointerId); });
    svg.addEventListener("pointermove", (ev) => {
      if (!start || Math.abs(ev.clientX - start.x) < 4) return;
      const a = Math.min(start.c, toConf(ev)), b = Math.max(start.c, toConf(ev));
      brush.setAttribute("x", x(a)); brush.setAttribute("width", (b - a) * P); brush.setAttribute("visibility", "visible");
    });
    svg.addEventListener("pointerup", (ev) => {
      if (!start) return;
      const moved = Math.abs(ev.clientX - start.x) >= 4;
      if (moved) { const a = Math.min(start.c, toConf(ev)), b = Math.max(start.c, toConf(ev)); onSelect({ scorer: name, lo: a, hi: b }); }
      else { brush.setAttribute("visibility", "hidden"); if (start.bin !== undefined) onSelect({ scorer: name, bin: Number(start.bin) }); }
      start = null;
    });
    svg.brushTo = (a, b) => { brush.setAttribute("x", x(a)); brush.setAttribute("width", (b - a) * P); brush.setAttribute("visibility", "visible"); };
    svg.clearMarks = () => { brush.setAttribute("visibility", "hidden"); svg.querySelectorAll(".bin.on").forEach((r) => r.classList.remove("on")); };
    return svg;
  }

  // ---------------------------------------------------------------- one question in detail
  function detail(doc, q, scorerNames) {
    const box = el("div", { class: "detail", "data-id": q.id });
    box.append(el("p", {}, el("b", { text: "Question " }), el("bdi", { class: "txt", text: q.question })));
    const gold = el("p", {}, el("b", { text: "Gold answers: " }));
    q.gold.forEach((g, i) => { if (i) gold.append(", "); gold.append(answer(g, "gold")); });
    box.append(gold);
    const cls = el("table", { class: "classes" });
    cls.append(el("tr", {}, ...["", "class (B = " + doc.collapse + ")", "share", "grade", "why", "sampled answers"].map((h) => el("th", { text: h }))));
    q.classes.forEach((c, i) => {
      const share = c.n / q.m;
      const members = el("ul", { class: "members" });
      for (const m of c.members) {
        const li = el("li", {}, answer(m[0], "member"), el("span", { class: "count", text: " \u00d7" + m[1] }));
        if (m.length > 2) li.append(el("span", { class: "muted", text: " read as " }), answer(m[2], "span"));
        members.append(li);
      }
      const why = el("div", { class: "why" });
      for (const [span, reason] of Object.entries(c.why || {})) why.append(el("div", {}, answer(span, "span"), el("span", { text: ": " + reason })));
      const modal = i === 0;
      cls.append(el("tr", { class: "cls" + (modal ? " modal" : "") },
        el("td", { text: modal ? (q.tie ? "modal (tie, first sampled)" : "modal") : "" }),
        el("td", {}, answer(c.label, "label")),
        el("td", {}, el("span", { class: "share", text: `${c.n}/${q.m} = ${fmt(share, 2)}` }), el("span", { class: "sbar", style: `width:${Math.round(share * 60)}px` })),
        el("td", {}, mark(c.correct)), el("td", {}, why), el("td", {}, members)));
    });
    box.append(cls);
    const g = el("p", {}, el("b", { text: "Greedy answer: " }));
    if (q.greedy_text === null) g.append(el("i", { class: "muted", text: "not sampled" }));
    else g.append(answer(q.greedy_text, "greedy"), el("span", { class: "muted", text: " class " }), answer(q.greedy, "label"));
    box.append(g);
    const sc = el("table", { class: "scorers" });
    sc.append(el("tr", {}, ...["confidence scorer", "answer (class)", "confidence", "grade"].map((h) => el("th", { text: h }))));
    scorerNames.forEach((s, j) => { const [a, c, ok] = q.scores[j]; sc.append(el("tr", {}, el("td", { text: s }), el("td", {}, answer(a, "label")), el("td", { class: "conf", text: fmt(c) }), el("td", {}, mark(ok)))); });
    box.append(sc);
    return box;
  }

  // ---------------------------------------------------------------- the question list
  function questionList(doc, state, rowsOf, columns, render) {
    const wrap = el("div", { id: "questions" });
    function draw() {
      const rows = rowsOf();
      wrap.replaceChildren(el("p", { id: "count", text: `${rows.length} question${rows.length === 1 ? "" : "s"}` + (state.caption ? " \u2014 " + state.caption : "") }));
      const table = el("table", { class: "qlist" });
      table.append(el("tr", {}, ...columns.map((h) => el("th", { text: h }))));
      let shown = 0;
      function more() {
        for (const r of rows.slice(shown, shown + PAGE)) {
          const tr = render(r);
          tr.classList.add("qrow");
          tr.addEventListener("click", () => {
            const next = tr.nextSibling;
            if (next && next.classList.contains("open")) { next.remove(); tr.classList.remove("expanded"); return; }
            tr.classList.add("expanded");
            const td = el("td", { colspan: columns.length }); td.append(r.detail());
            tr.after(el("tr", { class: "open" }, td));
          });
          table.append(tr);
        }
        shown = Math.min(rows.length, shown + PAGE);
        btn.hidden = shown >= rows.length;
        btn.textContent = `show ${Math.min(PAGE, rows.length - shown)} more (${rows.length - shown} left)`;
      }
      const btn = el("button", { class: "more", on: { click: more } });
      wrap.append(table, btn); more();
    }
    wrap.draw = draw;
    return wrap;
  }

  function textOf(q) {
    const parts = [q.id, q.question, ...q.gold];
    for (const c of q.classes) { parts.push(c.label); for (const m of c.members) parts.push(m[0]); }
    if (q.greedy_text) parts.push(q.greedy_text);
    return parts.join("\n").toLowerCase();
  }

  function filters(state, scorers, redraw) {
    const bar = el("div", { class: "filters" });
    const search = el("input", { id: "search", type: "search", placeholder: "search questions, gold and sampled answers" });
    search.addEventListener("input", () => { state.search = search.value.toLowerCase(); redraw(); });
    const kind = el("select", { id: "filter" }, ...[["all", "all questions"], ["wrong", "wrong only"], ["confident_wrong", "confident and wrong"], ["tie", "ties for the modal class"], ["one_per_sample", "one class per sample"], ["flip", "verdict changes"], ["changed", "classes merged or split"]].filter(([k]) => state.kinds.includes(k)).map(([k, t]) => el("option", { value: k, text: t })));
    kind.addEventListener("change", () => { state.filter = kind.value; redraw(); });
    const thr = el("input", { id: "threshold", type: "number", min: 0, max: 1, step: 0.05, value: state.threshold });
    thr.addEventListener("input", () => { state.threshold = Number(thr.value); redraw(); });
    bar.append(search, kind, el("label", { text: " confident: \u2265 " }), thr);
    if (scorers.length > 1) {
      const pick = el("select", { id: "scorer" }, ...scorers.map((s, j) => el("option", { value: j, text: s })));
      pick.addEventListener("change", () => { state.scorer = Number(pick.value); redraw(); });
      bar.append(el("label", { text: " scorer " }), pick);
      state.pick = pick;
    }
    const clear = el("button", { id: "clear", text: "clear selection", on: { click: () => { state.selection = null; search.value = ""; state.search = ""; kind.value = "all"; state.filter = "all"; redraw(); } } });
    bar.append(clear);
    return bar;
  }

  function header(doc, app) {
    app.append(el("h1", { text: doc.title }));
    const facts = el("ul", { class: "facts" });
    for (const [k, v] of doc.facts) facts.append(el("li", {}, el("b", { text: k + ": " }), el("span", { text: v })));
    app.append(facts);
    app.append(el("p", { class: "muted", text: "Each cell: estimate [interval]; a calibration error also shows its noise floor, marked (within) when the estimate does not exceed it. Click a column header to sort." }));
    app.append(sortable(doc.table.header, doc.table.rows, { cls: "headline" }));
  }

  // ---------------------------------------------------------------- one run
  function runPage(doc, app) {
    header(doc, app);
    const state = { search: "", filter: "all", threshold: 0.8, scorer: 0, selection: null, caption: "", kinds: ["all", "wrong", "confident_wrong", "tie", "one_per_sample"] };
    const qs = doc.questions.map((q, i) => ({ q, i, text: textOf(q) }));
    const figs = el("div", { class: "diagrams" });
    const svgs = {};
    app.append(el("h2", { text: "Reliability diagrams" }), el("p", { class: "muted", text: "Bars: accuracy per confidence bin; line: smoothed accuracy with its bootstrap band; grey: how many questions have each confidence. Click a bin, or drag across a diagram, to list its questions." }), figs);
    const select = (s) => { state.selection = s; state.scorer = doc.scorers.indexOf(s.scorer); if (state.pick) state.pick.value = state.scorer; redraw(); };
    for (const name of doc.scorers) { const svg = diagram(name, doc.diagrams[name], select); svgs[name] = svg; figs.append(el("figure", {}, svg)); }
    function matches(r) {
      const q = r.q, [, conf, ok] = q.scores[state.scorer];
      const sel = state.selection;
      if (sel) {
        const j = doc.scorers.indexOf(sel.scorer), c = q.scores[j][1];
        if (sel.bin !== undefined ? doc.diagrams[sel.scorer].question_bin[r.i] !== sel.bin : c < sel.lo || c > sel.hi) return false;
      }
      if (state.search && !r.text.includes(state.search)) return false;
      switch (state.filter) {
        case "wrong": return !ok;
        case "confident_wrong": return !ok && conf >= state.threshold;
        case "tie": return q.tie;
        case "one_per_sample": return q.classes.length === q.m && q.m > 1;
        default: return true;
      }
    }
    const list = questionList(doc, state, () => qs.filter(matches).map((r) => ({ ...r, detail: () => detail(doc, r.q, doc.scorers) })),
      ["id", "question", "modal answer", "confidence", "grade", "classes"],
      (r) => { const q = r.q, [a, c, ok] = q.scores[state.scorer]; const tr = el("tr", { "data-id": q.id }, el("td", { text: q.id }), el("td", {}, el("bdi", { class: "txt", text: q.question })), el("td", {}, answer(a, "label")), el("td", { class: "conf", text: fmt(c) }), el("td", {}, mark(ok)), el("td", { text: String(q.classes.length) })); return tr; });
    function redraw() {
      for (const svg of Object.values(svgs)) svg.clearMarks();
      const sel = state.selection;
      if (sel && sel.bin !== undefined) {
        const d = doc.diagrams[sel.scorer];
        svgs[sel.scorer].querySelector(`.bin[data-bin="${sel.bin}"]`).classList.add("on");
        state.caption = `bin ${sel.bin} of ${sel.scorer}: confidence in [${fmt(d.bin_edges[sel.bin], 2)}, ${fmt(d.bin_edges[sel.bin + 1], 2)}${sel.bin === d.bin_count.length - 1 ? "]" : ")"}`;
      } else if (sel) { svgs[sel.scorer].brushTo(sel.lo, sel.hi); state.caption = `${sel.scorer} confidence in [${fmt(sel.lo)}, ${fmt(sel.hi)}]`; }
      else state.caption = "";
      list.draw();
    }
    app.append(el("h2", { text: "Questions" }), filters(state, doc.scorers, redraw), list);
    redraw();
  }

  // ---------------------------------------------------------------- two runs side by side
  function comparePage(doc, app) {
    header(doc, app);
    const state = { search: "", filter: "all", threshold: 0.8, scorer: 0, selection: null, caption: "", kinds: ["all", "flip", "changed", "wrong", "confident_wrong", "tie"] };
    const [sa, sb] = doc.scorer_index;
    const ps = doc.pairs.map((p, i) => ({ p, i, text: textOf(p.a) + "\n" + textOf(p.b) }));
    function changed(p) { return p.changes && (Object.keys(p.changes.merged).length || Object.keys(p.changes.split).length); }
    function matches(r) {
      const p = r.p, a = p.a.scores[sa], b = p.b.scores[sb];
      if (state.search && !r.text.includes(state.search)) return false;
      switch (state.filter) {
        case "flip": return p.flip;
        case "changed": return changed(p);
        case "wrong": return !a[2] || !b[2];
        case "confident_wrong": return (!a[2] && a[1] >= state.threshold) || (!b[2] && b[1] >= state.threshold);
        case "tie": return p.a.tie || p.b.tie;
        default: return true;
      }
    }
    function pairDetail(p) {
      const box = el("div", { class: "pair" });
      if (p.changes === null) box.append(el("p", { class: "muted", text: "The two runs sampled different answers for this question: merges and splits are defined on the same samples only." }));
      else if (!changed(p)) box.append(el("p", { class: "muted", text: "Both collapsing functions give the same classes for these samples." }));
      else {
        const ul = el("ul", { class: "changes" });
        for (const [to, from] of Object.entries(p.changes.merged)) { const li = el("li", { text: `${doc.names[1]} merges ` }); from.forEach((f, i) => { if (i) li.append(" + "); li.append(answer(f, "label")); }); li.append(" \u2192 ", answer(to, "label")); ul.append(li); }
        for (const [from, to] of Object.entries(p.changes.split)) { const li = el("li", { text: `${doc.names[1]} splits ` }); li.append(answer(from, "label"), " \u2192 "); to.forEach((f, i) => { if (i) li.append(" | "); li.append(answer(f, "label")); }); ul.append(li); }
        box.append(ul);
      }
      const cols = el("div", { class: "sides" });
      cols.append(el("div", {}, el("h3", { text: doc.names[0] }), detail({ collapse: doc.names[0] }, p.a, doc.scorers_a)));
      cols.append(el("div", {}, el("h3", { text: doc.names[1] }), detail({ collapse: doc.names[1] }, p.b, doc.scorers_b)));
      box.append(cols);
      return box;
    }
    const list = questionList(doc, state, () => ps.filter(matches).map((r) => ({ ...r, detail: () => pairDetail(r.p) })),
      ["id", "question", doc.names[0], doc.names[1], "\u0394 confidence", "merged/split"],
      (r) => { const p = r.p, a = p.a.scores[sa], b = p.b.scores[sb]; return el("tr", { "data-id": p.a.id }, el("td", { text: p.a.id }), el("td", {}, el("bdi", { class: "txt", text: p.a.question })), el("td", {}, answer(a[0], "label"), el("span", { text: " " + fmt(a[1], 2) + " " }), mark(a[2])), el("td", {}, answer(b[0], "label"), el("span", { text: " " + fmt(b[1], 2) + " " }), mark(b[2])), el("td", { class: "conf", text: (p.delta >= 0 ? "+" : "") + fmt(p.delta) }), el("td", { text: p.changes === null ? "different samples" : changed(p) ? "yes" : "" })); });
    app.append(el("h2", { text: "Questions" }), filters(state, [], () => list.draw()), list);
    list.draw();
  }

  // ---------------------------------------------------------------- tables (bench, fit)
  function tablesPage(doc, app) {
    app.append(el("h1", { text: doc.title }));
    const facts = el("ul", { class: "facts" });
    for (const [k, v] of doc.facts) facts.append(el("li", {}, el("b", { text: k + ": " }), el("span", { text: v })));
    app.append(facts, el("p", { class: "muted", text: "Click a column header to sort; click a row to see its method's reliability diagram." }));
    doc.tables.forEach((t, n) => {
      const fig = el("figure", { class: "figure", hidden: "" });
      const show = (i, tr) => {
        const key = t.figures[i];
        fig.replaceChildren(el("figcaption", { text: key }), el("img", { src: doc.images[key], alt: key }));
        fig.hidden = false;
        table.querySelectorAll("tr.on").forEach((r) => r.classList.remove("on")); tr.classList.add("on");
      };
      const table = sortable(t.header, t.rows, { onRow: show, linked: t.figures, cls: "bench" });
      table.id = "table-" + n;
      app.append(el("h2", { text: t.title }), el("p", { class: "muted", text: t.caption }), table, fig);
    });
  }

  load().then((doc) => {
    const app = document.getElementById("app");
    app.replaceChildren();
    if (doc.kind === "compare") comparePage(doc, app);
    else if (doc.kind === "tables") tablesPage(doc, app);
    else runPage(doc, app);
    document.body.dataset.ready = "1";
  }).catch((err) => {
    const app = document.getElementById("app");
    app.replaceChildren(el("p", { class: "bad", text: "This report could not be read: " + err }));
    document.body.dataset.ready = "error";
    throw err;
  });
})();
