// The built-in module `cloudflare:workers`: base classes for Durable Objects and entrypoints,
// and the worker's `env`, as Cloudflare's runtime provides them.
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

export class WorkerEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

export const env = globalThis.__nimbus.env;
