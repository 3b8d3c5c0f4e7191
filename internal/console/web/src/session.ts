// Who is signed in: the credential, the person and their roles. In
// production the console signs in through the company's identity provider
// (OpenID Connect, authorization code with PKCE); with `serve --demo` a person
// picker lists the demo company's people.

import { createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";
import { createRallyeTransport, OrganizationService, Role } from "../../../../clients/ts/src/index.js";
import type { User } from "../../../../clients/ts/src/index.js";

export interface ConsoleConfig {
  demo: boolean;
  oidc?: { issuer: string; clientId: string };
}

export interface DemoPerson {
  name: string;
  email: string;
  roles: string[];
  token: string;
}

const tokenKey = "rallye.token";

export let transport: Transport | undefined;
export let me: User | undefined;

export function token(): string | null {
  return sessionStorage.getItem(tokenKey);
}

export async function loadConfig(): Promise<ConsoleConfig> {
  const res = await fetch("/console/config.json");
  return (await res.json()) as ConsoleConfig;
}

export async function demoPeople(): Promise<DemoPerson[]> {
  const res = await fetch("/console/demo/people");
  if (!res.ok) return [];
  return (await res.json()) as DemoPerson[];
}

/** start uses the stored credential, if any, and reads who it belongs to. */
export async function start(): Promise<boolean> {
  const tok = token();
  if (!tok) return false;
  transport = createRallyeTransport({ baseUrl: location.origin, credential: () => token() ?? "" });
  try {
    const res = await createClient(OrganizationService, transport).getMe({});
    me = res.user;
    return true;
  } catch {
    signOut();
    return false;
  }
}

export function signInWith(tok: string) {
  sessionStorage.setItem(tokenKey, tok);
}

export function signOut() {
  sessionStorage.removeItem(tokenKey);
  transport = undefined;
  me = undefined;
}

export function hasRole(...roles: Role[]): boolean {
  return !!me?.roles.some((r) => roles.includes(r));
}

/** A manager, HR or an admin: the people the console's management pages are for. */
export function isManagement(): boolean {
  return hasRole(Role.MANAGER, Role.HR, Role.ADMIN);
}

// OpenID Connect, authorization code flow with PKCE (RFC 7636), in the browser.

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function discovery(issuer: string): Promise<{ authorization_endpoint: string; token_endpoint: string }> {
  const res = await fetch(issuer.replace(/\/$/, "") + "/.well-known/openid-configuration");
  return res.json();
}

export async function signInWithProvider(oidc: { issuer: string; clientId: string }) {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier))));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("rallye.pkce", JSON.stringify({ verifier, state }));
  const d = await discovery(oidc.issuer);
  const url = new URL(d.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: oidc.clientId,
    redirect_uri: location.origin + "/console/",
    scope: "openid profile email",
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
  }).toString();
  location.assign(url.toString());
}

/** finishProviderSignIn exchanges the code the provider sent back, if any. */
export async function finishProviderSignIn(oidc: { issuer: string; clientId: string }): Promise<void> {
  const params = new URLSearchParams(location.search);
  const code = params.get("code");
  const saved = sessionStorage.getItem("rallye.pkce");
  if (!code || !saved) return;
  const { verifier, state } = JSON.parse(saved) as { verifier: string; state: string };
  sessionStorage.removeItem("rallye.pkce");
  history.replaceState(null, "", "/console/" + location.hash);
  if (params.get("state") !== state) throw new Error("state mismatch");
  const d = await discovery(oidc.issuer);
  const res = await fetch(d.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: location.origin + "/console/",
      client_id: oidc.clientId,
      code_verifier: verifier,
    }),
  });
  const body = (await res.json()) as { access_token?: string; id_token?: string };
  const tok = body.access_token ?? body.id_token;
  if (!tok) throw new Error("no token from the identity provider");
  signInWith(tok);
}
