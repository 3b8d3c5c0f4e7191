// The manual-mission queue of a manager: what reps submitted (evidence link or
// answers), to approve or reject. Approval completes the mission and its
// points show on the boards at once.

import { createClient } from "@connectrpc/connect";
import { ChallengeService, MissionService, OrganizationService, SubmissionState } from "../../../../clients/ts/src/index.js";
import type { Challenge } from "../../../../clients/ts/src/index.js";
import { localized, t } from "./i18n.js";
import { transport } from "./session.js";
import { clear, el } from "./dom.js";

export async function renderApprovals(root: HTMLElement) {
  const missions = createClient(MissionService, transport!);
  const res = await missions.listSubmissions({ state: SubmissionState.PENDING, pageSize: 200 });
  const challenges = new Map<string, Challenge>();
  const names = new Map<string, string>();
  const people = createClient(OrganizationService, transport!);
  const svc = createClient(ChallengeService, transport!);
  for (const s of res.submissions) {
    if (!challenges.has(s.challengeId)) challenges.set(s.challengeId, (await svc.getChallenge({ challengeId: s.challengeId })).challenge!);
    if (!names.has(s.userId)) names.set(s.userId, (await people.getUser({ userId: s.userId })).user?.displayName ?? "");
  }
  clear(root).append(el("h1", {}, t("approvals")));
  if (res.submissions.length === 0) {
    root.append(el("p", { class: "empty" }, t("nothingToApprove")));
    return;
  }
  const list = el("ul", { class: "approvals" });
  for (const s of res.submissions) {
    const c = challenges.get(s.challengeId);
    const mission = c?.definition?.missions.find((m) => m.id === s.missionId);
    const note = el("input", { type: "text", name: "note", placeholder: t("note"), maxlength: "2000" });
    const approve = el("button", { type: "button", "data-action": "approve" }, t("approve"));
    const reject = el("button", { type: "button", "data-action": "reject" }, t("reject"));
    const decide = (ok: boolean) => async () => {
      if (ok) await missions.approveSubmission({ submissionId: s.id, note: note.value });
      else await missions.rejectSubmission({ submissionId: s.id, note: note.value });
      await renderApprovals(root);
    };
    approve.addEventListener("click", decide(true));
    reject.addEventListener("click", decide(false));
    const evidence = s.evidenceUrl
      ? el("a", { href: s.evidenceUrl, target: "_blank", rel: "noopener noreferrer" }, t("evidence"))
      : el("span", { class: "answer" }, s.answer);
    list.append(el("li", { "data-submission": s.id },
      el("strong", {}, names.get(s.userId) ?? ""),
      el("span", {}, `${localized(c?.definition?.name)} · ${localized(mission?.name)} · ${mission?.points ?? 0} ${t("pointsShort")}`),
      evidence, note, approve, reject));
  }
  root.append(list);
}
