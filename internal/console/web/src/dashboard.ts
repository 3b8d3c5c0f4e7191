// KPI dashboards, levels 1 to 3 as the seed describes them: leadership's
// strategic KPIs, managers' team KPIs, reps' own. Each card shows the value,
// its target and threshold colour, the trend and projection and a sparkline
// (uPlot), and is updated from Watch as events arrive.

import { createClient } from "@connectrpc/connect";
import uPlot from "uplot";
import { DashboardService, KpiStatus, KpiUnit, PeriodKind } from "../../../../clients/ts/src/index.js";
import type { KpiCard, KpiValue } from "../../../../clients/ts/src/index.js";
import { localized, num, t } from "./i18n.js";
import { isManagement, me, transport } from "./session.js";
import { clear, el } from "./dom.js";

let stop: AbortController | undefined;

export function leaveDashboard() {
  stop?.abort();
  stop = undefined;
}

function format(v: number | undefined, unit: KpiUnit, currency: string): string {
  if (v === undefined) return t("noValue");
  switch (unit) {
    case KpiUnit.MONEY:
      return new Intl.NumberFormat(document.documentElement.lang === "en" ? "en-GB" : "fr-FR", {
        style: "currency", currency: currency || "EUR", maximumFractionDigits: 0,
      }).format(v);
    case KpiUnit.PERCENT:
      return new Intl.NumberFormat(document.documentElement.lang === "en" ? "en-GB" : "fr-FR", {
        style: "percent", maximumFractionDigits: 1,
      }).format(v);
    case KpiUnit.DAYS:
      return num(v, 1) + (document.documentElement.lang === "en" ? " d" : " j");
    case KpiUnit.HOURS:
      return num(v, 1) + " h";
    default:
      return num(v, 1);
  }
}

const statusClass: Record<number, string> = {
  [KpiStatus.ON_TRACK]: "on-track", [KpiStatus.AT_RISK]: "at-risk", [KpiStatus.OFF_TRACK]: "off-track",
};
const statusText = { [KpiStatus.ON_TRACK]: "onTrack", [KpiStatus.AT_RISK]: "atRisk", [KpiStatus.OFF_TRACK]: "offTrack" } as const;

function card(k: KpiCard, currency: string): HTMLElement {
  const status = statusClass[k.status] ?? "no-status";
  const c = el("section", { class: `card ${status}`, "data-kpi": k.key },
    el("h2", {}, localized(k.name)),
    el("p", { class: "value" }, k.computing ? t("computing") : format(k.value, k.unit, currency)),
  );
  if (k.target) c.append(el("p", { class: "target" }, t("target", { v: format(k.target.target, k.unit, currency) })));
  if (k.projection !== undefined) c.append(el("p", { class: "projection" }, t("projection", { v: format(k.projection, k.unit, currency) })));
  if (k.status in statusText) c.append(el("p", { class: "status" }, t(statusText[k.status as keyof typeof statusText])));
  if (k.trend !== undefined && k.trend !== 0) c.append(el("span", { class: k.trend > 0 ? "trend up" : "trend down" }, k.trend > 0 ? "▲" : "▼"));
  const points = k.series.filter((p) => p.value !== undefined);
  if (points.length > 1) {
    const spark = el("div", { class: "spark" });
    c.append(spark);
    const xs = points.map((_, i) => i);
    const ys = points.map((p) => p.value ?? null);
    queueMicrotask(() => new uPlot({
      width: 220, height: 48, legend: { show: false }, cursor: { show: false },
      axes: [{ show: false }, { show: false }], scales: { x: { time: false } },
      series: [{}, { stroke: "#2b6cb0", width: 2, fill: "rgba(43,108,176,0.12)" }],
    }, [xs, ys], spark));
  }
  return c;
}

function table(head: string, rows: { name: string; values: KpiValue[] }[], cards: KpiCard[], currency: string): HTMLElement {
  const tbl = el("table", { class: "rows" });
  tbl.append(el("thead", {}, el("tr", {}, el("th", {}, head), ...cards.map((k) => el("th", {}, localized(k.name))))));
  const body = el("tbody");
  for (const r of rows) {
    const byKey = new Map(r.values.map((v) => [v.key, v]));
    body.append(el("tr", {}, el("th", {}, r.name), ...cards.map((k) => {
      const v = byKey.get(k.key);
      return el("td", { class: statusClass[v?.status ?? 0] ?? "" }, format(v?.value, k.unit, currency));
    })));
  }
  tbl.append(body);
  return tbl;
}

/** renderDashboard shows a level and keeps it live. */
export async function renderDashboard(root: HTMLElement, level: 1 | 2 | 3) {
  leaveDashboard();
  const dash = createClient(DashboardService, transport!);
  const period = PeriodKind.MONTH;
  // A manager reads their first team; HR and admins the company; a rep themselves.
  const teamId = level === 1 || !isManagement() ? "" : (me?.teamIds[0] ?? "");
  const nav = el("nav", { class: "levels" },
    el("a", { href: "#/dashboard/1", class: level === 1 ? "active" : "" }, t("level1")),
    el("a", { href: "#/dashboard/2", class: level === 2 ? "active" : "" }, t("level2")),
    el("a", { href: "#/dashboard/3", class: level === 3 ? "active" : "" }, t("level3")),
  );
  const grid = el("div", { class: "cards", "data-level": String(level) });
  const extra = el("div", { class: "extra" });
  clear(root).append(el("h1", {}, t("dashboard")), nav, grid, extra);

  let currency = "EUR";
  const cards = new Map<string, KpiCard>();
  const draw = () => clear(grid).append(...[...cards.values()].map((k) => card(k, currency)));

  if (level === 1) {
    const res = await dash.getLevel1({ period, seriesLength: 8 });
    currency = res.currency;
    res.kpis.forEach((k) => cards.set(k.key, k));
  } else if (level === 2) {
    const res = await dash.getLevel2({ period, teamId, seriesLength: 8 });
    currency = res.currency;
    res.kpis.forEach((k) => cards.set(k.key, k));
    if (res.teams.length) extra.append(table("", res.teams.map((r) => ({ name: r.name, values: r.values })), res.kpis, currency));
  } else {
    const res = await dash.getLevel3({ period, seriesLength: 8, ...(teamId ? { teamId } : {}) });
    currency = res.currency;
    res.kpis.forEach((k) => cards.set(k.key, k));
    if (res.people.length) extra.append(table("", res.people.map((r) => ({ name: r.displayName, values: r.values })), res.kpis, currency));
  }
  draw();

  const ctl = new AbortController();
  stop = ctl;
  (async () => {
    const req = level === 1 ? { level, period } : level === 2 ? { level, period, teamId } : { level, period };
    for await (const update of dash.watch(req, { signal: ctl.signal })) {
      if (update.snapshot) cards.clear();
      for (const k of update.kpis) cards.set(k.key, k);
      draw();
    }
  })().catch(() => {});
}
