// The live board: a challenge's or a period's ranking, updated from
// WatchRanking without reload, with rank changes animated and "overtaken"
// moments shown. TV mode fills the screen with large type for a wall screen.

import { createClient } from "@connectrpc/connect";
import { BoardKind, ChallengeService, LeaderboardService, Period } from "../../../../clients/ts/src/index.js";
import type { Board, RankingEntry } from "../../../../clients/ts/src/index.js";
import { localized, num, t } from "./i18n.js";
import type { TextKey } from "./i18n.js";
import { transport } from "./session.js";
import { el, clear } from "./dom.js";

let stop: AbortController | undefined;

/** leaveBoard ends the live stream of the board shown, if any. */
export function leaveBoard() {
  stop?.abort();
  stop = undefined;
  document.body.classList.remove("tv");
}

async function boardName(b: Board): Promise<string> {
  if (b.challengeId) {
    const res = await createClient(ChallengeService, transport!).getChallenge({ challengeId: b.challengeId });
    const name = localized(res.challenge?.definition?.name);
    const kind = b.kind === BoardKind.INDIVIDUAL ? "" : b.kind === BoardKind.TEAM_TOTAL ? " · Σ" : " · ⌀";
    return name + kind;
  }
  const key: Record<number, TextKey> = {
    [Period.WEEK]: "period_week", [Period.MONTH]: "period_month", [Period.QUARTER]: "period_quarter", [Period.ALL_TIME]: "period_all",
  };
  return t(key[b.period] ?? "boards");
}

/** renderBoards lists the boards the person may see. */
export async function renderBoards(root: HTMLElement) {
  const boards = createClient(LeaderboardService, transport!);
  const res = await boards.listBoards({ pageSize: 100 });
  const list = [...res.boards.filter((b) => b.challengeId), ...res.currentPeriods];
  clear(root).append(el("h1", {}, t("boards")));
  if (list.length === 0) {
    root.append(el("p", {}, t("noBoards")));
    return;
  }
  const ul = el("ul", { class: "boards" });
  for (const b of list) {
    const a = el("a", { href: `#/board/${b.id}`, "data-board": b.id }, "…");
    boardName(b).then((n) => (a.textContent = n), () => (a.textContent = b.id));
    ul.append(el("li", {}, a));
  }
  root.append(ul);
}

/** renderBoard shows one board live. */
export async function renderBoard(root: HTMLElement, boardId: string, tv: boolean) {
  leaveBoard();
  const boards = createClient(LeaderboardService, transport!);
  const first = await boards.getRanking({ boardId, pageSize: 20 });
  const board = first.ranking!.board!;
  const title = el("h1", { class: "board-title" }, await boardName(board));
  const status = el("span", { class: board.final ? "badge final" : "badge live" }, board.final ? t("final") : t("live"));
  const count = el("p", { class: "count" });
  const banner = el("div", { class: "overtaken", role: "status", "aria-live": "polite" });
  const tvLink = el("a", { class: "tv-toggle", href: tv ? `#/board/${boardId}` : `#/board/${boardId}/tv` }, tv ? t("exitTv") : t("tvMode"));
  const table = el("ol", { class: "ranking", "data-board": boardId });
  clear(root).append(el("header", { class: "board-head" }, title, status, tvLink), count, banner, table);
  document.body.classList.toggle("tv", tv);

  const rows = new Map<string, HTMLElement>();
  let previous = new Map<string, number>();
  const draw = (entries: RankingEntry[], participants: bigint) => {
    count.textContent = t("participants", { n: Number(participants) });
    // FLIP: remember where each row was, move it, then animate from there.
    const before = new Map<string, number>();
    for (const [id, row] of rows) before.set(id, row.getBoundingClientRect().top);
    const seen = new Set<string>();
    for (const e of entries) {
      seen.add(e.participantId);
      let row = rows.get(e.participantId);
      if (!row) {
        row = el("li", { class: "entry", "data-participant": e.participantId },
          el("span", { class: "rank" }), el("span", { class: "name" }), el("span", { class: "points" }));
        rows.set(e.participantId, row);
      }
      row.querySelector(".rank")!.textContent = String(e.rank);
      row.querySelector(".name")!.textContent = e.displayName;
      const pts = row.querySelector(".points")!;
      const text = num(Number(e.points));
      if (pts.textContent !== text && pts.textContent !== "") {
        row.classList.remove("scored");
        void row.offsetWidth; // restart the animation
        row.classList.add("scored");
      }
      pts.textContent = text;
      row.dataset.points = String(e.points);
      row.dataset.rank = String(e.rank);
      table.append(row);
    }
    for (const [id, row] of rows) if (!seen.has(id)) { row.remove(); rows.delete(id); }
    for (const [id, row] of rows) {
      const was = before.get(id);
      if (was === undefined) continue;
      const dy = was - row.getBoundingClientRect().top;
      if (dy !== 0) {
        row.animate([{ transform: `translateY(${dy}px)` }, { transform: "none" }], { duration: 600, easing: "ease-out" });
      }
    }
    // Overtaken: someone now ranks before a person they were behind.
    const now = new Map(entries.map((e) => [e.participantId, Number(e.position)]));
    for (const e of entries) {
      const was = previous.get(e.participantId);
      const is = now.get(e.participantId)!;
      if (was === undefined || is >= was) continue;
      const passed = entries.find((o) => previous.get(o.participantId) === is && o.participantId !== e.participantId);
      if (passed) {
        banner.textContent = t("overtook", { a: e.displayName, b: passed.displayName });
        banner.classList.remove("show");
        void banner.offsetWidth;
        banner.classList.add("show");
      }
    }
    previous = now;
  };
  draw(first.ranking!.entries, first.ranking!.participantCount);

  const ctl = new AbortController();
  stop = ctl;
  (async () => {
    for await (const update of boards.watchRanking({ boardId, pageSize: 20 }, { signal: ctl.signal })) {
      if (update.ranking) draw(update.ranking.entries, update.ranking.participantCount);
    }
  })().catch(() => {
    /* the stream ends when the page changes or the server restarts */
  });
}
