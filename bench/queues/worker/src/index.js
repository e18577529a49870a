// GET /latency: every recorded send → handler latency, in ms.
const SCHEMA = "CREATE TABLE IF NOT EXISTS latency (ms INTEGER)";

export default {
  async fetch(request, env) {
    await env.DB.prepare(SCHEMA).run();
    const { results } = await env.DB.prepare("SELECT ms FROM latency").all();
    return Response.json(results.map((r) => r.ms));
  },
  async queue(batch, env) {
    const now = Date.now();
    const rows = batch.messages.map((m) => env.DB.prepare("INSERT INTO latency VALUES (?)").bind(now - m.timestamp.getTime()));
    await env.DB.batch([env.DB.prepare(SCHEMA), ...rows]);
  },
};
