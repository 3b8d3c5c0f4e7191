// Rallye's console: sign-in, live boards (with a TV mode), KPI dashboards.
// Routes are in the URL's hash, so the server serves one page.

import { Role } from "../../../../clients/ts/src/index.js";
import { renderBoard, renderBoards, leaveBoard } from "./board.js";
import { renderDashboard, leaveDashboard } from "./dashboard.js";
import { renderChallenge, renderChallenges, renderLaunch } from "./challenges.js";
import { renderApprovals } from "./approvals.js";
import { clear, el } from "./dom.js";
import { currentLang, setLang, t } from "./i18n.js";
import * as session from "./session.js";

const app = document.getElementById("app")!;
let config: session.ConsoleConfig = { demo: false };

function header(): HTMLElement {
  const links: HTMLElement[] = [el("a", { href: "#/boards" }, t("boards"))];
  if (session.me) links.push(el("a", { href: session.isManagement() ? "#/dashboard/1" : "#/dashboard/3" }, t("dashboard")));
  if (session.isManagement()) {
    links.push(el("a", { href: "#/challenges", "data-nav": "challenges" }, t("challenges")), el("a", { href: "#/approvals", "data-nav": "approvals" }, t("approvals")));
  }
  const lang = el("button", { type: "button", class: "lang", "data-action": "language" }, t("language"));
  lang.addEventListener("click", () => {
    setLang(currentLang() === "fr" ? "en" : "fr");
    void route();
  });
  const right: HTMLElement[] = [lang];
  if (session.me) {
    const out = el("button", { type: "button", class: "signout" }, t("signOut"));
    out.addEventListener("click", () => {
      session.signOut();
      location.hash = "#/signin";
    });
    right.unshift(el("span", { class: "who", "data-person": session.me.id }, session.me.displayName), out);
  }
  return el("header", { class: "top" }, el("strong", { class: "brand" }, t("title")), el("nav", {}, ...links), el("div", { class: "right" }, ...right));
}

async function signInPage(main: HTMLElement) {
  main.append(el("h1", {}, t("signIn")));
  if (config.demo) {
    main.append(el("p", {}, t("signInDemo")));
    const list = el("ul", { class: "people" });
    for (const p of await session.demoPeople()) {
      const b = el("button", { type: "button", "data-email": p.email }, `${p.name} · ${p.roles.join(", ")}`);
      b.addEventListener("click", () => {
        session.signInWith(p.token);
        location.hash = "#/boards";
        void boot();
      });
      list.append(el("li", {}, b));
    }
    main.append(list);
  }
  if (config.oidc) {
    const oidc = config.oidc;
    const b = el("button", { type: "button", class: "provider" }, t("signInCompany"));
    b.addEventListener("click", () => void session.signInWithProvider(oidc));
    main.append(b);
  } else if (!config.demo) {
    main.append(el("p", {}, t("notConfigured")));
  }
}

/** route draws the page the hash names. */
async function route() {
  leaveBoard();
  leaveDashboard();
  document.documentElement.lang = currentLang();
  const main = el("main", {});
  clear(app).append(header(), main);
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  try {
    if (!session.me) {
      await signInPage(main);
      return;
    }
    // Challenges and approvals are for management; the server says so too.
    const managementOnly = ["challenges", "challenge", "approvals"].includes(parts[0]) || (parts[0] === "dashboard" && parts[1] !== "3");
    if (managementOnly && !session.hasRole(Role.MANAGER, Role.HR, Role.ADMIN)) {
      main.append(el("p", { class: "denied" }, t("notAllowed")));
      return;
    }
    switch (parts[0]) {
      case "challenges":
        await (parts[1] === "new" ? renderLaunch(main) : renderChallenges(main));
        return;
      case "challenge":
        await renderChallenge(main, parts[1]);
        return;
      case "approvals":
        await renderApprovals(main);
        return;
      case "board":
        await renderBoard(main, parts[1], parts[2] === "tv");
        return;
      case "dashboard": {
        const level = Number(parts[1]) as 1 | 2 | 3;
        await renderDashboard(main, level === 1 || level === 2 ? level : 3);
        return;
      }
      default:
        await renderBoards(main);
    }
  } catch (e) {
    main.append(el("p", { class: "error" }, t("error", { m: e instanceof Error ? e.message : String(e) })));
  }
}

async function boot() {
  config = await session.loadConfig();
  if (config.oidc) await session.finishProviderSignIn(config.oidc).catch(() => undefined);
  await session.start();
  await route();
}

window.addEventListener("hashchange", () => void route());
void boot();
