// The JavaScript twin of examples/hello: the same response, so bench/hello compares engines,
// not handlers.
export default {
  async fetch(request, env, ctx) {
    return new Response("Hello from Nimbus!\n", { headers: { "content-type": "text/plain; charset=utf-8" } });
  },
};
