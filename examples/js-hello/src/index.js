// The smallest JavaScript worker: Cloudflare's module syntax, a var from nimbus.toml, and a
// helper module imported relatively (bundled by `nimbus deploy`).
import { greeting } from "./greeting.js";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/json") {
      return Response.json({ greeting: env.GREETING, colo: request.cf.colo ?? null, method: request.method });
    }
    return new Response(greeting(env.GREETING, url.searchParams.get("name")));
  },
};
