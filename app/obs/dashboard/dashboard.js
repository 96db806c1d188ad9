// FlickrKillr's dashboard: polls data.json once a second and draws every
// panel with uPlot. The server keeps the 5-minute window; on the first poll it
// sends the panels and the whole window, then only the new points.
(function () {
  "use strict";
  const WINDOW = 300; // seconds on screen
  const COLORS = ["#0063dc", "#ff0084", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#795548", "#757575"];
  const charts = [];
  let since = 0;

  function text(id, s) { document.getElementById(id).textContent = s; }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  function build(info, panels) {
    text("stage", "stage " + info.stage + " · " + info.name);
    text("summary", info.summary);
    text("schema", "schema: " + info.schema);
    text("pid", String(info.pid));
    if (info.note) {
      const note = document.getElementById("note");
      note.textContent = info.note;
      note.hidden = false;
    }
    const main = document.getElementById("panels");
    for (const p of panels) {
      const el = document.createElement("section");
      el.className = "panel";
      el.id = "panel-" + p.id;
      const h = document.createElement("h2");
      h.textContent = p.title + " ";
      const unit = document.createElement("small");
      unit.textContent = "(" + p.unit + (p.note ? "; " + p.note : "") + ")";
      h.appendChild(unit);
      const now = document.createElement("div");
      now.className = "now empty";
      now.textContent = "no data yet";
      const box = document.createElement("div");
      el.append(h, now, box);
      main.appendChild(el);
      const data = [[]].concat(p.series.map(() => []));
      const opts = {
        width: Math.max(box.clientWidth, 300),
        height: 170,
        series: [{}].concat(p.series.map((s, i) => ({
          label: s.label, stroke: COLORS[i % COLORS.length], width: 2, value: (u, v) => fmt(v),
        }))),
        legend: { live: false },
        axes: [{}, { size: 56 }],
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      };
      charts.push({ panel: p, el, now, box, data, u: new uPlot(opts, data, box) });
    }
    window.addEventListener("resize", () => {
      for (const c of charts) c.u.setSize({ width: Math.max(c.box.clientWidth, 300), height: 170 });
    });
  }

  function append(res) {
    const t = res.t || [];
    if (t.length === 0) return;
    const newest = t[t.length - 1];
    for (const c of charts) {
      const cols = res.data[c.panel.id];
      if (!cols) continue;
      c.data[0].push(...t);
      cols.forEach((col, i) => c.data[i + 1].push(...col));
      const cut = c.data[0].findIndex((x) => x > newest - WINDOW);
      if (cut > 0) c.data.forEach((a) => a.splice(0, cut));
      c.u.setData(c.data);
      const last = cols.map((col) => col[col.length - 1]);
      // The latest values, as text for people and as data attributes for tests.
      c.el.dataset.last = JSON.stringify(last);
      c.el.dataset.points = String(c.data[0].length);
      const known = last.some((v) => v !== null);
      c.now.className = known ? "now" : "now empty";
      c.now.textContent = known
        ? c.panel.series.map((s, i) => s.label + " " + fmt(last[i])).join(" · ")
        : "no data this second";
    }
    since = Math.round(newest * 1000);
    document.body.dataset.since = String(since);
  }

  async function poll() {
    const status = document.getElementById("status");
    try {
      const r = await fetch("/dashboard/data.json?since=" + since, { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const res = await r.json();
      if (res.info && charts.length === 0) build(res.info, res.panels);
      append(res);
      status.textContent = "live, updated " + new Date().toLocaleTimeString();
      status.className = "";
    } catch (e) {
      status.textContent = "no answer from the server (" + e.message + "), retrying";
      status.className = "stale";
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
