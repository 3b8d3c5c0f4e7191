// Challenges for managers: the list with participation, a short wizard that
// launches one from a template (onboarding, upsell, prospecting), and the
// lifecycle buttons (extend by a week, end now).

import { createClient } from "@connectrpc/connect";
import { ChallengeService, ChallengeState, ChallengeTemplateService, LeaderboardService, OrganizationService } from "../../../../clients/ts/src/index.js";
import type { ChallengeOverview } from "../../../../clients/ts/src/index.js";
import { currentLang, localized, t } from "./i18n.js";
import { transport } from "./session.js";
import { clear, el } from "./dom.js";

// A timestamp message for a Date.
function timestampFromDate(d: Date) {
  return { seconds: BigInt(Math.floor(d.getTime() / 1000)), nanos: 0 };
}

function date(ts: { seconds: bigint } | undefined): string {
  if (!ts) return "";
  return new Intl.DateTimeFormat(currentLang() === "fr" ? "fr-FR" : "en-GB", { dateStyle: "medium", timeStyle: "short" })
    .format(new Date(Number(ts.seconds) * 1000));
}

const stateText = {
  [ChallengeState.DRAFT]: "stateDraft", [ChallengeState.SCHEDULED]: "stateScheduled", [ChallengeState.ACTIVE]: "stateActive",
  [ChallengeState.ENDED]: "stateEnded", [ChallengeState.CANCELLED]: "stateCancelled",
} as const;

function row(o: ChallengeOverview, refresh: () => void): HTMLElement {
  const c = o.challenge!;
  const svc = createClient(ChallengeService, transport!);
  const actions = el("div", { class: "actions" });
  if (c.state === ChallengeState.ACTIVE || c.state === ChallengeState.SCHEDULED) {
    const extend = el("button", { type: "button", "data-action": "extend" }, t("extendWeek"));
    extend.addEventListener("click", async () => {
      const end = new Date(Number(c.endTime!.seconds) * 1000 + 7 * 24 * 3600 * 1000);
      await svc.extendChallenge({ challengeId: c.id, endTime: timestampFromDate(end) });
      refresh();
    });
    const end = el("button", { type: "button", "data-action": "end" }, t("endNow"));
    end.addEventListener("click", async () => {
      if (!confirm(t("endConfirm"))) return;
      await svc.endChallenge({ challengeId: c.id });
      refresh();
    });
    actions.append(extend, end);
  }
  return el("tr", { "data-challenge": c.id },
    el("td", {}, el("a", { href: `#/challenge/${c.id}` }, localized(c.definition?.name))),
    el("td", {}, t(stateText[c.state as keyof typeof stateText] ?? "stateDraft")),
    el("td", {}, date(c.startTime)),
    el("td", {}, date(c.endTime)),
    el("td", { class: "num" }, `${o.scoringCount} / ${o.participantCount}`),
    el("td", { class: "num" }, String(o.completedMissions)),
    el("td", {}, actions),
  );
}

/** renderChallenges lists the challenges the person may manage. */
export async function renderChallenges(root: HTMLElement) {
  const svc = createClient(ChallengeService, transport!);
  const res = await svc.listChallenges({ pageSize: 100 });
  const refresh = () => void renderChallenges(root);
  const table = el("table", { class: "rows challenges" },
    el("thead", {}, el("tr", {}, ...["challenge", "state", "starts", "ends", "scoring", "missionsDone", ""].map((k) =>
      el("th", {}, k ? t(k as Parameters<typeof t>[0]) : "")))),
    el("tbody", {}, ...res.challenges.map((o) => row(o, refresh))),
  );
  clear(root).append(
    el("header", { class: "board-head" }, el("h1", {}, t("challenges")), el("a", { class: "button", href: "#/challenges/new", "data-action": "launch" }, t("launch"))),
    table,
  );
}

/** renderChallenge shows a challenge: its boards and its missions. */
export async function renderChallenge(root: HTMLElement, id: string) {
  const svc = createClient(ChallengeService, transport!);
  const res = await svc.getChallenge({ challengeId: id });
  const c = res.challenge!;
  const boards = await createClient(LeaderboardService, transport!).listBoards({ challengeId: id, pageSize: 10 });
  clear(root).append(
    el("h1", {}, localized(c.definition?.name)),
    el("p", {}, localized(c.definition?.description)),
    el("p", {}, `${date(c.startTime)} → ${date(c.endTime)}`),
    el("h2", {}, t("boards")),
    el("ul", { class: "boards" }, ...boards.boards.map((b) => el("li", {}, el("a", { href: `#/board/${b.id}`, "data-board": b.id }, t("board"))))),
    el("h2", {}, t("missions")),
    el("ul", { class: "missions" }, ...(c.definition?.missions ?? []).map((m) =>
      el("li", {}, `${localized(m.name)} · ${m.points} ${t("pointsShort")}`))),
  );
}

/** renderLaunch is the wizard: template, teams and dates, confirmation. */
export async function renderLaunch(root: HTMLElement) {
  const templates = (await createClient(ChallengeTemplateService, transport!).listChallengeTemplates({})).templates;
  const teams = (await createClient(OrganizationService, transport!).listTeams({ pageSize: 500 })).teams;
  let chosen = templates[0]?.key ?? "";
  const form = el("form", { class: "wizard" });
  const step1 = el("fieldset", {}, el("legend", {}, t("step1")));
  for (const tpl of templates) {
    const input = el("input", { type: "radio", name: "template", value: tpl.key, "data-template": tpl.key });
    if (tpl.key === chosen) input.setAttribute("checked", "");
    input.addEventListener("change", () => (chosen = tpl.key));
    step1.append(el("label", { class: "template" }, input,
      el("strong", {}, localized(tpl.definition?.name)), el("span", {}, localized(tpl.definition?.description))));
  }
  const step2 = el("fieldset", {}, el("legend", {}, t("step2")));
  for (const team of teams) {
    step2.append(el("label", {}, el("input", { type: "checkbox", name: "team", value: team.id, "data-team": team.externalId || team.id }), team.name));
  }
  const start = el("input", { type: "datetime-local", name: "start" });
  const end = el("input", { type: "datetime-local", name: "end" });
  const step3 = el("fieldset", {}, el("legend", {}, t("step3")),
    el("label", {}, t("starts"), start), el("label", {}, t("ends"), end), el("p", { class: "hint" }, t("datesHint")));
  const submit = el("button", { type: "submit", "data-action": "confirm-launch" }, t("launch"));
  const error = el("p", { class: "error" });
  form.append(step1, step2, step3, submit, error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const teamIds = [...form.querySelectorAll<HTMLInputElement>("input[name=team]:checked")].map((i) => i.value);
    try {
      const res = await createClient(ChallengeService, transport!).createChallengeFromTemplate({
        templateKey: chosen,
        teamIds,
        startTime: start.value ? timestampFromDate(new Date(start.value)) : undefined,
        endTime: end.value ? timestampFromDate(new Date(end.value)) : undefined,
        publish: true,
        requestId: crypto.randomUUID(),
      });
      location.hash = `#/challenge/${res.challenge!.id}`;
    } catch (e) {
      error.textContent = t("error", { m: e instanceof Error ? e.message : String(e) });
    }
  });
  clear(root).append(el("h1", {}, t("launch")), form);
}
