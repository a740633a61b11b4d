// One run: status, config, summary metrics, metric charts, Stop, tags.
import { ApiError, flatten, num, projects as listProjects, request, type Run, type Series } from "./api";
import { lineChart, timings } from "./chart";
import { announce, errorBox, formatDuration, formatTime, formatValue, h } from "./dom";
import { routeHref } from "./router";

const MAX_CHARTS = 24;

function keyValueTable(caption: string, rows: [string, unknown][], id: string): HTMLElement {
  return h(
    "table",
    { class: "kv", id },
    h("caption", {}, caption),
    h("tbody", {}, rows.map(([key, value]) => h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, formatValue(value))))),
  );
}

function metricsTable(run: Run): HTMLElement {
  const keys = Object.keys(run.metrics ?? {}).sort();
  return h(
    "table",
    { class: "kv metrics", id: "metrics-table" },
    h("caption", {}, "Metrics"),
    h("thead", {}, h("tr", {}, ["key", "last", "min", "max", "points"].map((c, i) => h("th", { scope: "col", class: i ? "num" : undefined }, c)))),
    h(
      "tbody",
      {},
      keys.map((key) => {
        const m = run.metrics[key];
        return h(
          "tr",
          {},
          h("th", { scope: "row" }, key),
          [num(m.last), num(m.min), num(m.max), m.count].map((v) => h("td", { class: "num" }, formatValue(v))),
        );
      }),
    ),
  );
}

export async function runPage(main: HTMLElement, ref: string): Promise<void> {
  const started = performance.now();
  const [run, projects] = await Promise.all([
    request<Run>("GET", `/runs/${encodeURIComponent(ref)}`),
    listProjects(),
  ]);
  const role = projects.find((p) => p.name === run.project)?.role ?? "viewer";
  const canEdit = role === "editor" || role === "owner";
  const path = `/runs/${encodeURIComponent(run.id)}`;
  const statusText = h("span", { class: `badge status-${run.status}`, id: "run-status" }, run.status);
  const actionSlot = h("div", { class: "actions", id: "run-actions" });
  const messageSlot = h("div", { id: "run-message" });

  const renderStop = (current: Run) => {
    actionSlot.replaceChildren();
    if (current.status !== "running" || !canEdit) return;
    if (current.stop_requested_at) {
      actionSlot.append(h("p", { id: "stop-requested" }, `Stop requested at ${formatTime(current.stop_requested_at)}: the training ends after its current step.`));
      return;
    }
    const button = h("button", { type: "button", id: "stop", class: "danger" }, "Stop run");
    button.addEventListener("click", async () => {
      if (!confirm(`Stop run ${current.name}? It ends after its current step, with a checkpoint to resume from.`)) return;
      button.disabled = true;
      try {
        const answer = await request<{ stop_requested_at: number }>("POST", `${path}/stop`);
        renderStop({ ...current, stop_requested_at: answer.stop_requested_at });
        announce("Stop requested");
      } catch (error) {
        button.disabled = false;
        messageSlot.replaceChildren(errorBox(error));
      }
    });
    actionSlot.append(button);
  };
  renderStop(run);

  // Tags: remove with a button each, add with a small form.
  const tagList = h("ul", { class: "tags", id: "tags", "aria-label": "Tags" });
  const renderTags = (tags: string[]) => {
    tagList.replaceChildren(
      ...tags.map((tag) => {
        if (!canEdit) return h("li", { class: "tag" }, h("span", {}, tag));
        const remove = h("button", { type: "button", class: "tag-remove", "aria-label": `Remove tag ${tag}` }, "×");
        remove.addEventListener("click", () => void changeTags([], [tag]));
        return h("li", { class: "tag" }, h("span", {}, tag), remove);
      }),
    );
    if (!tags.length) tagList.append(h("li", { class: "muted" }, "no tags"));
  };
  const changeTags = async (add: string[], remove: string[]) => {
    try {
      const answer = await request<{ tags: string[] }>("POST", `${path}/tags`, { add, remove });
      renderTags(answer.tags);
      messageSlot.replaceChildren();
      announce(`Tags: ${answer.tags.join(", ") || "none"}`);
    } catch (error) {
      messageSlot.replaceChildren(errorBox(error));
    }
  };
  renderTags(run.tags);
  const tagInput = h("input", { id: "new-tag", name: "tag", autocomplete: "off", maxlength: 200 });
  const tagForm = h(
    "form",
    { class: "inline", id: "tag-form" },
    h("label", { for: "new-tag" }, "Add tag"),
    tagInput,
    h("button", { type: "submit" }, "Add"),
  );
  tagForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const tag = tagInput.value.trim();
    if (tag) void changeTags([tag], []).then(() => (tagInput.value = ""));
  });

  const duration = (run.ended_at ?? run.heartbeat_at) - run.created_at;
  const facts: [string, unknown][] = [
    ["id", run.id],
    ["project", run.project],
    ["model", run.model ?? ""],
    ["created", formatTime(run.created_at)],
    ["duration", formatDuration(duration)],
  ];
  if (run.ended_at) facts.push(["ended", formatTime(run.ended_at)]);
  const charts = h("section", { class: "charts", id: "charts", "aria-labelledby": "charts-h" }, h("h2", { id: "charts-h" }, "Metric charts"));
  main.replaceChildren(h(
    "div",
    {},
    h("p", { class: "crumbs" }, h("a", { href: routeHref("runs", run.project) }, `← Runs in ${run.project}`)),
    h("h1", {}, run.name || run.id, " ", statusText),
    messageSlot,
    run.error ? h("div", { class: "error", role: "note" }, h("strong", {}, "Error: "), run.error) : null,
    actionSlot,
    canEdit ? null : h("p", { class: "note", id: "read-only" }, `Read-only: your role in project ${run.project} is ${role}.`),
    h("section", { class: "tags-section", "aria-labelledby": "tags-h" }, h("h2", { id: "tags-h" }, "Tags"), tagList,
      canEdit ? tagForm : null),
    h(
      "div",
      { class: "columns" },
      keyValueTable("Run", facts, "facts-table"),
      keyValueTable("Summary", Object.entries(run.summary ?? {}), "summary-table"),
    ),
    h("div", { class: "scroll-x", tabindex: "0", role: "region", "aria-label": "Metrics" }, metricsTable(run)),
    charts,
    h("section", { "aria-labelledby": "config-h" }, h("h2", { id: "config-h" }, "Config"),
      keyValueTable("Config (flattened)", Object.entries(flatten(run.config)), "config-table")),
  ));

  const keys = Object.keys(run.metrics ?? {}).sort().slice(0, MAX_CHARTS);
  if (!keys.length) charts.append(h("p", { class: "muted" }, "No metrics recorded yet."));
  const grid = h("div", { class: "chart-grid" });
  charts.append(grid);
  await Promise.all(
    keys.map(async (key) => {
      try {
        const series = await request<Series>("GET", `${path}/metrics/${encodeURIComponent(key).replace(/%2F/g, "/")}?max_points=1000`);
        grid.append(lineChart({ id: key, title: key, labels: [key], series: [series] }));
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        grid.append(errorBox(error));
      }
    }),
  );
  // Charts in key order, whatever order their series arrived in.
  Array.from(grid.children)
    .sort((a, b) => (a.getAttribute("data-key") ?? "").localeCompare(b.getAttribute("data-key") ?? ""))
    .forEach((child) => grid.append(child));
  timings().runPageMs = performance.now() - started;
}
