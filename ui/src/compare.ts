// Compare runs: overlaid curves of one metric, and their params side by side (differences marked).
import { flatten, request, type Run, type Series } from "./api";
import { lineChart, timings } from "./chart";
import { formatValue, h } from "./dom";
import { go, routeHref } from "./router";

const MAX_RUNS = 100;

export async function comparePage(main: HTMLElement, arg: string | null, query: URLSearchParams): Promise<void> {
  const started = performance.now();
  const ids = (arg ?? "").split(",").filter(Boolean).slice(0, MAX_RUNS);
  if (ids.length < 1) {
    main.replaceChildren(h("h1", {}, "Compare runs"), h("p", {}, "Select runs in a runs table, then press Compare selected."));
    return;
  }
  const runs = (await request<{ runs: Run[] }>("POST", "/runs/get", { ids })).runs;
  const keys = Array.from(new Set(runs.flatMap((r) => Object.keys(r.metrics ?? {})))).sort();
  const preferred = keys.find((k) => /acc/.test(k)) ?? keys[0];
  const key = query.get("metric") && keys.includes(query.get("metric")!) ? query.get("metric")! : preferred;

  const select = h("select", { id: "metric", name: "metric" }, keys.map((k) => h("option", { value: k, selected: k === key }, k)));
  select.addEventListener("change", () => go(`${routeHref("compare", ids.join(","))}?metric=${encodeURIComponent(select.value)}`));

  const flats = runs.map((r) => flatten(r.config));
  const paramKeys = Array.from(new Set(flats.flatMap((f) => Object.keys(f)))).sort();
  const differs = (k: string) => new Set(flats.map((f) => JSON.stringify(f[k] ?? null))).size > 1;
  const params = h(
    "table",
    { class: "kv compare", id: "compare-params" },
    h("caption", {}, "Params (differences marked)"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "param"), runs.map((r) => h("th", { scope: "col" }, r.name)))),
    h(
      "tbody",
      {},
      paramKeys.map((k) =>
        h("tr", { class: differs(k) ? "differs" : undefined },
          h("th", { scope: "row" }, differs(k) ? h("span", {}, k, h("span", { class: "visually-hidden" }, " (differs)")) : k),
          flats.map((f) => h("td", {}, formatValue(f[k])))),
      ),
    ),
  );
  const chartSlot = h("div", { class: "chart-grid one" });
  main.replaceChildren(h(
    "div",
    {},
    h("p", { class: "crumbs" }, runs[0] ? h("a", { href: routeHref("runs", runs[0].project) }, `← Runs in ${runs[0].project}`) : null),
    h("h1", {}, `Compare ${runs.length} runs`),
    h("ul", { class: "legend-list", id: "compared-runs" }, runs.map((r) => h("li", {}, h("a", { href: routeHref("run", r.id) }, r.name)))),
    h("div", { class: "controls" }, h("div", { class: "field" }, h("label", { for: "metric" }, "Metric"), select)),
    chartSlot,
    h("div", { class: "scroll-x", tabindex: "0", role: "region", "aria-label": "Params" }, params),
  ));
  if (key) {
    const series = await Promise.all(
      runs.map((r) =>
        r.metrics?.[key]
          ? request<Series>("GET", `/runs/${encodeURIComponent(r.id)}/metrics/${encodeURIComponent(key).replace(/%2F/g, "/")}?max_points=1000`)
          : Promise.resolve({ run: r.id, key, steps: [], times: [], values: [] } as Series),
      ),
    );
    chartSlot.append(lineChart({ id: `compare:${key}`, title: key, labels: runs.map((r) => r.name), series }));
  }
  timings().comparePageMs = performance.now() - started;
}
