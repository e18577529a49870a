// A Durable Object counter in JavaScript, as Cloudflare's documentation writes it.
//   POST /<name>/increment      the new value (one object per name, one value per call)
//   GET  /<name>                the current value
//   POST /<name>/alarm?ms=100   sets an alarm; when it fires, `alarms` is incremented
//   GET  /<name>/alarms         how many alarms fired
//   POST /<name>/transfer?n=5   moves n from `value` to `saved` in one transaction
import { DurableObject } from "cloudflare:workers";

export class Counter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    // Load once, before the first event runs (Cloudflare's blockConcurrencyWhile pattern).
    ctx.blockConcurrencyWhile(async () => {
      this.value = (await ctx.storage.get("value")) ?? 0;
    });
  }

  async fetch(request) {
    const url = new URL(request.url);
    const action = url.pathname.split("/")[2] ?? "";
    switch (`${request.method} ${action}`) {
      case "POST increment":
        this.value += 1;
        await this.ctx.storage.put("value", this.value);
        return Response.json({ value: this.value, id: this.ctx.id.toString() });
      case "GET ":
        return Response.json({ value: (await this.ctx.storage.get("value")) ?? 0 });
      case "POST alarm":
        await this.ctx.storage.setAlarm(Date.now() + Number(url.searchParams.get("ms") ?? 100));
        return Response.json({ alarm: await this.ctx.storage.getAlarm() });
      case "GET alarms":
        return Response.json({ alarms: (await this.ctx.storage.get("alarms")) ?? 0 });
      case "POST transfer": {
        const n = Number(url.searchParams.get("n") ?? 1);
        const result = await this.ctx.storage.transaction(async (txn) => {
          const value = (await txn.get("value")) ?? 0;
          if (value < n) {
            txn.rollback();
            return { ok: false, value };
          }
          await txn.put({ value: value - n, saved: ((await txn.get("saved")) ?? 0) + n });
          return { ok: true, value: value - n };
        });
        this.value = (await this.ctx.storage.get("value")) ?? 0;
        return Response.json({ ...result, saved: (await this.ctx.storage.get("saved")) ?? 0 });
      }
      default:
        return new Response("not found\n", { status: 404 });
    }
  }

  async alarm(info) {
    const fired = ((await this.ctx.storage.get("alarms")) ?? 0) + 1;
    await this.ctx.storage.put("alarms", fired);
    console.log(`alarm ${fired} of ${this.ctx.id} (retry ${info.retryCount})`);
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const name = url.pathname.split("/")[1];
    if (!name) return new Response("usage: /<counter name>[/increment]\n", { status: 400 });
    const stub = env.COUNTER.get(env.COUNTER.idFromName(name));
    return stub.fetch(request);
  },
};
