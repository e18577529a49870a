// Pages Functions' routing, as Cloudflare runs a `functions/` directory (wrangler's
// pages-template-worker): the control plane generates an entry module that imports every
// Function and passes its routes here, sorted by wrangler's compareRoutes (most specific first).
//
// A request runs, in order: the `_middleware` handlers of every route that matches a prefix
// of its path (outermost first), then the handlers of the first route that matches the whole
// path and its method. `context.next()` moves to the next handler; past the last one it
// serves the deployment's static assets (`env.ASSETS`). `passThroughOnException()` makes a
// throw fall back to the assets too.

// The node answers requests to this host from the deployment's own assets, without a network.
const ASSETS_ORIGIN = "http://assets.pages.internal";

const assets = {
  async fetch(input, init) {
    const request = new Request(input, init);
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    return fetch(ASSETS_ORIGIN + url.pathname + url.search, { method: request.method, headers });
  },
};

// `/users/:id` against `/users/7`: {id: "7"}; `/docs/:path*` takes the rest as an array.
// `prefix`: the route may match the start of the path (middleware).
function match(route, path, prefix) {
  const want = route.split("/").filter(Boolean);
  const got = path.split("/").filter(Boolean);
  const params = {};
  for (let i = 0; i < want.length; i++) {
    const segment = want[i];
    if (segment.startsWith(":") && segment.endsWith("*")) {
      params[segment.slice(1, -1)] = got.slice(i).map(decodeURIComponent);
      return params;
    }
    if (i >= got.length) return null;
    if (segment.startsWith(":")) {
      params[segment.slice(1)] = decodeURIComponent(got[i]);
    } else if (segment !== got[i]) {
      return null;
    }
  }
  return prefix || got.length === want.length ? params : null;
}

function handlersOf(value) {
  return (Array.isArray(value) ? value : [value]).flat().filter((h) => typeof h === "function");
}

function* plan(routes, request) {
  const path = new URL(request.url).pathname;
  const method = request.method;
  for (const route of [...routes].reverse()) {
    if (!route.middleware || (route.method && route.method !== method)) continue;
    const params = match(route.path, path, true);
    if (params) for (const handler of handlersOf(route.handler)) yield { handler, params, path: route.path };
  }
  for (const route of routes) {
    if (route.middleware || (route.method && route.method !== method)) continue;
    const params = match(route.path, path, false);
    if (params) {
      for (const handler of handlersOf(route.handler)) yield { handler, params, path: route.path };
      return;
    }
  }
}

function withAssetsIn(env) {
  return Object.create(env, { ASSETS: { value: assets, enumerable: true } });
}

// Advanced mode: a `_worker.js` answers every request, with `env.ASSETS` added.
export function advanced(worker) {
  return {
    fetch(request, env, ctx) {
      return worker.fetch(request, withAssetsIn(env), ctx);
    },
  };
}

export function pages(routes) {
  return {
    async fetch(request, env, ctx) {
      const environment = withAssetsIn(env);
      const steps = plan(routes, request);
      let data = {};
      let failOpen = false;
      const next = async (input, init) => {
        if (input !== undefined) request = new Request(input, init);
        const step = steps.next();
        if (step.done) return assets.fetch(request);
        const { handler, params, path } = step.value;
        const context = {
          request,
          functionPath: path,
          next,
          params,
          get data() {
            return data;
          },
          set data(value) {
            if (typeof value !== "object" || value === null) throw new TypeError("context.data must be an object");
            data = value;
          },
          env: environment,
          waitUntil: (promise) => ctx.waitUntil(promise),
          passThroughOnException: () => {
            failOpen = true;
          },
        };
        const response = await handler(context);
        if (!(response instanceof Response)) {
          throw new TypeError(`the Function for ${path} returned ${typeof response}, not a Response`);
        }
        return response;
      };
      try {
        return await next();
      } catch (error) {
        if (failOpen) return assets.fetch(request);
        throw error;
      }
    },
  };
}
