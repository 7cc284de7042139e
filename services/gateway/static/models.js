// The models page: each product's model versions and their stages, the open canaries, each shadow version's
// trial against production on the same live frames, and the retraining jobs. Admins promote, roll back,
// archive, start and stop canaries, start and cancel retraining (the gateway refuses anyone else anyway).
// Jobs are polled while one is queued or running; the rest reloads on Refresh and after each action.
"use strict";

const CHANGE_ROLES = ["admin"];
const NEXT = { candidate: "shadow", shadow: "production" };
const ACTIVE_JOBS = new Set(["queued", "running"]);
const JOBS_POLL_MS = 3000;
const JOBS_LIMIT = 200; // the newest jobs of every product, of which each product shows its JOBS_SHOWN
const JOBS_SHOWN = 5;
const RECOMMENDATIONS = { promote: "Promote", reject: "Reject", collect: "Collect more frames" };
// jobLists: product → the element its jobs are drawn in (redrawn alone when the jobs are polled).
const state = { canChange: false, jobsTimer: null, activeJobs: new Set(), jobLists: new Map() };

const percent = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)} %`);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const api = (...parts) => `/api/${parts.map(encodeURIComponent).join("/")}`;

function say(text, kind) { // the message area: what an action did, or why the gateway refused it
  const box = $("message");
  box.className = kind;
  box.textContent = text;
  box.hidden = false;
}

// One lifecycle action: asks ``question`` first (when given), posts, says what happened and reloads;
// a refusal (409 naming why, 403, 422 ...) is shown as the gateway worded it.
async function act(button, question, url, body, done) {
  if (question && !window.confirm(question)) return;
  button.disabled = true;
  try {
    say(done(await postJSON(url, body)), "ok");
    await load();
  } catch (error) {
    say(error.status ? `refused (${error.status}): ${error.detail || error.message}` : error.message, "error");
    button.disabled = false;
  }
}

function button(text, testid, onClick) {
  const node = el("button", { type: "button", "data-testid": testid }, text);
  node.addEventListener("click", () => onClick(node));
  return node;
}

function canaryForm(v) {
  const form = el("form", { class: "canary-form", "data-testid": "canary-form" });
  const line = el("input", { name: "line", list: "lines", required: "", maxlength: 64, placeholder: "line",
                             "data-testid": "canary-line" });
  const share = el("input", { name: "share", type: "number", min: 0.01, max: 0.5, step: 0.01, required: "",
                              title: "share of the line's frames the candidate judges", "data-testid": "canary-share" });
  share.value = "0.1";
  const start = el("button", { type: "submit", "data-testid": "start-canary" }, "Start canary");
  form.append(line, share, start);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const question = `Let ${v.product_type} version ${v.version} judge ${percent(Number(share.value))} of line ` +
                     `${line.value}'s frames?`;
    act(start, question, `${api("models", v.product_type, v.version)}/canary`,
        { line: line.value, share: Number(share.value) },
        (c) => `version ${c.version} of ${c.product_type} judges ${percent(c.share)} of line ${c.line_id}'s frames`);
  });
  return form;
}

function versionActions(v, production) {
  const cell = el("td", { class: "actions" });
  const next = NEXT[v.stage];
  if (next) {
    const replaces = next === "production" && production ? ` Version ${production.version} is archived.` : "";
    cell.append(button(`Promote to ${next}`, "promote", (b) => act(b,
      `Promote ${v.product_type} version ${v.version} from ${v.stage} to ${next}?${replaces}`,
      `${api("models", v.product_type, v.version)}/promote`, { to: next },
      (r) => `version ${r.version} of ${r.product_type} is now ${r.stage}`)));
    cell.append(button("Archive", "archive", (b) => act(b,
      `Archive ${v.product_type} version ${v.version} (${v.stage})? It stops being scored.`,
      `${api("models", v.product_type, v.version)}/archive`, {},
      (r) => `version ${r.version} of ${r.product_type} archived`)));
  }
  if (v.stage === "production" && v.replaced_version) {
    cell.append(button(`Roll back to ${v.replaced_version}`, "rollback", (b) => act(b,
      `Roll ${v.product_type} back: archive version ${v.version} and put ${v.replaced_version} back in production?`,
      `${api("models", v.product_type)}/rollback`, { version: v.version },
      (r) => `version ${r.version} of ${r.product_type} is production again`)));
  }
  if (v.stage === "shadow") cell.append(canaryForm(v));
  return cell;
}

function versionsTable(versions) {
  const table = el("table", { class: "versions", "data-testid": "versions" });
  const head = el("tr");
  const columns = ["version", "stage", "threshold", "parent", "replaced", "trained by", "since"];
  for (const h of state.canChange ? [...columns, ""] : columns) head.append(el("th", {}, h));
  table.append(head);
  const production = versions.find((v) => v.stage === "production");
  for (const v of versions) {
    const row = el("tr", { class: v.stage, "data-testid": "version", "data-version": v.version, "data-stage": v.stage });
    const stage = el("td");
    stage.append(el("span", { class: `stage ${v.stage}`, "data-testid": "stage" }, v.stage));
    row.append(
      el("td", { title: v.data_fingerprint ? `training data ${v.data_fingerprint}` : "" }, v.version),
      stage,
      el("td", {}, v.threshold.toPrecision(4)),
      el("td", {}, v.parent_version ?? "–"),
      el("td", {}, v.replaced_version ?? "–"),
      el("td", {}, v.trained_by ?? "–"),
      el("td", { title: `registered ${when(v.created_at)}` }, when(v.stage_changed_at ?? v.created_at)),
    );
    if (state.canChange) row.append(versionActions(v, production));
    table.append(row);
  }
  return table;
}

function canariesView(canaries) {
  const list = el("ul", { class: "canaries", "data-testid": "canaries" });
  for (const c of canaries) {
    const item = el("li", { "data-testid": "canary", "data-line": c.line_id },
      `line ${c.line_id}: version ${c.version} judges ${percent(c.share)} of its frames since ${when(c.started_at)} ` +
      `(started by ${c.started_by}; rolled back by itself when its alarm rate exceeds production's by more than ` +
      `${percent(c.max_excess_alarm_rate)} after ${c.min_frames} frames)`);
    if (state.canChange) {
      item.append(button("Stop", "stop-canary", (b) => act(b, null,
        `${api("models", c.product_type, "canaries", c.line_id)}/stop`, {},
        (r) => `canary of version ${r.version} on line ${r.line_id} stopped: production judges all its frames`)));
    }
    list.append(item);
  }
  return list;
}

// Both versions' score / threshold distributions on the same frames, overlaid, the threshold (1) dashed.
function histogram(c) {
  const width = 600, height = 170, left = 40, right = 12, top = 20, bottom = 20;
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, class: "histogram", "data-testid": "histogram" });
  const edges = c.histogram_edges, lo = edges[0], hi = edges[edges.length - 1];
  const peak = Math.max(1, ...c.candidate_histogram, ...c.production_histogram);
  const x = (value) => left + ((value - lo) / (hi - lo)) * (width - left - right);
  const y = (count) => top + (1 - count / peak) * (height - top - bottom);
  const series = [["production", c.production_histogram, "production"],
                  ["candidate", c.candidate_histogram, `candidate ${c.candidate}`]];
  for (const [cls, counts, name] of series) {
    counts.forEach((count, i) => {
      if (!count) return;
      const upper = i === counts.length - 1 ? "∞)" : `${edges[i + 1].toFixed(1)})`;
      const bar = el("svg:rect", { class: `bar ${cls}`, x: x(edges[i]), y: y(count), width: x(edges[i + 1]) - x(edges[i]),
                                   height: y(0) - y(count), "data-testid": `bar-${cls}` });
      bar.append(el("svg:title", {}, `${name}: ${count} frames in [${edges[i].toFixed(1)}, ${upper}`));
      svg.append(bar);
    });
  }
  svg.append(el("svg:line", { class: "axis-line", x1: left, x2: width - right, y1: y(0), y2: y(0) }));
  for (let tick = Math.ceil(lo); tick <= hi; tick += 1) {
    svg.append(el("svg:text", { x: x(tick), y: height - 4, class: "axis", "text-anchor": "middle" },
                  tick === hi ? `${tick}+` : `${tick}`));
  }
  svg.append(el("svg:text", { x: left - 4, y: top + 4, class: "axis", "text-anchor": "end" }, `${peak}`));
  svg.append(el("svg:line", { class: "threshold-line", x1: x(1), x2: x(1), y1: top - 8, y2: y(0),
                              "data-testid": "threshold-line" }));
  svg.append(el("svg:text", { x: x(1) + 4, y: top - 8, class: "axis" }, "threshold"));
  series.forEach(([cls, , name], i) => {
    const at = width - right - 170 + i * 85;
    svg.append(el("svg:rect", { class: `bar ${cls}`, x: at, y: 2, width: 10, height: 10 }),
               el("svg:text", { x: at + 14, y: 11, class: "axis" }, name));
  });
  return svg;
}

function trialTable(c) {
  const table = el("table", { class: "trial-table", "data-testid": "trial-table" });
  const head = el("tr");
  for (const h of ["", `candidate ${c.candidate}`, "production"]) head.append(el("th", {}, h));
  table.append(head);
  const rows = [
    ["alarm rate", "alarms", percent(c.alarms.candidate), percent(c.alarms.production)],
    [`recall (${c.candidate_labelled.defective} labelled defective)`, "recall",
     percent(c.candidate_labelled.recall), percent(c.production_labelled.recall)],
    [`FPR (${c.candidate_labelled.good} labelled good)`, "fpr",
     percent(c.candidate_labelled.false_positive_rate), percent(c.production_labelled.false_positive_rate)],
  ];
  for (const [name, testid, candidate, production] of rows) {
    const row = el("tr", { "data-testid": `trial-${testid}` });
    row.append(el("td", {}, name), el("td", {}, candidate), el("td", {}, production));
    table.append(row);
  }
  return table;
}

function comparisonView(v, c) {
  const box = el("div", { class: "comparison", "data-testid": "comparison", "data-version": v.version });
  const against = c instanceof Error ? "" : ` against production ${c.production_versions.join(", ") || "(no frames yet)"}`;
  box.append(el("strong", {}, `Trial of version ${v.version}${against}`));
  if (c instanceof Error) {
    box.append(el("p", { class: "error" }, `no comparison: ${c.detail || c.message}`));
    return box;
  }
  const advice = el("div", { class: `recommendation ${c.recommendation}`, "data-testid": "recommendation",
                             "data-recommendation": c.recommendation });
  advice.append(el("strong", {}, `${RECOMMENDATIONS[c.recommendation]}: `),
                el("span", { "data-testid": "recommendation-reason" }, c.reason));
  const facts = el("div", { class: "trial-facts" });
  facts.append(el("p", { "data-testid": "trial-frames" },
    `${c.frames} paired frames (${c.canary_frames} of them judged by the candidate in a canary); ` +
    `the verdicts agree on ${percent(c.agreement)}.`), trialTable(c));
  const figure = el("figure", { class: "trial-histogram" });
  figure.append(histogram(c), el("figcaption", {}, "score / threshold of each paired frame, each version by its own " +
                                 "threshold (1, dashed); the last bin takes everything from 3 up"));
  const trial = el("div", { class: "trial" });
  trial.append(facts, figure);
  box.append(advice, trial);
  return box;
}

function jobView(job) {
  const item = el("li", { class: `job ${job.status}`, "data-testid": "job", "data-job-id": job.id,
                          "data-status": job.status });
  const progress = el("progress", { max: 1, "data-testid": "job-progress" });
  progress.value = job.progress;
  item.append(el("span", { class: "job-status", "data-testid": "job-status" }, job.status), progress,
              el("span", { "data-testid": "job-message" }, job.message));
  const result = job.result_version ? ` · registered candidate ${job.result_version}` : "";
  item.append(el("span", { class: "meta" }, `requested by ${job.requested_by}, ${when(job.requested_at)}${result}`));
  if (job.error) item.append(el("span", { class: "error", "data-testid": "job-error" }, job.error));
  if (state.canChange && ACTIVE_JOBS.has(job.status) && !job.cancel_requested) {
    item.append(button("Cancel", "cancel-job", (b) => act(b, `Cancel the retraining of ${job.product_type}?`,
      `${api("training-jobs", job.id)}/cancel`, {}, (r) => `training job of ${r.product_type}: ${r.message}`)));
  }
  return item;
}

function jobsView(product) {
  const box = el("div", { class: "jobs" });
  const head = el("h3", {}, "Retraining");
  if (state.canChange) {
    head.append(button("Retrain", "retrain", (b) => act(b,
      `Retrain ${product}? A trainer fine-tunes its production model on the recent good frames (false alarms ` +
      "included) and registers the result as a candidate.",
      api("training-jobs"), { product }, (job) => `retraining of ${job.product_type} queued`)));
  }
  const list = el("ul", { class: "job-list", "data-testid": "jobs" });
  state.jobLists.set(product, list);
  box.append(head, list);
  return box;
}

function productView(product, versions, canaries, comparisons) {
  const section = el("section", { class: "product", "data-testid": "product", "data-product-type": product });
  section.append(el("h2", {}, product), versionsTable(versions));
  if (canaries.length) section.append(el("h3", {}, "Canaries"), canariesView(canaries));
  for (const v of versions.filter((row) => row.stage === "shadow")) {
    section.append(comparisonView(v, comparisons.get(`${product}/${v.version}`)));
  }
  section.append(jobsView(product));
  return section;
}

function renderProducts(models, comparisons) {
  const products = [...new Set(models.versions.map((v) => v.product_type))].sort();
  state.jobLists = new Map();
  $("products").replaceChildren(...(products.length ? products.map((p) => productView(p,
    models.versions.filter((v) => v.product_type === p), models.canaries.filter((c) => c.product_type === p),
    comparisons)) : [el("p", { class: "empty" }, "No model versions registered.")]));
}

// Draws the jobs; polls again while one is queued or running. True when a job shown active has ended
// (a finished one registered a candidate: the versions are stale).
function showJobs(jobs) {
  const active = new Set(jobs.filter((j) => ACTIVE_JOBS.has(j.status)).map((j) => j.id));
  const ended = [...state.activeJobs].some((id) => !active.has(id));
  state.activeJobs = active;
  for (const [product, list] of state.jobLists) {
    const mine = jobs.filter((j) => j.product_type === product).slice(0, JOBS_SHOWN);
    list.replaceChildren(...(mine.length ? mine.map(jobView) : [el("li", { class: "empty" }, "No retraining yet.")]));
  }
  clearTimeout(state.jobsTimer);
  if (active.size) state.jobsTimer = setTimeout(pollJobs, JOBS_POLL_MS);
  return ended;
}

async function pollJobs() {
  try {
    if (showJobs(await getJSON(`/api/training-jobs?limit=${JOBS_LIMIT}`))) await load();
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = `update failed: ${error.message}`;
    state.jobsTimer = setTimeout(pollJobs, JOBS_POLL_MS);
  }
}

async function load() {
  $("status").className = "";
  $("status").textContent = "loading…";
  try {
    const [models, jobs, lines] = await Promise.all([
      getJSON("/api/models"), getJSON(`/api/training-jobs?limit=${JOBS_LIMIT}`), getJSON("/api/lines"),
    ]);
    const shadows = models.versions.filter((v) => v.stage === "shadow");
    const comparisons = new Map(await Promise.all(shadows.map(async (v) => [`${v.product_type}/${v.version}`,
      await getJSON(`${api("models", v.product_type, v.version)}/comparison`).catch((e) => e)])));
    $("lines").replaceChildren(...lines.map((l) => el("option", { value: l.line_id })));
    renderProducts(models, comparisons);
    showJobs(jobs);
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = `update failed: ${error.message}`;
  }
}

$("refresh").addEventListener("click", load);
startSession(CHANGE_ROLES).then((can) => { state.canChange = can; }).finally(load);
