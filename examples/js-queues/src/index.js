// Queues and Cron Triggers, Cloudflare's API.
//
//   POST /signup        {"to", "template"}        env.EMAIL_QUEUE.send({ to, template })
//   POST /send          {"messages": [...], "delaySeconds"?}   sendBatch; a message is
//                       {"body", "contentType"?, "delaySeconds"?}
//   GET  /received      what the consumer recorded, oldest first
//   GET  /ticks         the cron ticks the scheduled handler recorded
//
// The consumer obeys instructions in a message's body (tests drive it this way):
// {"action": "retry"} retries it, {"action": "retry", "delay": s} after s seconds,
// {"action": "ack"} acks it explicitly, {"action": "throw-once"} makes the handler throw on
// the message's first delivery, {"action": "ack-then-retry"} acks and then retries (the ack
// wins), {"action": "retry-then-ack"} retries on its first delivery and then acks (the retry
// wins), {"action": "sleep", "ms": n} records it, then waits n ms before returning.

const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS deliveries (id TEXT, queue TEXT, body TEXT, attempts INTEGER, batch INTEGER, sent_ms INTEGER, at_ms INTEGER)",
  "CREATE TABLE IF NOT EXISTS ticks (cron TEXT, scheduled_ms INTEGER, at_ms INTEGER)",
];

async function schema(env) {
  await env.DB.batch(SCHEMA.map((sql) => env.DB.prepare(sql)));
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    try {
      if (request.method === "POST" && url.pathname === "/signup") {
        const { to, template } = await request.json();
        await env.EMAIL_QUEUE.send({ to, template });
        return Response.json({ queued: true }, { status: 202 });
      }
      if (request.method === "POST" && url.pathname === "/send") {
        const { messages, delaySeconds } = await request.json();
        await env.EMAIL_QUEUE.sendBatch(messages, delaySeconds === undefined ? {} : { delaySeconds });
        return Response.json({ queued: messages.length }, { status: 202 });
      }
      if (url.pathname === "/received") {
        await schema(env);
        const { results } = await env.DB.prepare("SELECT * FROM deliveries ORDER BY at_ms, rowid").all();
        return Response.json(results);
      }
      if (url.pathname === "/ticks") {
        await schema(env);
        const { results } = await env.DB.prepare("SELECT * FROM ticks ORDER BY scheduled_ms").all();
        return Response.json(results);
      }
      return new Response("not found\n", { status: 404 });
    } catch (e) {
      // Limits and unknown queues answer with the binding's message.
      return Response.json({ error: String(e.message || e) }, { status: 400 });
    }
  },

  async queue(batch, env) {
    const now = Date.now();
    const record = batch.messages.map((m) =>
      env.DB.prepare("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?)").bind(
        m.id, batch.queue, JSON.stringify(m.body), m.attempts, batch.messages.length, m.timestamp.getTime(), now),
    );
    await env.DB.batch([...SCHEMA.map((sql) => env.DB.prepare(sql)), ...record]);
    let fail = false;
    for (const m of batch.messages) {
      const action = m.body && m.body.action;
      if (action === "retry") m.retry(m.body.delay === undefined ? undefined : { delaySeconds: m.body.delay });
      else if (action === "ack") m.ack();
      else if (action === "ack-then-retry") { m.ack(); m.retry(); }
      else if (action === "retry-then-ack") { if (m.attempts === 1) m.retry({ delaySeconds: 0 }); m.ack(); }
      else if (action === "throw-once") fail ||= m.attempts === 1;
      else if (action === "sleep") await new Promise((resolve) => setTimeout(resolve, m.body.ms));
    }
    if (fail) throw new Error("a message asked the handler to throw");
  },

  async scheduled(controller, env) {
    await schema(env);
    await env.DB.prepare("INSERT INTO ticks VALUES (?, ?, ?)").bind(controller.cron, controller.scheduledTime, Date.now()).run();
  },
};
