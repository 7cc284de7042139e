// The diffqc dashboard: recent inspections (image + heatmap overlay) and the selected line's SPC
// charts with their signals' acknowledgements, refreshed by polling the REST API (no reload, no
// external scripts). Operators and admins acknowledge a signal with its cause and corrective action.
"use strict";

const REFRESH_MS = 2000;
const RECENT = 12;
const ACKS = 200; // the line's newest acknowledgements: those of the signals shown, which are the newest
const ACK_ROLES = ["operator", "admin"];
// acking: the signal whose acknowledgement form is open (the charts are not redrawn under it).
const state = { line: null, busy: false, timer: null, canAck: false, acking: null };

function renderLines(lines) {
  const select = $("line");
  const ids = lines.map((l) => l.line_id);
  if (state.line === null || !ids.includes(state.line)) state.line = ids[0] ?? null;
  if ([...select.options].map((o) => o.value).join() !== ids.join()) {
    select.replaceChildren(...lines.map((l) => el("option", { value: l.line_id }, l.line_id)));
  }
  if (state.line !== null) select.value = state.line;
}

function card(inspection) {
  const node = el("article", {
    class: `card ${inspection.verdict}`, "data-testid": "inspection",
    "data-inspection-id": inspection.inspection_id, "data-frame-id": inspection.frame_id,
    "data-verdict": inspection.verdict,
  });
  const images = el("div", { class: "images" });
  images.append(el("img", { src: inspection.image_url, alt: "frame", "data-testid": "frame-image" }));
  if (inspection.heatmap_url) {
    images.append(el("img", { src: inspection.heatmap_url, alt: "heatmap overlay", "data-testid": "heatmap" }));
  }
  const score = `${inspection.score.toFixed(2)} / ${inspection.threshold.toFixed(2)}`;
  const regions = inspection.regions.length ? ` · ${inspection.regions.length} region(s)` : "";
  // A part that was not inspected has no score: say why instead, and that it must be checked by hand.
  const facts = inspection.verdict === "not_inspected"
    ? el("span", { "data-testid": "not-inspected-reason" },
         `  check by hand: ${inspection.not_inspected_reason || "its frame was dead-lettered"}`)
    : el("span", {}, `  score ${score}${regions}`);
  node.append(
    images,
    el("span", { class: "badge" }, inspection.verdict.replace("_", " ")),
    facts,
    el("div", { class: "meta" }, `${inspection.frame_id} · ${inspection.product_type} · ` +
       `${new Date(inspection.captured_at).toLocaleTimeString()}`),
  );
  return node;
}

function renderInspections(inspections) {
  const list = $("inspections");
  const existing = new Map([...list.children].map((n) => [n.dataset.inspectionId, n]));
  // Reuse the cards already shown, so their images are not fetched again on every refresh.
  list.replaceChildren(...inspections.map((i) => existing.get(i.inspection_id) || card(i)));
}


function labelled(text, field) {
  const label = el("label", {}, text);
  label.append(field);
  return label;
}

function ackForm(item, line, id, button) {
  state.acking = id;
  button.hidden = true;
  const cause = el("input", { name: "cause", maxlength: 500, required: "", "data-testid": "ack-cause" });
  const action = el("textarea", { name: "corrective_action", maxlength: 1000, required: "", rows: 2,
                                  "data-testid": "ack-action" });
  const error = el("span", { class: "error", "data-testid": "ack-error" });
  const cancel = el("button", { type: "button" }, "Cancel");
  const save = el("button", { type: "submit", "data-testid": "ack-submit" }, "Save");
  const form = el("form", { class: "ack-form", "data-testid": "ack-form" });
  form.append(labelled("Cause ", cause), labelled("Corrective action ", action),
              save, cancel, error);
  const close = () => { state.acking = null; refreshNow(); };
  cancel.addEventListener("click", close);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true; // one acknowledgement per click
    try {
      await postJSON(`/api/spc/${encodeURIComponent(line)}/signals/ack`,
                     { signal_id: id, cause: cause.value, corrective_action: action.value });
      close();
    } catch (e) {
      error.textContent = e.detail || e.message; // e.g. 409: who acknowledged it meanwhile
      save.disabled = false;
    }
  });
  item.append(form);
  cause.focus();
}

function signalItem(spc, s, acks) {
  const id = s.signal_id;
  const item = el("li", { "data-testid": "signal", "data-signal-id": id }, `#${s.sample_index} ${s.rule}: ${s.detail}`);
  const ack = acks.get(id);
  if (ack) {
    item.append(el("div", { class: "ack", "data-testid": "ack", title: `corrective action: ${ack.corrective_action}` },
                   `acknowledged by ${ack.acknowledged_by}: ${ack.cause}`));
  } else if (state.canAck) {
    const button = el("button", { type: "button", class: "ack-button", "data-testid": "ack-button" }, "Acknowledge");
    button.addEventListener("click", () => { if (state.acking === null) ackForm(item, spc.line_id, id, button); });
    item.append(button);
  }
  return item;
}

// A small chart of the EWMA or the CUSUM (in sigmas) under the individuals chart, on the same x axis.
function memoryChart(points, x, testid, title, lines, bands) {
  const width = 800, height = 90, top = 6, bottom = 6;
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "memory",
                              "data-testid": testid });
  const values = [0, ...lines.flatMap((l) => points.map(l.value)), ...bands.flatMap((b) => points.flatMap((p) => [b(p), -b(p)]))];
  const lo = Math.min(...values), hi = Math.max(...values, lo + 1);
  const y = (value) => top + (1 - (value - lo) / (hi - lo)) * (height - top - bottom);
  const path = (value) => points.map((p) => `${x(p.sample_index)},${y(value(p))}`).join(" ");
  for (const band of bands) {
    svg.append(el("svg:polyline", { class: "limit", points: path(band) }));
    svg.append(el("svg:polyline", { class: "limit", points: path((p) => -band(p)) }));
  }
  for (const line of lines) svg.append(el("svg:polyline", { class: line.cls, points: path(line.value) }));
  svg.append(el("svg:text", { x: 2, y: 14, class: "axis" }, title));
  return svg;
}

function chart(spc, acks) {
  const box = el("div", { class: "chart", "data-testid": "chart", "data-product-type": spc.product_type });
  const phase = (spc.model_version ? `  model ${spc.model_version} from #${spc.phase_start}` : "") +
                (spc.rebased_at !== null ? `, re-based at #${spc.rebased_at}` : "");
  box.append(el("strong", {}, `${spc.line_id} · ${spc.product_type}`),
             el("span", { "data-testid": "limits" }, spc.limits_fixed
               ? `  CL ${spc.center_line.toFixed(2)}  UCL ${spc.upper_control_limit.toFixed(2)}  ` +
                 `LCL ${spc.lower_control_limit.toFixed(2)}  (${spc.sample_count} scores)${phase}`
               : `  collecting the baseline: ${spc.sample_count} scores so far${phase}`));
  const width = 800, height = 260, left = 48, right = 12, top = 10, bottom = 22;
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  const points = spc.points;
  const values = points.map((p) => p.score);
  if (spc.limits_fixed) values.push(spc.upper_control_limit, spc.lower_control_limit);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const first = points.length ? points[0].sample_index : 0;
  const span = Math.max(1, (points.length ? points[points.length - 1].sample_index : 1) - first);
  const x = (index) => left + ((index - first) / span) * (width - left - right);
  const y = (value) => top + (1 - (value - lo) / (hi - lo)) * (height - top - bottom);
  const hline = (value, cls, label) => {
    svg.append(el("svg:line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: cls,
                                "data-testid": label }));
    svg.append(el("svg:text", { x: 2, y: y(value) + 4, class: "axis" }, `${label} ${value.toFixed(2)}`));
  };
  if (spc.limits_fixed) {
    hline(spc.upper_control_limit, "limit", "UCL");
    hline(spc.center_line, "center", "CL");
    hline(spc.lower_control_limit, "limit", "LCL");
  }
  const signalled = new Set(spc.signals.filter((s) => s.rule !== "pchart").map((s) => s.sample_index));
  svg.append(el("svg:polyline", { class: "series", points: points.map((p) => `${x(p.sample_index)},${y(p.score)}`)
    .join(" ") }));
  for (const p of points) {
    const cls = signalled.has(p.sample_index) ? "point signal" : p.monitored ? "point" : "point baseline";
    const dot = el("svg:circle", { cx: x(p.sample_index), cy: y(p.score), r: 2.5, class: cls,
                                   "data-testid": signalled.has(p.sample_index) ? "signal-point" : "point" });
    dot.append(el("svg:title", {}, `#${p.sample_index} ${p.score.toFixed(3)} ${new Date(p.time).toLocaleString()}`));
    svg.append(dot);
  }
  box.append(svg);
  const monitored = points.filter((p) => p.ewma !== null);
  if (monitored.length) {
    box.append(
      memoryChart(monitored, x, "ewma-chart", "EWMA (sigma) and its limits",
                  [{ cls: "series", value: (p) => p.ewma }], [(p) => p.ewma_limit]),
      memoryChart(monitored, x, "cusum-chart", `CUSUM C+ / -C- (sigma), h = ${spc.cusum_h}`,
                  [{ cls: "series", value: (p) => p.cusum_upper }, { cls: "series lower", value: (p) => -p.cusum_lower }],
                  [() => spc.cusum_h]));
  }
  if (spc.signals.length) {
    const list = el("ul", { class: "signals", "data-testid": "signals" });
    for (const s of spc.signals.slice(-5).reverse()) {
      list.append(signalItem(spc, s, acks));
    }
    box.append(list);
  }
  return box;
}

// One banner per product type whose good parts drifted away from the model's reference (GET .../drift).
function renderDrift(lineDrift) {
  const drifting = lineDrift ? lineDrift.products.filter((p) => p.status === "drifting") : [];
  $("drift").replaceChildren(...drifting.map((p) => {
    const last = p.events[p.events.length - 1];
    const what = last ? `${last.quantities.join(", ")} (PSI ${last.psi.toFixed(2)}, p ${last.p_value.toExponential(1)})` : "";
    return el("div", { class: "banner", "data-testid": "drift-banner", "data-product-type": p.product_type },
      `Drift on ${p.product_type} (model ${p.model_version}) since ${new Date(p.drifting_since).toLocaleString()}: ` +
      `${what}. Recommended: ${p.recommendation}.`);
  }));
}

function renderCharts(lineSpc, acknowledgements) {
  const charts = lineSpc ? lineSpc.charts : [];
  const acks = new Map(acknowledgements.map((a) => [a.signal_id, a]));
  $("charts").replaceChildren(...(charts.length ? charts.map((c) => chart(c, acks)) : [el("p", { class: "empty" },
    "No inspections yet.")]));
}

async function refresh() {
  state.busy = true;
  try {
    renderLines(await getJSON("/api/lines"));
    const shown = state.line;
    if (shown !== null) {
      const line = encodeURIComponent(shown);
      const none = (e) => { if (e.status === 404) return null; throw e; };
      const [recent, spc, acks, drift] = await Promise.all([
        getJSON(`/api/inspections?line=${line}&limit=${RECENT}`),
        getJSON(`/api/lines/${line}/spc`).catch(none),
        getJSON(`/api/spc/${line}/acknowledgements?limit=${ACKS}`),
        getJSON(`/api/lines/${line}/drift`).catch(none),
      ]);
      if (shown === state.line) { // the user may have picked another line meanwhile
        renderInspections(recent);
        renderDrift(drift);
        if (state.acking === null) renderCharts(spc, acks); // else the open form would be wiped
      }
    }
    $("status").className = "";
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = `update failed: ${error.message}`;
  } finally {
    state.busy = false;
    state.timer = setTimeout(refresh, REFRESH_MS);
  }
}

function refreshNow() {
  if (!state.busy) { // else the refresh in flight schedules the next one
    clearTimeout(state.timer);
    refresh();
  }
}

$("line").addEventListener("change", (event) => {
  state.line = event.target.value;
  state.acking = null; // an open form was for the other line's chart
  $("inspections").replaceChildren();
  refreshNow();
});
startSession(ACK_ROLES).then((can) => { state.canAck = can; }).finally(refresh);
