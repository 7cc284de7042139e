// The review page: a line's recent verdicts (input frame with its regions, heatmap overlay, score against
// threshold) with their labels; operators and admins label them. Below the header, the threshold proposal
// the labels support for each product shown. No polling: a refresh would wipe a label being written.
"use strict";

const RECENT = 24;
const LABEL_ROLES = ["operator", "admin"];
const KINDS = { // the kinds that answer each verdict (the gateway refuses the others)
  defect: [["confirmed_defect", "Confirmed defect"], ["false_alarm", "False alarm"]],
  pass: [["confirmed_good", "Confirmed good"], ["missed_defect", "Missed defect"]],
};
const DEFECTIVE = new Set(["confirmed_defect", "missed_defect"]);
const KIND_NAMES = Object.fromEntries([...KINDS.defect, ...KINDS.pass]);
const state = { line: null, canLabel: false, inspections: [], labels: new Map() };

const fixed = (value, digits = 3) => (value === null || value === undefined ? "–" : value.toFixed(digits));

function frameView(inspection) {
  const box = el("div", { class: "frame-box" });
  const image = el("img", { src: inspection.image_url, alt: "input frame", "data-testid": "frame-image" });
  const boxes = el("svg:svg", { class: "boxes", preserveAspectRatio: "none", "data-testid": "region-boxes" });
  // Regions are in the frame's pixels: the overlay takes the image's own size once it is known.
  image.addEventListener("load", () => {
    boxes.setAttribute("viewBox", `0 0 ${image.naturalWidth} ${image.naturalHeight}`);
    boxes.replaceChildren(...inspection.regions.map((r) => el("svg:rect", {
      x: r.x, y: r.y, width: r.width, height: r.height, "data-testid": "region-box",
    })));
  });
  box.append(image, boxes);
  const figure = el("figure");
  figure.append(box, el("figcaption", {}, "input"));
  return figure;
}

function heatmapView(inspection) {
  const figure = el("figure");
  const none = inspection.verdict === "not_inspected" ? "no heatmap (not inspected)" : "no heatmap (passed)";
  figure.append(inspection.heatmap_url
    ? el("img", { src: inspection.heatmap_url, alt: "heatmap overlay", "data-testid": "heatmap" })
    : el("div", { class: "nomap" }, none));
  figure.append(el("figcaption", {}, "heatmap and regions"));
  return figure;
}

// The model's picture of a good part here: computed by Triton on request (seconds on a CPU), so on a click.
function reconstructionView(inspection) {
  const figure = el("figure", { "data-testid": "reconstruction" });
  const caption = el("figcaption", {}, "what a good part looks like here");
  if (!inspection.reconstruction_url) {
    figure.append(el("div", { class: "nomap" }, "no reconstruction (not inspected)"), caption);
    return figure;
  }
  const button = el("button", { type: "button", class: "nomap", "data-testid": "show-reconstruction" },
                    "Show the model's reconstruction");
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = "reconstructing…";
    try {
      const response = await fetch(inspection.reconstruction_url, { credentials: "same-origin" });
      if (!response.ok) throw new Error((await response.json()).detail || response.statusText);
      const image = el("img", { src: URL.createObjectURL(await response.blob()), alt: "reconstruction",
                                "data-testid": "reconstruction-image" });
      button.replaceWith(image);
    } catch (e) {
      button.disabled = false; // e.g. 429 while others are computed: the inspector may try again
      button.textContent = "Show the model's reconstruction";
      caption.replaceChildren(el("span", { class: "error", role: "alert", "data-testid": "reconstruction-error" },
                                 e.message));
    }
  });
  figure.append(button, caption);
  return figure;
}

function labelView(label) {
  if (!label) return el("div", { class: "current-label", "data-testid": "label" }, "not labelled");
  const what = KIND_NAMES[label.kind] + (label.defect_class ? ` · ${label.defect_class}` : "");
  const node = el("div", { class: `current-label ${label.defective ? "defective" : "good"}`, "data-testid": "label",
                           "data-kind": label.kind },
                  `${what} — by ${label.labelled_by}, ${new Date(label.labelled_at).toLocaleString()}`);
  if (label.note) node.append(el("div", { class: "meta", "data-testid": "label-note" }, label.note));
  return node;
}

function labelForm(inspection, label) {
  const form = el("form", { class: "label-form", "data-testid": "label-form" });
  const defectClass = el("input", { name: "defect_class", list: "classes", maxlength: 40, pattern: "[a-z0-9_]{1,40}",
                                    placeholder: "defect class (for a defect): scratch, missing_part…",
                                    "data-testid": "defect-class" });
  const note = el("textarea", { name: "note", maxlength: 1000, rows: 2, placeholder: "note",
                                "data-testid": "label-note-input" });
  defectClass.value = label?.defect_class || "";
  note.value = label?.note || "";
  const error = el("span", { class: "error", role: "alert", "data-testid": "label-error" });
  form.append(defectClass, note);
  for (const [kind, text] of KINDS[inspection.verdict]) {
    const button = el("button", { type: "button", "data-testid": `label-${kind}` }, text);
    button.addEventListener("click", async () => {
      if (DEFECTIVE.has(kind) && !defectClass.reportValidity()) return;
      for (const b of form.querySelectorAll("button")) b.disabled = true; // one label per click
      error.textContent = "";
      try {
        const body = { kind, note: note.value, defect_class: DEFECTIVE.has(kind) ? defectClass.value || null : null };
        const saved = await postJSON(`/api/inspection/${encodeURIComponent(inspection.inspection_id)}/label`, body, "PUT");
        state.labels.set(inspection.inspection_id, saved);
        form.closest("article").replaceWith(card(inspection)); // the other cards keep what is typed in them
        renderClasses();
        loadProposals();
      } catch (e) {
        error.textContent = e.detail || e.message; // e.g. 422: the class is not a token
        for (const b of form.querySelectorAll("button")) b.disabled = false;
      }
    });
    form.append(button);
  }
  form.append(error);
  return form;
}

function card(inspection) {
  const label = state.labels.get(inspection.inspection_id);
  const node = el("article", {
    class: `card review ${inspection.verdict}`, "data-testid": "review-item",
    "data-inspection-id": inspection.inspection_id, "data-verdict": inspection.verdict,
  });
  const views = el("div", { class: "views" });
  views.append(frameView(inspection), heatmapView(inspection), reconstructionView(inspection));
  const facts = el("div", { class: "facts" });
  const relation = inspection.verdict === "defect" ? ">" : "≤";
  // A part that was not inspected has no score and no verdict to label: say why it must be checked by hand.
  const labellable = inspection.verdict in KINDS;
  facts.append(
    el("span", { class: "badge" }, inspection.verdict.replace("_", " ")),
    labellable
      ? el("span", { "data-testid": "score" },
           `  score ${fixed(inspection.score)} ${relation} threshold ${fixed(inspection.threshold)}`)
      : el("span", { "data-testid": "not-inspected-reason" },
           `  check by hand: ${inspection.not_inspected_reason || "its frame was dead-lettered"}`),
    el("div", { class: "meta" }, `${inspection.frame_id} · ${inspection.product_type} · model ` +
       `${inspection.model_version} · ${new Date(inspection.captured_at).toLocaleString()}`),
  );
  if (inspection.regions.length) {
    const list = el("ol", { class: "regions", "data-testid": "regions" });
    for (const r of inspection.regions) {
      list.append(el("li", {}, `at ${r.x},${r.y} ${r.width}×${r.height} px, ${r.area_px} px above level, ` +
                               `peak ${fixed(r.peak_score)}`));
    }
    facts.append(list);
  }
  if (labellable) facts.append(labelView(label));
  if (state.canLabel && labellable) facts.append(labelForm(inspection, label));
  node.append(views, facts);
  return node;
}

function shown(inspection) {
  const filter = $("show").value;
  if (filter === "unlabelled") return !state.labels.has(inspection.inspection_id);
  return filter === "all" || inspection.verdict === filter;
}

function render() {
  const items = state.inspections.filter(shown).map(card);
  $("inspections").replaceChildren(...(items.length ? items : [el("p", { class: "empty" }, "Nothing to show.")]));
  renderClasses();
}

function renderClasses() { // the defect classes used so far, offered as the class field's suggestions
  const classes = new Set([...state.labels.values()].map((l) => l.defect_class).filter(Boolean));
  $("classes").replaceChildren(...[...classes].sort().map((c) => el("option", { value: c })));
}

function pointRow(name, p) {
  const row = el("tr", { "data-testid": `proposal-${name}` });
  const precision = p.precision === null ? "–" : fixed(p.precision, 2);
  for (const value of [name, fixed(p.threshold, 4), fixed(p.recall, 2), fixed(p.fpr, 2), precision,
    `${p.true_positives}/${p.false_positives}/${p.false_negatives}/${p.true_negatives}`]) {
    row.append(el("td", {}, value));
  }
  return row;
}

function proposalView(p) {
  const box = el("div", { class: "proposal", "data-testid": "proposal", "data-product-type": p.product_type });
  const counts = Object.entries(p.labels).map(([kind, n]) => `${KIND_NAMES[kind]} ${n}`).join(", ");
  box.append(el("strong", {}, `${p.product_type} · model ${p.model_version ?? "–"}`), el("span", {}, `  ${counts}`));
  if (!p.enough_labels) {
    box.append(el("p", { class: "empty", "data-testid": "proposal-reason" }, p.reason));
    return box;
  }
  const table = el("table");
  const head = el("tr");
  for (const h of ["", "threshold", "recall", "FPR", "precision", "TP/FP/FN/TN"]) head.append(el("th", {}, h));
  table.append(head);
  if (p.current) table.append(pointRow("current", p.current));
  table.append(pointRow("F1-max", p.f1_max), pointRow(`recall ≥ ${p.target_recall}`, p.at_target_recall));
  box.append(table, el("p", { class: "empty" },
    `On the ${p.defective} defective and ${p.good} good labelled parts (a sample the inspectors chose).`));
  return box;
}

async function loadProposals() {
  const products = [...new Set(state.inspections.map((i) => i.product_type))].sort();
  try {
    const proposals = await Promise.all(products.map((p) =>
      getJSON(`/api/products/${encodeURIComponent(p)}/threshold-proposal`)));
    $("proposals").replaceChildren(...(proposals.length ? proposals.map(proposalView)
      : [el("p", { class: "empty" }, "No inspections on this line yet.")]));
  } catch (error) {
    $("proposals").replaceChildren(el("p", { class: "error" }, `no proposal: ${error.message}`));
  }
}

function renderLines(lines) {
  const select = $("line");
  const ids = lines.map((l) => l.line_id);
  if (state.line === null || !ids.includes(state.line)) state.line = ids[0] ?? null;
  select.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
  if (state.line !== null) select.value = state.line;
}

async function load() {
  $("status").className = "";
  $("status").textContent = "loading…";
  try {
    renderLines(await getJSON("/api/lines"));
    const line = state.line;
    state.inspections = line === null ? []
      : await getJSON(`/api/inspections?line=${encodeURIComponent(line)}&limit=${RECENT}`);
    const ids = state.inspections.map((i) => `inspection_id=${encodeURIComponent(i.inspection_id)}`).join("&");
    const labels = ids ? await getJSON(`/api/labels?${ids}&limit=${RECENT}`) : [];
    if (line !== state.line) return; // another line was picked meanwhile: its load draws
    state.labels = new Map(labels.map((l) => [l.inspection_id, l]));
    render();
    loadProposals();
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = `update failed: ${error.message}`;
  }
}

$("line").addEventListener("change", (event) => { state.line = event.target.value; load(); });
$("show").addEventListener("change", render);
$("refresh").addEventListener("click", load);
startSession(LABEL_ROLES).then((can) => { state.canLabel = can; }).finally(load);
