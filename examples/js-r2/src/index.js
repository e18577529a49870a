// R2 from a JavaScript worker, in the shapes of Cloudflare's R2 documentation:
//
//   PUT    /objects/<key>     store the request's body (streamed by the node, never held here)
//   GET    /objects/<key>     the object, streamed; Range and If-* headers as R2 reads them
//   HEAD   /objects/<key>     its metadata
//   DELETE /objects/<key>     delete it
//   GET    /list?prefix=&delimiter=&cursor=&limit=   a page of the listing, as JSON
//   POST   /mpu/<key>         a multipart upload: create; PUT ?uploadId&part=N uploads a part;
//                             POST ?uploadId&action=complete (JSON parts) completes; DELETE aborts
//   GET    /avatar/<id>       the polyglot pattern: env.R2_BUCKET.get(`avatars/${id}.jpg`)
//   POST   /text/<key>        put a string, read it back with text() and json()

function keyOf(url, prefix) {
  return decodeURIComponent(url.pathname.slice(prefix.length));
}

function describe(object) {
  return {
    key: object.key,
    version: object.version,
    size: object.size,
    etag: object.etag,
    httpEtag: object.httpEtag,
    uploaded: object.uploaded.toISOString(),
    httpMetadata: object.httpMetadata,
    customMetadata: object.customMetadata,
    range: object.range,
    checksums: object.checksums.toJSON(),
  };
}

async function objects(request, env, key) {
  const bucket = env.R2_BUCKET;
  switch (request.method) {
    case "PUT": {
      const custom = {};
      for (const [name, value] of request.headers) {
        if (name.startsWith("x-meta-")) custom[name.slice(7)] = value;
      }
      const onlyIf = request.headers.has("if-match") || request.headers.has("if-none-match") ? request.headers : undefined;
      const object = await bucket.put(key, request.body, { httpMetadata: request.headers, customMetadata: custom, onlyIf });
      if (object === null) return new Response("precondition failed\n", { status: 412 });
      return Response.json(describe(object));
    }
    case "GET": {
      const object = await bucket.get(key, { range: request.headers, onlyIf: request.headers });
      if (object === null) return new Response("object not found\n", { status: 404 });
      const headers = new Headers();
      object.writeHttpMetadata(headers);
      headers.set("etag", object.httpEtag);
      if (!("body" in object)) {
        // A condition failed: R2 answers the object without its body.
        const status = request.headers.has("if-none-match") || request.headers.has("if-modified-since") ? 304 : 412;
        return new Response(null, { status, headers });
      }
      if (object.range) {
        const { offset, length } = object.range;
        headers.set("content-range", `bytes ${offset}-${offset + length - 1}/${object.size}`);
      }
      return new Response(object.body, { status: object.range ? 206 : 200, headers });
    }
    case "HEAD": {
      const object = await bucket.head(key);
      if (object === null) return new Response(null, { status: 404 });
      const headers = new Headers();
      object.writeHttpMetadata(headers);
      headers.set("etag", object.httpEtag);
      headers.set("x-object-size", String(object.size));
      return new Response(null, { headers });
    }
    case "DELETE":
      await bucket.delete(key);
      return new Response(null, { status: 204 });
    default:
      return new Response("method not allowed\n", { status: 405, headers: { allow: "PUT, GET, HEAD, DELETE" } });
  }
}

async function multipart(request, env, key, url) {
  const bucket = env.R2_BUCKET;
  const uploadId = url.searchParams.get("uploadId");
  if (request.method === "POST" && uploadId === null) {
    const upload = await bucket.createMultipartUpload(key, { httpMetadata: request.headers });
    return Response.json({ key: upload.key, uploadId: upload.uploadId });
  }
  if (uploadId === null) return new Response("uploadId is missing\n", { status: 400 });
  const upload = bucket.resumeMultipartUpload(key, uploadId);
  if (request.method === "PUT") {
    const part = await upload.uploadPart(Number(url.searchParams.get("part")), request.body);
    return Response.json(part);
  }
  if (request.method === "POST" && url.searchParams.get("action") === "complete") {
    const object = await upload.complete(await request.json());
    return Response.json(describe(object));
  }
  if (request.method === "DELETE") {
    await upload.abort();
    return new Response(null, { status: 204 });
  }
  return new Response("unknown multipart action\n", { status: 400 });
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    try {
      if (url.pathname.startsWith("/objects/")) return await objects(request, env, keyOf(url, "/objects/"));
      if (url.pathname.startsWith("/mpu/")) return await multipart(request, env, keyOf(url, "/mpu/"), url);
      if (url.pathname === "/list") {
        const options = { include: ["httpMetadata", "customMetadata"] };
        for (const name of ["prefix", "delimiter", "cursor", "startAfter"]) {
          if (url.searchParams.has(name)) options[name] = url.searchParams.get(name);
        }
        if (url.searchParams.has("limit")) options.limit = Number(url.searchParams.get("limit"));
        const listed = await env.R2_BUCKET.list(options);
        return Response.json({
          keys: listed.objects.map((o) => o.key),
          sizes: listed.objects.map((o) => o.size),
          contentTypes: listed.objects.map((o) => o.httpMetadata.contentType || null),
          delimitedPrefixes: listed.delimitedPrefixes,
          truncated: listed.truncated,
          cursor: listed.cursor || null,
        });
      }
      if (url.pathname.startsWith("/avatar/")) {
        const id = keyOf(url, "/avatar/");
        const object = await env.R2_BUCKET.get(`avatars/${id}.jpg`);
        if (object === null) return new Response("no avatar\n", { status: 404 });
        const bytes = new Uint8Array(await object.arrayBuffer());
        let sum = 0;
        for (const b of bytes) sum = (sum + b) % 65521;
        return Response.json({ size: object.size, read: bytes.length, sum, contentType: object.httpMetadata.contentType || null });
      }
      if (url.pathname.startsWith("/text/") && request.method === "POST") {
        const key = keyOf(url, "/text/");
        await env.R2_BUCKET.put(key, await request.text(), { httpMetadata: { contentType: "application/json" } });
        const object = await env.R2_BUCKET.get(key);
        const text = await object.text();
        const again = await (await env.R2_BUCKET.get(key)).json();
        return Response.json({ text, json: again, bodyUsed: object.bodyUsed });
      }
      return new Response("not found\n", { status: 404 });
    } catch (e) {
      return new Response(`${e.message}\n`, { status: e.message.includes("NoSuch") ? 404 : 400 });
    }
  },
};
