// D1 from JavaScript, as Cloudflare documents it: prepare / bind / all / first / run / raw,
// batch, exec, and sessions with bookmarks.
//   POST /setup            creates the table (exec)
//   POST /notes            body {"title", "body"}: inserts one note, returns it with the bookmark
//   GET  /notes            every note (all)
//   GET  /notes/<id>       one note, 404 when missing; ?session=first-unconstrained|first-primary|<bookmark>
//                          reads it in a session (otherwise: primary semantics)
//   GET  /count            the number of notes (first with a column)
//   GET  /raw              rows as arrays, column names first (raw)
//   POST /batch            body [{"title","body"}…]: inserts all or none (batch)
//   GET  /session?bookmark=b   reads in a session that starts at the bookmark
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const parts = url.pathname.split("/").filter(Boolean);
    try {
      if (request.method === "POST" && url.pathname === "/setup") {
        const result = await env.DB.exec(
          "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body TEXT NOT NULL DEFAULT '', created INTEGER)",
        );
        return Response.json(result);
      }
      if (request.method === "POST" && url.pathname === "/notes") {
        const { title, body = "" } = await request.json();
        const session = env.DB.withSession("first-primary");
        const result = await session
          .prepare("INSERT INTO notes (title, body, created) VALUES (?1, ?2, ?3) RETURNING id, title, body")
          .bind(title, body, Date.now())
          .run();
        return Response.json({ note: result.results[0], meta: result.meta, bookmark: session.getBookmark() }, { status: 201 });
      }
      if (request.method === "GET" && url.pathname === "/notes") {
        const { results } = await env.DB.prepare("SELECT id, title, body FROM notes ORDER BY id").all();
        return Response.json(results);
      }
      if (request.method === "GET" && parts[0] === "notes" && parts.length === 2) {
        // Without `?session=` no session: primary semantics, as on Cloudflare.
        const constraint = url.searchParams.get("session");
        const db = constraint === null ? env.DB : env.DB.withSession(constraint);
        const { results, meta } = await db.prepare("SELECT id, title, body FROM notes WHERE id = ?").bind(Number(parts[1])).all();
        const headers = { "x-d1-served-by": meta.served_by, "x-d1-served-by-primary": String(meta.served_by_primary) };
        if (db.getBookmark) headers["x-d1-bookmark"] = db.getBookmark();
        return results.length ? Response.json(results[0], { headers }) : new Response("no such note\n", { status: 404, headers });
      }
      if (request.method === "GET" && url.pathname === "/count") {
        const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM notes").first("n");
        return Response.json({ count });
      }
      if (request.method === "GET" && url.pathname === "/raw") {
        return Response.json(await env.DB.prepare("SELECT id, title FROM notes ORDER BY id").raw({ columnNames: true }));
      }
      if (request.method === "POST" && url.pathname === "/batch") {
        const notes = await request.json();
        const insert = env.DB.prepare("INSERT INTO notes (title, body, created) VALUES (?, ?, ?)");
        const results = await env.DB.batch(notes.map((n) => insert.bind(n.title, n.body ?? "", Date.now())));
        return Response.json({ inserted: results.length });
      }
      if (request.method === "GET" && url.pathname === "/session") {
        const session = env.DB.withSession(url.searchParams.get("bookmark") ?? "first-unconstrained");
        const { results } = await session.prepare("SELECT id, title FROM notes ORDER BY id").all();
        return Response.json(results);
      }
      return new Response("not found\n", { status: 404 });
    } catch (e) {
      // D1 errors carry SQLite's message, as on Cloudflare.
      return Response.json({ error: e.message }, { status: 400 });
    }
  },
};
