/* halite cluster dashboard: the cluster over time from Prometheus's HTTP API (relative
 * URLs api/v1/..., proxied by nginx on the monitoring host), drawn with uPlot
 * (vendor/uPlot.iife.min.js). No inline script, no other dependency.
 *
 * Every REFRESH_MS: one query_range per panel for the chosen window (~POINTS points),
 * the firing alerts, the leader changes (computed here from the Leader panel's data:
 * the times where the host with patroni_primary == 1 changes), marked on every chart.
 * document.body.dataset.ready = "1" once every panel has drawn; dataset.events = the
 * number of leader changes in the window; fetch errors go to #error (and it retries).
 */
(function () {
  "use strict";

  var REFRESH_MS = 10000;
  var POINTS = 300;
  var FETCH_TIMEOUT_MS = 8000;
  var CHART_HEIGHT = 200;
  var PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f"];
  var EVENT_COLOR = "#d9480f";

  function fmtBytes(v) {
    if (v == null || !isFinite(v)) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var a = Math.abs(v), i = 0;
    while (a >= 1024 && i < units.length - 1) { a /= 1024; i++; }
    var n = (v < 0 ? -a : a);
    return (i === 0 ? n.toFixed(0) : n.toFixed(a < 10 ? 1 : 0)) + " " + units[i];
  }

  function fmtNumber(v) {
    if (v == null || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100 || a === 0 || Number.isInteger(v)) return v.toFixed(0);
    return v.toFixed(a >= 10 ? 1 : 2);
  }

  function fmtLeader(v) {
    if (v == null || !isFinite(v)) return "–";
    return v === 1 ? "leader" : v === 0 ? "not leader" : String(v);
  }

  var PANELS = [
    {id: "leader", kind: "leader", fmt: fmtLeader,
     query: 'patroni_primary{job="patroni"}'},
    {id: "lag", fmt: fmtBytes,
     query: 'max by (scope) (patroni_xlog_location{job="patroni"} and on (scope, name) patroni_primary == 1)' +
            ' - on (scope) group_right () ' +
            '(patroni_xlog_received_location{job="patroni"} and on (scope, name) patroni_replica == 1)'},
    {id: "tps", fmt: fmtNumber,
     query: 'sum by (host) (rate(pg_stat_database_xact_commit{job="postgres"}[1m]) + ' +
            'rate(pg_stat_database_xact_rollback{job="postgres"}[1m]))'},
    {id: "clients", fmt: fmtNumber,
     query: 'sum by (host) (pgbouncer_active_clients{job="pgbouncer"} + pgbouncer_waiting_clients{job="pgbouncer"})'}
  ];

  var state = {
    start: 0, end: 0, step: 1,
    charts: {},          // panel id -> {u: uPlot, key: "labels|..."}
    drawn: {},           // panel id -> true once drawn
    events: [],          // [{t, from, to}]
    generation: 0,
    timer: null
  };

  var colors = {};
  var colorCount = 0;
  function colorOf(label) {
    if (!Object.prototype.hasOwnProperty.call(colors, label)) {
      colors[label] = PALETTE[colorCount % PALETTE.length];
      colorCount++;
    }
    return colors[label];
  }

  function $(id) { return document.getElementById(id); }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function hhmm(seconds) {
    if (seconds == null) return "";
    var d = new Date(seconds * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes());
  }
  function hhmmss(seconds) {
    var d = new Date(seconds * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  // -- fetching ---------------------------------------------------------------------
  function fetchJSON(url) {
    var ctrl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctrl ? setTimeout(function () { ctrl.abort(); }, FETCH_TIMEOUT_MS) : null;
    var name = url.split("?")[0];
    return fetch(url, {headers: {Accept: "application/json"}, cache: "no-store",
                       credentials: "same-origin", signal: ctrl ? ctrl.signal : undefined})
      .then(function (resp) {
        return resp.text().then(function (text) {
          var body = null;
          try { body = JSON.parse(text); } catch (e) { /* not JSON: said below */ }
          if (!resp.ok) {
            var why = body && body.error ? body.error : text.slice(0, 200).trim();
            throw new Error(name + ": HTTP " + resp.status + (why ? " " + why : ""));
          }
          if (!body) throw new Error(name + ": the answer is not JSON");
          if (body.status !== "success") throw new Error(name + ": " + (body.error || "status " + body.status));
          return body.data;
        });
      }, function (err) {
        throw new Error(name + ": " + (err && err.name === "AbortError"
          ? "no answer in " + FETCH_TIMEOUT_MS / 1000 + " s" : (err && err.message) || String(err)));
      })
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  function queryRange(query, start, end, step) {
    var params = new URLSearchParams({query: query, start: String(start), end: String(end), step: String(step)});
    return fetchJSON("api/v1/query_range?" + params.toString());
  }

  // -- data -------------------------------------------------------------------------
  function seriesLabel(metric) {
    return metric.host || metric.name || metric.instance || JSON.stringify(metric);
  }

  /** A matrix answer as uPlot data aligned on the window's steps: {labels, data}. */
  function align(result, start, end, step) {
    var xs = [];
    for (var t = start; t <= end + 1e-9; t += step) xs.push(t);
    var rows = (result || []).map(function (r) {
      var ys = new Array(xs.length).fill(null);
      (r.values || []).forEach(function (pair) {
        var i = Math.round((Number(pair[0]) - start) / step);
        var v = parseFloat(pair[1]);
        if (i >= 0 && i < xs.length && isFinite(v)) ys[i] = v;
      });
      return {label: seriesLabel(r.metric || {}), ys: ys};
    });
    rows.sort(function (a, b) { return a.label < b.label ? -1 : a.label > b.label ? 1 : 0; });
    var seen = {};
    rows.forEach(function (r) {  // two series of one host: keep both apart
      if (seen[r.label]) { seen[r.label]++; r.label = r.label + " #" + seen[r.label]; } else { seen[r.label] = 1; }
    });
    return {labels: rows.map(function (r) { return r.label; }),
            data: [xs].concat(rows.map(function (r) { return r.ys; }))};
  }

  /** The leader at each step (the only host at 1), the changes and the last known leader. */
  function leaderChanges(aligned) {
    var xs = aligned.data[0], labels = aligned.labels;
    var events = [], prev = null, current = null, lastSeen = -1;
    for (var i = 0; i < xs.length; i++) {
      var leaders = [], any = false;
      for (var s = 0; s < labels.length; s++) {
        var v = aligned.data[s + 1][i];
        if (v != null) any = true;
        if (v === 1) leaders.push(labels[s]);
      }
      if (any) lastSeen = i;
      if (leaders.length !== 1) {  // none (an election) or several (a split brain): no change
        if (any) current = leaders.length ? leaders.join(" + ") : null;
        continue;
      }
      current = leaders[0];
      if (prev !== null && leaders[0] !== prev) events.push({t: xs[i], from: prev, to: leaders[0]});
      prev = leaders[0];
    }
    return {events: events, current: lastSeen >= 0 ? current : undefined};
  }

  // -- charts -----------------------------------------------------------------------
  function drawEvents(u) {
    if (!state.events.length) return;
    var ctx = u.ctx, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
    var left = u.bbox.left, right = u.bbox.left + u.bbox.width;
    ctx.save();
    ctx.strokeStyle = EVENT_COLOR;
    ctx.lineWidth = Math.max(1, Math.round(2 * (window.devicePixelRatio || 1)));
    ctx.setLineDash([6, 4]);
    state.events.forEach(function (ev) {
      var x = Math.round(u.valToPos(ev.t, "x", true));
      if (x < left || x > right) return;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, bottom);
      ctx.stroke();
    });
    ctx.restore();
  }

  function chartWidth(el) {
    return Math.max(300, Math.floor(el.clientWidth || el.parentNode.clientWidth || 600));
  }

  function makeChart(panel, aligned, el) {
    var leader = panel.kind === "leader";
    var stepped = leader ? uPlot.paths.stepped({align: 1}) : null;
    var series = [{label: "time", value: function (u, v) { return v == null ? "–" : hhmmss(v); }}];
    aligned.labels.forEach(function (label) {
      var s = {label: label, stroke: colorOf(label), width: 2, spanGaps: false,
               value: function (u, v) { return panel.fmt(v); }};
      if (stepped) s.paths = stepped;
      series.push(s);
    });
    var yAxis = {size: 72, values: function (u, vals) { return vals.map(panel.fmt); }};
    var yScale;
    if (leader) {
      yScale = {range: [-0.1, 1.1]};
      yAxis.splits = function () { return [0, 1]; };
      yAxis.values = function (u, vals) { return vals.map(function (v) { return v === 1 ? "leader" : v === 0 ? "no" : ""; }); };
    } else {
      yScale = {range: function (u, min, max) {
        var lo = isFinite(min) && min < 0 ? min * 1.1 : 0;
        var hi = isFinite(max) && max > 0 ? max * 1.1 : 1;
        return [lo, hi];
      }};
    }
    var opts = {
      width: chartWidth(el),
      height: CHART_HEIGHT,
      scales: {x: {time: true, range: function () { return [state.start, state.end]; }}, y: yScale},
      series: series,
      axes: [{values: function (u, vals) { return vals.map(hhmm); }}, yAxis],
      legend: {live: true},
      cursor: {drag: {x: false, y: false}},
      hooks: {draw: [drawEvents]}
    };
    return new uPlot(opts, aligned.data, el);
  }

  function showPanel(panel, aligned) {
    var el = document.querySelector("#panel-" + panel.id + " .chart");
    var key = aligned.labels.join("|");
    var chart = state.charts[panel.id];
    if (chart && chart.key === key) {
      chart.u.setData(aligned.data);
    } else {
      if (chart) chart.u.destroy();
      state.charts[panel.id] = {u: makeChart(panel, aligned, el), key: key};
    }
    state.drawn[panel.id] = true;
  }

  // -- header, events, errors -------------------------------------------------------
  function fillList(ul, items, empty) {
    while (ul.firstChild) ul.removeChild(ul.firstChild);
    if (!items.length) {
      var li = document.createElement("li");
      li.className = "none";
      li.textContent = empty;
      ul.appendChild(li);
      return;
    }
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      ul.appendChild(li);
    });
  }

  function showEvents() {
    fillList($("events"), state.events.map(function (ev) {
      return hhmmss(ev.t) + " leader " + ev.from + " -> " + ev.to;
    }), "none in this window");
    document.body.dataset.events = String(state.events.length);
  }

  function showAlerts(data) {
    var firing = ((data && data.alerts) || []).filter(function (a) { return a.state === "firing"; });
    var items = firing.map(function (a) {
      var l = a.labels || {};
      return (l.alertname || "alert") + " (" + (l.host || l.instance || l.name || "cluster") + ")";
    });
    items.sort();
    fillList($("alerts"), items, "none");
  }

  function showError(messages) {
    var el = $("error");
    if (messages.length) {
      el.textContent = "Refresh failed (retrying every " + REFRESH_MS / 1000 + " s): " + messages.join("; ");
      el.hidden = false;
    } else {
      el.textContent = "";
      el.hidden = true;
    }
  }

  // -- the refresh loop -------------------------------------------------------------
  function windowMinutes() {
    var m = parseInt($("window").value, 10);
    return [15, 30, 60, 180].indexOf(m) >= 0 ? m : 30;
  }

  function refresh() {
    clearTimeout(state.timer);
    var gen = ++state.generation;
    var minutes = windowMinutes();
    var step = Math.max(1, Math.ceil(minutes * 60 / POINTS));
    var end = Math.floor(Date.now() / 1000 / step) * step;  // aligned: stable points between refreshes
    var start = end - minutes * 60;

    var jobs = PANELS.map(function (p) { return queryRange(p.query, start, end, step); });
    jobs.push(fetchJSON("api/v1/alerts"));
    return Promise.allSettled(jobs).then(function (results) {
      if (gen !== state.generation) return;  // a newer refresh (another window) has started
      state.start = start; state.end = end; state.step = step;
      var errors = [];
      var aligned = PANELS.map(function (p, i) {
        var r = results[i];
        if (r.status === "rejected") { errors.push(p.id + ": " + r.reason.message); return null; }
        if (r.value.resultType !== "matrix") { errors.push(p.id + ": unexpected " + r.value.resultType); return null; }
        return align(r.value.result, start, end, step);
      });
      // the leader changes first: every chart draws them
      if (aligned[0]) {
        var lc = leaderChanges(aligned[0]);
        state.events = lc.events;
        $("leader").textContent = lc.current === undefined ? "unknown (no data)" : (lc.current || "none");
        showEvents();
      }
      PANELS.forEach(function (p, i) {
        if (!aligned[i]) return;
        try { showPanel(p, aligned[i]); } catch (e) { errors.push(p.id + ": " + e.message); }
      });
      var alerts = results[PANELS.length];
      if (alerts.status === "fulfilled") showAlerts(alerts.value);
      else errors.push("alerts: " + alerts.reason.message);
      showError(errors);
      if (!errors.length) $("refreshed").textContent = hhmmss(Date.now() / 1000);
      if (PANELS.every(function (p) { return state.drawn[p.id]; })) document.body.dataset.ready = "1";
    }).catch(function (e) {
      showError([e && e.message ? e.message : String(e)]);
    }).finally(function () {
      if (gen === state.generation) state.timer = setTimeout(refresh, REFRESH_MS);
    });
  }

  function resize() {
    PANELS.forEach(function (p) {
      var c = state.charts[p.id];
      if (!c) return;
      var el = document.querySelector("#panel-" + p.id + " .chart");
      c.u.setSize({width: chartWidth(el), height: CHART_HEIGHT});
    });
  }

  function start() {
    if (typeof uPlot !== "function") {
      showError(["vendor/uPlot.iife.min.js did not load"]);
      return;
    }
    var params = new URLSearchParams(window.location.search);
    var asked = params.get("minutes");
    if (asked && [15, 30, 60, 180].indexOf(parseInt(asked, 10)) >= 0) $("window").value = String(parseInt(asked, 10));
    $("window").addEventListener("change", function () { refresh(); });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(resize, 150);
    });
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
