// Round-robin graphs (uPlot) of a node or a guest: the timeframe and the consolidation
// function are chosen above the graphs.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { useEffect, useRef, useState } from "preact/hooks";
import { usePoll } from "../lib/hooks";
import { bytes, percent } from "../lib/format";
import { ErrorText } from "./ui";

export interface Series {
  field: string;
  label: string;
}

export interface ChartSpec {
  title: string;
  series: Series[];
  unit: "percent" | "bytes" | "bytes/s" | "number";
}

function formatValue(unit: ChartSpec["unit"], v: number | null): string {
  if (v === null || v === undefined) return "-";
  switch (unit) {
    case "percent":
      return percent(v);
    case "bytes":
      return bytes(v);
    case "bytes/s":
      return `${bytes(v)}/s`;
    default:
      return v.toFixed(2);
  }
}

function Chart({ spec, rows }: { spec: ChartSpec; rows: any[] }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!ref.current) return;
    const times = rows.map((r) => r.time);
    const data: uPlot.AlignedData = [times, ...spec.series.map((s) => rows.map((r) => (r[s.field] ?? null) as number | null))];
    const colors = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6"];
    const dark = document.documentElement.dataset.theme === "dark";
    const axis = { stroke: dark ? "#bbb" : "#444", grid: { stroke: dark ? "#333" : "#e5e5e5" } };
    const plot = new uPlot(
      {
        width: Math.max(280, ref.current.clientWidth),
        height: 180,
        series: [
          {},
          ...spec.series.map((s, i) => ({
            label: s.label,
            stroke: colors[i % colors.length],
            fill: i === 0 ? colors[0] + "22" : undefined,
            value: (_u: uPlot, v: number | null) => formatValue(spec.unit, v),
          })),
        ],
        axes: [axis, { ...axis, size: 70, values: (_u: uPlot, vals: number[]) => vals.map((v) => formatValue(spec.unit, v)) }],
        scales: spec.unit === "percent" ? { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } } : {},
      },
      data,
      ref.current,
    );
    return () => plot.destroy();
  }, [rows, spec]);
  return (
    <figure class="chart">
      <figcaption>{spec.title}</figcaption>
      <div ref={ref} />
    </figure>
  );
}

export function RrdCharts({ path, charts }: { path: string; charts: ChartSpec[] }) {
  const [timeframe, setTimeframe] = useState("hour");
  const [cf, setCf] = useState("AVERAGE");
  const rrd = usePoll<any[]>(path, 10000, { timeframe, cf });
  return (
    <section class="rrd">
      <div class="toolbar">
        <select aria-label="Timeframe" value={timeframe} onChange={(e) => setTimeframe((e.target as HTMLSelectElement).value)}>
          {["hour", "day", "week", "month", "year"].map((t) => <option value={t}>{t}</option>)}
        </select>
        <select aria-label="Consolidation" value={cf} onChange={(e) => setCf((e.target as HTMLSelectElement).value)}>
          <option value="AVERAGE">average</option>
          <option value="MAX">maximum</option>
        </select>
      </div>
      <ErrorText error={rrd.error} />
      <div class="charts">{rrd.data && charts.map((c) => <Chart spec={c} rows={rrd.data!} />)}</div>
    </section>
  );
}
