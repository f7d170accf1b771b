// The TypeScript client: against scripted answers, and against a real worker when the
// test that starts one (tests/integration/test_typescript_client.py) gives TOWER_URL and
// an agent token in TOWER_TOKEN.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { actionOf, emits, TowerClient, TowerError, type Decision, type ProposalInput } from "../src/index.js";

const ANSWER = (customer: string): ProposalInput => ({
  customer_id: customer,
  department: "service",
  channel: "chat",
  proposal: { action: "answer", category: "service", content: "Your parcel left the depot." },
});

function scripted(...replies: Array<[number, unknown, Record<string, string>?]>) {
  const asked: Array<{ url: string; init: RequestInit }> = [];
  const fetch = async (url: URL | RequestInfo, init?: RequestInit): Promise<Response> => {
    asked.push({ url: String(url), init: init ?? {} });
    const [status, body, headers] = replies.length > 1 ? replies.shift()! : replies[0]!;
    return new Response(JSON.stringify(body), { status, headers });
  };
  return { asked, fetch: fetch as typeof globalThis.fetch };
}

describe("without a worker", () => {
  test("a 503 is retried as the same event, and the decision is read", async () => {
    const decided = { status: "decided", outcome: "approved", event_id: "e", customer_id: "c" };
    const { asked, fetch } = scripted([503, { error: "unavailable" }, { "Retry-After": "0" }], [200, decided]);
    const tower = new TowerClient({ url: "http://tower:1/", token: "t", agent: "care-bot", fetch });
    const answer = await tower.propose(ANSWER("c"), { waitS: 5 });
    assert.equal(answer.status, "decided");
    assert.equal(asked.length, 2);
    const [first, second] = asked.map((a) => JSON.parse(String(a.init.body)));
    assert.equal(first.event_id, second.event_id);
    assert.equal(first.agent, "care-bot");
    assert.equal(first.proposal.priority, 50);
    assert.equal(asked[0]!.url, "http://tower:1/api/v1/proposals?wait=5");
    assert.equal((asked[0]!.init.headers as Record<string, string>).Authorization, "Bearer t");
  });

  test("errors carry the code, detail and every problem", async () => {
    const body = {
      api_version: "v1",
      error: "invalid",
      reason: "invalid",
      detail: "2 fields are invalid: channel, proposal.priority",
      problems: [
        { field: "channel", message: "must be one of chat, email" },
        { field: "proposal.priority", message: "must be 0..100" },
      ],
    };
    const { fetch } = scripted([400, body]);
    const tower = new TowerClient({ url: "http://tower:1", fetch });
    await assert.rejects(tower.propose(ANSWER("c")), (err: unknown) => {
      assert.ok(err instanceof TowerError);
      assert.equal(err.status, 400);
      assert.equal(err.code, "invalid");
      assert.deepEqual(err.problems.map((p) => p.field), ["channel", "proposal.priority"]);
      return true;
    });
  });

  test("a refusal says how to give a token", async () => {
    const { fetch } = scripted([401, { error: "unauthorized", detail: "no token" }]);
    await assert.rejects(new TowerClient({ url: "http://tower:1", fetch }).context("c"), /TOWER_TOKEN/);
  });

  test("a wait beyond the server's limit is refused before anything is sent", async () => {
    const { asked, fetch } = scripted([200, {}]);
    await assert.rejects(new TowerClient({ fetch }).propose(ANSWER("c"), { waitS: 31 }), RangeError);
    assert.equal(asked.length, 0);
  });
});

const live = process.env.TOWER_URL ? describe : describe.skip;

live("against a worker, with an agent token", () => {
  const tower = new TowerClient({ timeoutS: 30 });

  test("a new customer's context is the policy's empty one", async () => {
    const ctx = await tower.context("ts-new");
    assert.equal(ctx.known, false);
    assert.equal(ctx.customer_id, "ts-new");
  });

  test("ask and decide; a retry is the same decision", async () => {
    const advice = await tower.preflight(ANSWER("ts-1"));
    assert.equal(advice.outcome, "approved");
    const first = await tower.propose({ ...ANSWER("ts-1"), event_id: "ts-ev-1" }, { waitS: 10 });
    assert.equal(first.status, "decided");
    const decision = first as Decision;
    assert.equal(decision.outcome, "approved");
    assert.ok(emits(decision));
    assert.deepEqual(actionOf(decision)?.agents, [process.env.TOWER_AGENT]);
    assert.equal(actionOf(decision)?.channel, "chat");
    const again = (await tower.propose({ ...ANSWER("ts-1"), event_id: "ts-ev-1" }, { waitS: 10 })) as Decision;
    assert.equal(again.audit_id, decision.audit_id);
    const later = (await tower.decision("ts-ev-1", "ts-1")) as Decision;
    assert.equal(later.audit_id, decision.audit_id);
  });

  test("a signal is recorded", async () => {
    const answer = await tower.signal(
      {
        customer_id: "ts-2",
        channel: "email",
        signal: { type: "consent_changed", attributes: { purpose: "marketing", granted: "true" } },
      },
      { waitS: 10 },
    );
    assert.equal(answer.status, "decided");
    assert.equal((answer as Decision).outcome, "recorded");
  });

  test("the errors an agent meets", async () => {
    await assert.rejects(tower.propose({ ...ANSWER("ts-3"), agent: "promo-bot" }), (err: unknown) => {
      assert.ok(err instanceof TowerError && err.status === 403, String(err));
      return true;
    });
    const bad = { ...ANSWER("ts-3"), channel: "fax" } as unknown as ProposalInput;
    await assert.rejects(tower.propose(bad), (err: unknown) => {
      assert.ok(err instanceof TowerError && err.status === 400, String(err));
      assert.ok(err.problems.some((p) => p.field === "channel"));
      return true;
    });
    await assert.rejects(tower.decision("never-sent", "ts-3"), (err: unknown) => {
      assert.ok(err instanceof TowerError && err.status === 404 && err.code === "not_found", String(err));
      return true;
    });
  });
});
