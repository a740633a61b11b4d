// Metric charts drawn with uPlot from the server's downsampled series (max_points=1000).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { num, type Series } from "./api";
import { h } from "./dom";

export const PALETTE = ["#2f6fd0", "#d0572f", "#2a9d58", "#9b4dca", "#c8961e", "#1c9aa8", "#d0388a", "#6b7a8f"];

/** The page's charts, by key, for tests and the browser console: window.striate.charts. */
export const charts: Record<string, uPlot> = {};
(window as unknown as { striate: unknown }).striate = { charts, timings: {} as Record<string, number> };

export function timings(): Record<string, number> {
  return (window as unknown as { striate: { timings: Record<string, number> } }).striate.timings;
}

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

/** Align several series on their union of steps (uPlot's x axis is shared); missing points are gaps. */
export function align(series: Series[]): uPlot.AlignedData {
  const steps = Array.from(new Set(series.flatMap((s) => s.steps))).sort((a, b) => a - b);
  const index = new Map(steps.map((step, i) => [step, i]));
  const columns = series.map((s) => {
    const column: (number | null)[] = new Array(steps.length).fill(null);
    s.steps.forEach((step, i) => {
      const value = num(s.values[i]);
      column[index.get(step)!] = value !== null && isFinite(value) ? value : null;
    });
    return column;
  });
  return [steps, ...columns] as uPlot.AlignedData;
}

export interface ChartOptions {
  id: string;
  title: string;
  labels: string[];
  series: Series[];
}

/** A figure holding a uPlot chart; data-points says how many points each series drew. */
export function lineChart(options: ChartOptions): HTMLElement {
  const data = align(options.series);
  const counts = options.series.map((s) => s.steps.length);
  const figure = h(
    "figure",
    {
      class: "chart",
      "data-key": options.id,
      "data-points": counts.join(","),
      "data-series": options.series.length,
      role: "group",
      "aria-label": `${options.title}: ${options.series.length} series, ${counts.join(", ")} points`,
    },
    h("figcaption", {}, options.title),
  );
  const holder = h("div", { class: "plot" });
  figure.append(holder);
  const axis = { stroke: cssVar("--fg-muted"), grid: { stroke: cssVar("--grid"), width: 1 }, ticks: { stroke: cssVar("--grid") } };
  const make = () => {
    const width = Math.max(240, holder.clientWidth || 600);
    const plot = new uPlot(
      {
        width,
        height: 240,
        scales: { x: { time: false } },
        axes: [{ ...axis, label: "step" }, axis],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        series: [
          { label: "step" },
          ...options.labels.map((label, i) => ({
            label,
            stroke: PALETTE[i % PALETTE.length],
            width: 1.5,
            spanGaps: true,
            points: { show: false },
          })),
        ],
      },
      data,
      holder,
    );
    charts[options.id] = plot;
    const observer = new ResizeObserver(() => {
      const w = Math.max(240, holder.clientWidth);
      if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: 240 });
    });
    observer.observe(holder);
  };
  // Drawn once the figure is in the document (it needs its width).
  const whenAttached = () => (figure.isConnected ? make() : requestAnimationFrame(whenAttached));
  requestAnimationFrame(whenAttached);
  return figure;
}

export function clearCharts(): void {
  for (const key of Object.keys(charts)) {
    charts[key].destroy();
    delete charts[key];
  }
}
