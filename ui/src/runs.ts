// The runs table of one project: server-side filter (the CLI's filter language), sort and paging.
import { ApiError, flatten, num, projects as listProjects, request, type Run } from "./api";
import { timings } from "./chart";
import { announce, errorBox, formatTime, formatValue, h } from "./dom";
import { go, routeHref } from "./router";

const PAGE = 100;
const PARAM_COLUMNS = 4;
const METRIC_COLUMNS = 4;

interface Column {
  label: string;
  sort: string | null; // the server's sort key (the filter language's field)
  cell: (run: Run) => Node | string;
  numeric?: boolean;
}

interface State {
  project: string;
  where: string;
  sort: string; // "" or a field, "-" first for descending
  page: number;
  ids: string[];
  selected: Set<string>;
}

function pickParams(runs: Run[]): string[] {
  const flats = runs.map((r) => flatten(r.config));
  // `model` has its own column
  const keys = Array.from(new Set(flats.flatMap((f) => Object.keys(f)))).filter((k) => k !== "model" &&
    flats.some((f) => f[k] !== undefined && (typeof f[k] !== "object" || f[k] === null)),
  );
  const varying = keys.filter((k) => new Set(flats.map((f) => JSON.stringify(f[k]))).size > 1);
  return (varying.length ? varying : keys).slice(0, PARAM_COLUMNS);
}

function pickMetrics(runs: Run[]): string[] {
  const keys = Array.from(new Set(runs.flatMap((r) => Object.keys(r.metrics ?? {})))).sort();
  const rank = (k: string) => (/acc/.test(k) ? 0 : /loss/.test(k) ? 1 : 2);
  return keys.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).slice(0, METRIC_COLUMNS);
}

/** The columns shown for a project, chosen from its first runs and remembered in this browser. */
function columnsFor(project: string, runs: Run[]): { params: string[]; metrics: string[] } {
  const storageKey = `striate.columns.${project}`;
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey) ?? "null");
    if (saved && Array.isArray(saved.params) && Array.isArray(saved.metrics)) return saved;
  } catch {
    /* a damaged entry is chosen again */
  }
  const chosen = { params: pickParams(runs), metrics: pickMetrics(runs) };
  if (runs.length) localStorage.setItem(storageKey, JSON.stringify(chosen));
  return chosen;
}

function quoteField(namespace: string, key: string, suffix = ""): string {
  return /^[A-Za-z_][A-Za-z0-9_\-/.:]*$/.test(key) ? `${namespace}.${key}${suffix}` : `${namespace}.\`${key}\`${suffix}`;
}

function statusBadge(status: string): HTMLElement {
  return h("span", { class: `badge status-${status}` }, status);
}

export async function runsPage(main: HTMLElement, project: string | null, query: URLSearchParams): Promise<void> {
  const started = performance.now();
  const projects = await listProjects();
  if (!projects.length) {
    main.replaceChildren(h("h1", {}, "Runs"), h("p", {}, "No runs yet. Train one: striate train lenet5 --data fashion-mnist"));
    return;
  }
  if (!project || !projects.some((p) => p.name === project)) {
    // the project shown last in this browser, else the one with the most runs
    const last = localStorage.getItem("striate.project");
    const busiest = projects.reduce((a, b) => (b.runs > a.runs ? b : a));
    go(routeHref("runs", projects.find((p) => p.name === last)?.name ?? busiest.name), true);
    return;
  }
  localStorage.setItem("striate.project", project);
  const state: State = {
    project,
    where: query.get("where") ?? "",
    sort: query.get("sort") ?? "",
    page: 0,
    ids: [],
    selected: new Set(),
  };

  const projectSelect = h(
    "select",
    { id: "project", name: "project" },
    projects.map((p) => h("option", { value: p.name, selected: p.name === project }, `${p.name} (${p.runs})`)),
  );
  projectSelect.addEventListener("change", () => go(routeHref("runs", projectSelect.value)));
  const filterInput = h("input", {
    id: "filter",
    name: "where",
    type: "search",
    value: state.where,
    placeholder: "params.lr > 0.01 and metrics.test/acc1.max >= 0.9",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "filter-help",
  });
  const errorSlot = h("div", { id: "filter-error" });
  const count = h("p", { class: "count", id: "run-count", "aria-live": "polite" });
  const compareButton = h("button", { type: "button", id: "compare", disabled: true }, "Compare selected");
  const table = h("table", { class: "runs", id: "runs-table" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of runs" });
  const form = h(
    "form",
    { class: "controls", role: "search" },
    h("div", { class: "field" }, h("label", { for: "project" }, "Project"), projectSelect),
    h(
      "div",
      { class: "field grow" },
      h("label", { for: "filter" }, "Filter"),
      filterInput,
      h("small", { id: "filter-help", class: "muted" }, "The CLI's filter language (striate runs --where): fields params.*, metrics.*, tags, status, name, model, created, duration."),
    ),
    h("div", { class: "field end" }, h("button", { type: "submit" }, "Apply")),
  );
  main.replaceChildren(
    h("h1", {}, `Runs in ${project}`),
    form,
    errorSlot,
    h("div", { class: "toolbar" }, count, compareButton),
    h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Runs table" }, table),
    pager,
  );

  compareButton.addEventListener("click", () => go(routeHref("compare", Array.from(state.selected).join(","))));
  const updateCompare = () => {
    compareButton.disabled = state.selected.size < 2;
    compareButton.textContent = `Compare selected (${state.selected.size})`;
  };
  updateCompare();

  let columns: Column[] = [];
  let columnsChosen = false;
  const buildColumns = (runs: Run[]) => {
    const chosen = columnsFor(project, runs);
    columns = [
      { label: "Name", sort: "name", cell: (r) => h("a", { href: routeHref("run", r.id) }, r.name || r.id.slice(0, 8)) },
      { label: "Status", sort: "status", cell: (r) => statusBadge(r.status) },
      { label: "Model", sort: "model", cell: (r) => r.model ?? "" },
      { label: "Created", sort: "created", cell: (r) => formatTime(r.created_at) },
      ...chosen.params.map((key) => ({
        label: key,
        sort: quoteField("params", key),
        numeric: true,
        cell: (r: Run) => formatValue(flatten(r.config)[key]),
      })),
      ...chosen.metrics.map((key) => ({
        label: key,
        sort: quoteField("metrics", key, ".last"),
        numeric: true,
        cell: (r: Run) => formatValue(num(r.metrics?.[key]?.last)),
      })),
      { label: "Tags", sort: null, cell: (r) => r.tags.join(", ") },
    ];
  };

  const renderTable = (runs: Run[]) => {
    const [sortKey, descending] = state.sort.startsWith("-") ? [state.sort.slice(1), true] : [state.sort, false];
    const head = h(
      "tr",
      {},
      h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")),
      columns.map((column) => {
        const active = column.sort !== null && column.sort === sortKey;
        const th = h("th", {
          scope: "col",
          class: column.numeric ? "num" : undefined,
          "aria-sort": active ? (descending ? "descending" : "ascending") : column.sort ? "none" : undefined,
        });
        if (column.sort === null) {
          th.append(column.label);
        } else {
          const button = h(
            "button",
            { type: "button", class: "sort", "data-sort": column.sort, title: `Sort by ${column.label}` },
            column.label,
            h("span", { class: "arrow", "aria-hidden": "true" }, active ? (descending ? " ▼" : " ▲") : ""),
          );
          button.addEventListener("click", () => {
            state.sort = active && !descending ? `-${column.sort}` : column.sort!;
            state.page = 0;
            void load(true);
          });
          th.append(button);
        }
        return th;
      }),
    );
    const body = h(
      "tbody",
      {},
      runs.map((run) => {
        const box = h("input", {
          type: "checkbox",
          "aria-label": `Select ${run.name}`,
          checked: state.selected.has(run.id),
        });
        box.addEventListener("change", () => {
          if (box.checked) state.selected.add(run.id);
          else state.selected.delete(run.id);
          updateCompare();
        });
        return h(
          "tr",
          { "data-run": run.id },
          h("td", {}, box),
          columns.map((column) => h("td", { class: column.numeric ? "num" : undefined }, column.cell(run))),
        );
      }),
    );
    table.replaceChildren(h("caption", { class: "visually-hidden" }, `Runs in ${project}`), h("thead", {}, head), body);
  };

  const renderPager = () => {
    const pages = Math.max(1, Math.ceil(state.ids.length / PAGE));
    const previous = h("button", { type: "button", disabled: state.page === 0 }, "Previous");
    const next = h("button", { type: "button", disabled: state.page >= pages - 1 }, "Next");
    previous.addEventListener("click", () => { state.page -= 1; void load(false); });
    next.addEventListener("click", () => { state.page += 1; void load(false); });
    pager.replaceChildren(previous, h("span", {}, `Page ${state.page + 1} of ${pages}`), next);
  };

  const load = async (query: boolean) => {
    const t0 = performance.now();
    errorSlot.replaceChildren();
    if (query) {
      const params = new URLSearchParams({ project, ids_only: "true", limit: "1000000" });
      if (state.where.trim()) params.set("where", state.where.trim());
      if (state.sort) params.set("sort", state.sort);
      try {
        state.ids = (await request<{ ids: string[] }>("GET", `/runs?${params}`)).ids;
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        const box = errorBox(error, "filter-error-box");
        const column = /at column (\d+)/.exec(error.problem);
        if (column && state.where) {
          // the filter with a caret under the column the server names (1-based)
          const at = Math.max(0, Math.min(state.where.length, Number(column[1]) - 1));
          box.append(h("pre", { class: "caret", id: "filter-caret", "aria-hidden": "true" }, `${state.where}\n${" ".repeat(at)}^`));
        }
        errorSlot.replaceChildren(box);
        filterInput.setAttribute("aria-invalid", "true");
        filterInput.setAttribute("aria-errormessage", "filter-error-box");
        announce(`Error: ${error.problem}`);
        return;
      }
      filterInput.removeAttribute("aria-invalid");
      const shown = new URLSearchParams();
      if (state.where.trim()) shown.set("where", state.where.trim());
      if (state.sort) shown.set("sort", state.sort);
      history.replaceState(null, "", `${routeHref("runs", project)}${shown.toString() ? `?${shown}` : ""}`);
    }
    const slice = state.ids.slice(state.page * PAGE, (state.page + 1) * PAGE);
    const runs = slice.length ? (await request<{ runs: Run[] }>("POST", "/runs/get", { ids: slice })).runs : [];
    if (!columnsChosen) {
      buildColumns(runs);
      columnsChosen = runs.length > 0;
    }
    renderTable(runs);
    renderPager();
    count.textContent = `${state.ids.length} run${state.ids.length === 1 ? "" : "s"}${state.where.trim() ? " match the filter" : ""}`;
    timings().lastQueryMs = performance.now() - t0;
    announce(count.textContent);
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.where = filterInput.value;
    state.page = 0;
    void load(true);
  });
  await load(true);
  timings().runsPageMs = performance.now() - started;
}
