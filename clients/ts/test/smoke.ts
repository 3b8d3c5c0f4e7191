// Run by the Go test clients/ts (TestTypeScriptClient) against a real server:
// node dist/test/smoke.js <base url> <admin token> <rep token>.
// Prints one JSON line per check; the Go test compares them with what the
// server holds.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import * as rallye from "../src/index.js";

const [baseUrl, adminToken, repToken] = process.argv.slice(2);

function print(check: string, value: unknown) {
  console.log(JSON.stringify({ check, value }));
}

async function main() {
  // Every service the package exports, by its protobuf name.
  const services = (Object.values(rallye) as unknown[])
    .filter((v): v is DescService => typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "service")
    .map((s) => s.typeName)
    .sort();
  print("services", services);

  for (const binary of [false, true]) {
    const admin = createClient(
      rallye.OrganizationService,
      rallye.createRallyeTransport({ baseUrl, credential: adminToken, useBinaryFormat: binary }),
    );
    const me = await admin.getMe({});
    print(binary ? "me.binary" : "me.json", { id: me.user?.id ?? "", tenant: me.tenant?.id ?? "" });
    const users = await admin.listUsers({ pageSize: 500 });
    print(binary ? "users.binary" : "users.json", users.users.map((u) => u.displayName).sort());
  }

  // A rep may not list the company's people; a wrong credential is refused.
  const rep = createClient(rallye.OrganizationService, rallye.createRallyeTransport({ baseUrl, credential: async () => repToken }));
  print("rep.listUsers", await codeOf(rep.listUsers({ pageSize: 10 })));
  const stranger = createClient(rallye.OrganizationService, rallye.createRallyeTransport({ baseUrl, credential: "not-a-token" }));
  print("stranger.getMe", await codeOf(stranger.getMe({})));
  // Validation names the field.
  const bad = await codeOf(admin0().listUsers({ pageSize: 100000 }));
  print("invalid", bad);

  // A server stream over fetch: the rep's own dashboard, whose first message
  // is the board itself.
  const dashboards = createClient(rallye.DashboardService, rallye.createRallyeTransport({ baseUrl, credential: repToken }));
  const abort = new AbortController();
  for await (const update of dashboards.watch({ level: 3 }, { signal: abort.signal })) {
    print("watch.first", { snapshot: update.snapshot, kpis: update.kpis.map((k) => k.key).sort() });
    abort.abort();
    break;
  }
}

function admin0() {
  return createClient(rallye.OrganizationService, rallye.createRallyeTransport({ baseUrl, credential: adminToken }));
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    const err = ConnectError.from(e);
    return `${Code[err.code]}: ${err.rawMessage}`;
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
