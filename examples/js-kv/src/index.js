// Workers KV from JavaScript, as Cloudflare documents it:
//   PUT    /<key>?ttl=60   body = value, header x-metadata = JSON metadata
//   GET    /<key>          the value (404 when missing); ?type=json parses it
//   GET    /<key>?meta     {value, metadata}
//   DELETE /<key>
//   GET    /?prefix=p&limit=n&cursor=c   the key listing
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const key = decodeURIComponent(url.pathname.slice(1));
    if (key === "") {
      const listing = await env.CACHE.list({
        prefix: url.searchParams.get("prefix") ?? undefined,
        limit: url.searchParams.has("limit") ? Number(url.searchParams.get("limit")) : undefined,
        cursor: url.searchParams.get("cursor") ?? undefined,
      });
      return Response.json(listing);
    }
    switch (request.method) {
      case "PUT": {
        const options = {};
        if (url.searchParams.has("ttl")) options.expirationTtl = Number(url.searchParams.get("ttl"));
        const metadata = request.headers.get("x-metadata");
        if (metadata) options.metadata = JSON.parse(metadata);
        await env.CACHE.put(key, await request.text(), options);
        return new Response(null, { status: 204 });
      }
      case "DELETE":
        await env.CACHE.delete(key);
        return new Response(null, { status: 204 });
      case "GET": {
        if (url.searchParams.has("meta")) {
          return Response.json(await env.CACHE.getWithMetadata(key));
        }
        const type = url.searchParams.get("type") ?? "text";
        const value = await env.CACHE.get(key, type);
        if (value === null) return new Response("not found\n", { status: 404 });
        return type === "json" ? Response.json(value) : new Response(value);
      }
      default:
        return new Response("method not allowed\n", { status: 405 });
    }
  },
};
