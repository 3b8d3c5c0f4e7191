// Texts of the console in French and English. The language is the person's
// choice (stored in the browser), French by default.

export type Lang = "fr" | "en";

const texts = {
  fr: {
    title: "Rallye",
    signIn: "Connexion",
    signInDemo: "Démo : choisissez une personne",
    signInCompany: "Se connecter avec le compte de l'entreprise",
    signOut: "Déconnexion",
    notConfigured: "Aucun fournisseur d'identité n'est configuré.",
    board: "Classement en direct",
    boards: "Classements",
    dashboard: "Tableau de bord",
    level1: "Niveau 1 : direction",
    level2: "Niveau 2 : managers",
    level3: "Niveau 3 : commerciaux",
    tvMode: "Mode TV",
    exitTv: "Quitter le mode TV",
    rank: "Rang",
    participant: "Participant",
    points: "Points",
    participants: "{n} participants",
    overtook: "{a} passe devant {b} !",
    noBoards: "Aucun classement pour l'instant.",
    notAllowed: "Cette page est réservée aux managers, aux RH et aux administrateurs.",
    target: "Objectif : {v}",
    projection: "Projection : {v}",
    noValue: "—",
    onTrack: "En bonne voie",
    atRisk: "À risque",
    offTrack: "En retard",
    computing: "Calcul en cours…",
    live: "En direct",
    final: "Résultats définitifs",
    language: "English",
    challenge: "Défi",
    period_week: "Semaine", period_month: "Mois", period_quarter: "Trimestre", period_all: "Depuis le début",
    error: "Erreur : {m}",
    challenges: "Défis",
    launch: "Lancer un défi",
    step1: "1. Le modèle",
    step2: "2. Les équipes",
    step3: "3. Les dates",
    starts: "Début",
    ends: "Fin",
    datesHint: "Vides : tout de suite, pour la durée du modèle.",
    extendWeek: "Prolonger d'une semaine",
    endNow: "Terminer",
    endConfirm: "Terminer ce défi maintenant ?",
    stateDraft: "Brouillon", stateScheduled: "Programmé", stateActive: "En cours", stateEnded: "Terminé", stateCancelled: "Annulé",
    state: "État",
    scoring: "Actifs / participants",
    missionsDone: "Missions accomplies",
    missions: "Missions",
    pointsShort: "pts",
    approvals: "Validations",
    nothingToApprove: "Rien à valider.",
    note: "Commentaire (facultatif)",
    approve: "Valider",
    reject: "Refuser",
    evidence: "Voir la preuve",
  },
  en: {
    title: "Rallye",
    signIn: "Sign in",
    signInDemo: "Demo: pick a person",
    signInCompany: "Sign in with your company account",
    signOut: "Sign out",
    notConfigured: "No identity provider is configured.",
    board: "Live board",
    boards: "Boards",
    dashboard: "Dashboard",
    level1: "Level 1: leadership",
    level2: "Level 2: managers",
    level3: "Level 3: reps",
    tvMode: "TV mode",
    exitTv: "Leave TV mode",
    rank: "Rank",
    participant: "Participant",
    points: "Points",
    participants: "{n} participants",
    overtook: "{a} overtakes {b}!",
    noBoards: "No board yet.",
    notAllowed: "This page is for managers, HR and admins.",
    target: "Target: {v}",
    projection: "Projection: {v}",
    noValue: "—",
    onTrack: "On track",
    atRisk: "At risk",
    offTrack: "Off track",
    computing: "Computing…",
    live: "Live",
    final: "Final results",
    language: "Français",
    challenge: "Challenge",
    period_week: "Week", period_month: "Month", period_quarter: "Quarter", period_all: "All time",
    error: "Error: {m}",
    challenges: "Challenges",
    launch: "Launch a challenge",
    step1: "1. Template",
    step2: "2. Teams",
    step3: "3. Dates",
    starts: "Start",
    ends: "End",
    datesHint: "Empty: now, for the template's duration.",
    extendWeek: "Extend by a week",
    endNow: "End now",
    endConfirm: "End this challenge now?",
    stateDraft: "Draft", stateScheduled: "Scheduled", stateActive: "Running", stateEnded: "Ended", stateCancelled: "Cancelled",
    state: "State",
    scoring: "Active / participants",
    missionsDone: "Missions completed",
    missions: "Missions",
    pointsShort: "pts",
    approvals: "Approvals",
    nothingToApprove: "Nothing to approve.",
    note: "Note (optional)",
    approve: "Approve",
    reject: "Reject",
    evidence: "See the evidence",
  },
} as const;

export type TextKey = keyof (typeof texts)["fr"];

let lang: Lang = (localStorage.getItem("rallye.lang") as Lang) === "en" ? "en" : "fr";

export function currentLang(): Lang {
  return lang;
}

export function setLang(l: Lang) {
  lang = l;
  localStorage.setItem("rallye.lang", l);
  document.documentElement.lang = l;
}

/** t returns the text of key in the current language, with {name} replaced. */
export function t(key: TextKey, params: Record<string, string | number> = {}): string {
  let s: string = texts[lang][key];
  for (const [k, v] of Object.entries(params)) s = s.replace(`{${k}}`, typeof v === "number" ? num(v) : v);
  return s;
}

/** num formats a number the way the language writes it (1 234,5 / 1,234.5). */
export function num(v: number, digits = 0): string {
  return new Intl.NumberFormat(lang === "fr" ? "fr-FR" : "en-GB", { maximumFractionDigits: digits }).format(v);
}

/** localized picks the text of a LocalizedText in the current language. */
export function localized(text: { fr: string; en: string } | undefined): string {
  if (!text) return "";
  return (lang === "fr" ? text.fr : text.en) || text.fr || text.en;
}
