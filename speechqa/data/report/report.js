// speechqa report: draws the charts (plotly.js, inlined above), pages the flagged calls and
// keeps the reviewer's verdicts in this browser until they are downloaded for
// `speechqa review import`. Text from the calls is only ever set as text, never as HTML.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var KEY = "speechqa-review:" + DATA.night + ":" + DATA.run.started_at;  // the same run wherever it is opened
  var MASK = /\[[\u4e00-\u9fff]{1,8}\]/g;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function fmt(t) {
    if (t === null || t === undefined) return "";
    var m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1);
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  // -- charts ------------------------------------------------------------------------------
  var PLOT = { displayModeBar: false, responsive: true };
  document.querySelectorAll("[data-chart]").forEach(function (node) {
    var spec = DATA.charts[node.getAttribute("data-chart")];
    if (spec) Plotly.newPlot(node, spec.data, spec.layout, PLOT);
  });

  // -- review state ------------------------------------------------------------------------
  var state = { reviewer: "", calls: {} };
  try { state = Object.assign(state, JSON.parse(localStorage.getItem(KEY) || "{}")); } catch (e) { /* a fresh start */ }
  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode: kept until reload */ }
    updateCount();
  }
  function review(callId) {
    if (!state.calls[callId]) state.calls[callId] = { verdict: "", score: "", comment: "", items: {} };
    return state.calls[callId];
  }
  function reviewed(callId) {
    var r = state.calls[callId];
    return !!r && (!!r.verdict || Object.keys(r.items || {}).length > 0);
  }
  var reviewerInput = document.getElementById("reviewer");
  var firstAssigned = DATA.flagged.map(function (c) { return c.reviewer; }).filter(Boolean)[0] || "";
  reviewerInput.value = state.reviewer || "";
  reviewerInput.placeholder = firstAssigned || reviewerInput.placeholder;
  reviewerInput.addEventListener("input", function () { state.reviewer = reviewerInput.value.trim(); save(); });

  function updateCount() {
    var n = DATA.flagged.filter(function (c) { return reviewed(c.call_id); }).length;
    document.getElementById("review-count").textContent = "已复核 reviewed " + n + " / " + DATA.flagged.length;
    DATA.flagged.forEach(function (c) {
      var badge = document.querySelector('[data-badge="' + CSS.escape(c.call_id) + '"]');
      if (badge) badge.textContent = reviewed(c.call_id) ? "✔ 已复核 reviewed" : "";
    });
  }

  // -- CSV for `speechqa review import` ----------------------------------------------------
  function csvField(v) {
    var s = v === null || v === undefined ? "" : String(v);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function verdictRows(reviewer) {
    var rows = [["call_id", "item_id", "reviewer", "verdict", "score", "comment"]], skipped = 0;
    DATA.flagged.forEach(function (c) {
      var r = state.calls[c.call_id];
      if (!r) return;
      if (r.verdict) rows.push([c.call_id, "", reviewer, r.verdict, r.score, r.comment]);
      else if (r.score !== "" || r.comment) skipped++;
      Object.keys(r.items || {}).sort().forEach(function (item) {
        rows.push([c.call_id, item, reviewer, r.items[item], "", ""]);
      });
    });
    return { rows: rows, skipped: skipped };
  }
  document.getElementById("download").addEventListener("click", function () {
    var reviewer = reviewerInput.value.trim();  // never a guess: verdicts carry who gave them
    var status = document.getElementById("review-count");
    if (!reviewer) { status.textContent = "请先填写复核人 enter the reviewer's name first"; reviewerInput.focus(); return; }
    state.reviewer = reviewer; reviewerInput.value = reviewer; save();
    var built = verdictRows(reviewer);
    var text = "\ufeff" + built.rows.map(function (r) { return r.map(csvField).join(","); }).join("\r\n") + "\r\n";
    var link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" })),
                         download: "reviews-" + DATA.night + "-" + reviewer.replace(/[\\/:*?"<>|\s]+/g, "_") + ".csv" });
    document.body.appendChild(link); link.click(); link.remove();
    if (built.skipped) status.textContent += " · " + built.skipped + " calls have a score or comment but no agree/disagree: not in the file";
  });

  // -- one flagged call --------------------------------------------------------------------
  function marked(text, evidence) {
    // the turn's text, with PII masks and each evidence phrase (first place it occurs) marked
    var marks = new Array(text.length).fill("");
    (evidence || []).forEach(function (ev) {
      var at = ev[0] ? text.indexOf(ev[0]) : -1;
      for (var i = at; at >= 0 && i < at + ev[0].length; i++) marks[i] = "ev-" + (ev[1] === "pass" ? "pass" : "fail");
    });
    var m; MASK.lastIndex = 0;
    while ((m = MASK.exec(text)) !== null) for (var j = m.index; j < m.index + m[0].length; j++) marks[j] = "mask";
    var out = document.createDocumentFragment(), start = 0;
    for (var k = 1; k <= text.length; k++) {
      if (k === text.length || marks[k] !== marks[start]) {
        var piece = text.slice(start, k), cls = marks[start];
        out.appendChild(cls === "mask" ? el("span", { class: "mask", text: piece, title: "已脱敏 masked" })
          : cls ? el("mark", { class: cls, text: piece }) : document.createTextNode(piece));
        start = k;
      }
    }
    return out;
  }
  function seek(audio, t) {
    if (!audio) return;
    audio.currentTime = Math.max(0, t);
    var p = audio.play(); if (p && p.catch) p.catch(function () { /* autoplay refused: seeking is enough */ });
  }
  function radio(name, value, checked, label, onChange) {
    var input = el("input", { type: "radio", name: name, value: value });
    input.checked = checked;
    input.addEventListener("change", onChange);
    return el("label", {}, [input, document.createTextNode(" " + label)]);
  }
  function body(c) {
    var wrap = el("div", { class: "call-body" });
    var left = el("div"), right = el("div");
    var audio = null;
    if (c.audio && c.audio_found) {
      var first = c.evidence.length ? c.evidence[0].t : 0;
      audio = el("audio", { controls: "", preload: "metadata", src: c.audio + "#t=" + first.toFixed(2), "data-call": c.call_id });
      left.appendChild(audio);
    } else {
      left.appendChild(el("p", { class: "note", text: c.audio ? "录音未找到 recording not found: " + decodeURIComponent(c.audio)
        : "无录音 no recording (an imported transcript)" }));
    }
    var jumps = el("div", { class: "jumps" });
    c.evidence.forEach(function (ev) {
      var b = el("button", { type: "button", class: "jump", "data-t": ev.t, text: ev.label + " @" + fmt(ev.t) });
      b.addEventListener("click", function () { seek(audio, ev.t); });
      jumps.appendChild(b);
    });
    left.appendChild(jumps);
    var transcript = el("div", { class: "transcript" });
    c.turns.forEach(function (t) {
      var time = el("span", { class: "t", text: fmt(t.start), title: "跳转 play from here" });
      time.addEventListener("click", function () { seek(audio, t.start); });
      var row = el("div", { class: "turn " + t.role, "data-turn": t.id }, [
        time, el("span", { class: "who", text: DATA.roles[t.role] || t.role })]);
      row.appendChild(marked(t.text || "", t.evidence));
      transcript.appendChild(row);
    });
    left.appendChild(transcript);

    var spark = el("div", { class: "spark" });
    right.appendChild(el("h4", { text: "逐句情绪 sentiment per turn" }));
    right.appendChild(spark);
    var r = review(c.call_id), form = el("div", { class: "review-form" });
    var items = el("table", { class: "grid items-review" });
    items.appendChild(el("tr", {}, [el("th", { text: "评分项 item" }), el("th", { text: "机器 verdict" }), el("th", { text: "判定 is it right?" })]));
    c.items.forEach(function (it) {
      var name = "item-" + c.call_id + "-" + it.item_id, cell = el("td");
      var cur = (state.calls[c.call_id] && state.calls[c.call_id].items[it.item_id]) || "";
      function set(v) { return function () { review(c.call_id).items[it.item_id] = v; save(); }; }
      cell.appendChild(radio(name, "correct", cur === "correct", "正确 correct", set("correct")));
      cell.appendChild(radio(name, "incorrect", cur === "incorrect", "错误 incorrect", set("incorrect")));
      var label = el("td", { text: it.item_name, title: it.reason || "" });
      if (it.t !== null) {
        var go = el("button", { type: "button", class: "item-jump", text: "▶ " + fmt(it.t) });
        go.addEventListener("click", function () { seek(audio, it.t); });
        label.appendChild(document.createTextNode(" ")); label.appendChild(go);
      }
      items.appendChild(el("tr", { "data-item": it.item_id }, [label, el("td", { class: it.outcome, text: it.outcome }), cell]));
    });
    form.appendChild(el("h4", { text: "复核 Review" }));
    form.appendChild(items);
    var overall = el("p", {}, [el("b", { text: "总评 overall: " })]);
    ["agree", "disagree"].forEach(function (v) {
      overall.appendChild(radio("overall-" + c.call_id, v, r.verdict === v, v === "agree" ? "同意 agree" : "不同意 disagree",
        function () { review(c.call_id).verdict = v; save(); }));
    });
    form.appendChild(overall);
    var score = el("input", { type: "number", min: "0", max: "100", step: "1", class: "score", placeholder: c.score === null ? "" : String(c.score) });
    score.value = r.score;
    score.addEventListener("input", function () { review(c.call_id).score = score.value; save(); });
    form.appendChild(el("p", {}, [el("label", { text: "更正得分 corrected score " }), score]));
    var comment = el("textarea", { class: "comment", placeholder: "备注 comment" });
    comment.value = r.comment;
    comment.addEventListener("input", function () { review(c.call_id).comment = comment.value; save(); });
    form.appendChild(comment);
    right.appendChild(form);
    wrap.appendChild(left); wrap.appendChild(right);
    requestAnimationFrame(function () {
      var roles = ["agent", "customer", "unknown"].filter(function (role) {
        return c.turns.some(function (t) { return t.role === role; });
      });
      var traces = roles.map(function (role) {
        var ts = c.turns.filter(function (t) { return t.role === role && t.sentiment !== null; });
        return { x: ts.map(function (t) { return t.start; }), y: ts.map(function (t) { return t.sentiment; }),
                 mode: "lines+markers", name: DATA.roles[role], line: { color: { agent: "#1f5fa8", customer: "#b34d00" }[role] || "#777" } };
      });
      Plotly.newPlot(spark, traces, { margin: { l: 30, r: 10, t: 10, b: 25 }, height: 120, showlegend: true,
        legend: { orientation: "h", y: 1.2 }, yaxis: { range: [0, 1] }, xaxis: { title: "" } }, PLOT);
    });
    return wrap;
  }
  function card(c) {
    var details = el("details", { class: "call", id: "call-" + c.call_id, "data-call": c.call_id });
    var summary = el("summary", {}, [
      el("span", { class: "layer layer-" + c.layer, text: c.layer }),
      el("b", { text: c.call_id }),
      el("span", { text: c.team + " · " + c.agent_name + " (" + c.agent_id + ")" }),
      el("span", { class: c.auto_fail ? "bad" : "", text: (c.score === null ? "—" : c.score) + " 分" + (c.auto_fail ? " · 致命项 auto-fail" : "") }),
      el("span", { class: "reasons", text: c.reasons_zh, title: c.reasons_en }),
      el("span", { text: c.reviewer ? "→ " + c.reviewer : "" }),
      el("span", { class: "reviewed", "data-badge": c.call_id })]);
    details.appendChild(summary);
    var built = false;
    details.addEventListener("toggle", function () {
      if (details.open && !built) { built = true; details.appendChild(body(c)); }
    });
    return details;
  }

  // -- pages of flagged calls --------------------------------------------------------------
  var list = document.getElementById("flagged-list"), pager = document.getElementById("pager");
  var size = DATA.page_size, pages = Math.max(1, Math.ceil(DATA.flagged.length / size));
  function show(page) {
    list.textContent = "";
    DATA.flagged.slice(page * size, (page + 1) * size).forEach(function (c) { list.appendChild(card(c)); });
    pager.textContent = "";
    if (pages > 1) for (var i = 0; i < pages; i++) {
      (function (n) {
        var b = el("button", { type: "button", class: n === page ? "on" : "", text: String(n + 1) });
        b.addEventListener("click", function () { show(n); });
        pager.appendChild(b);
      })(i);
    }
    updateCount();
  }
  if (!DATA.flagged.length) list.appendChild(el("p", { class: "none", text: "本次没有待复核通话 no calls were flagged this night" }));
  show(0);
  var wanted = location.hash.match(/^#call-(.+)$/);  // a link to one call opens it
  if (wanted) {
    var i = DATA.flagged.findIndex(function (c) { return c.call_id === decodeURIComponent(wanted[1]); });
    if (i >= 0) { show(Math.floor(i / size)); var d = document.getElementById("call-" + DATA.flagged[i].call_id); d.open = true; d.scrollIntoView(); }
  }
})();
