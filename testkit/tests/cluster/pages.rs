//! Pages on real nodes: `nimbus pages deploy` of a directory, Cloudflare's asset rules,
//! `_redirects` and `_headers`, ETag revalidation, gzip and brotli, HEAD, branch previews at
//! their aliases, immutable deployment URLs, rollback, deduplicated uploads, and a node that
//! restarts while the control plane is down serving what it had.

use nimbus_testkit::{Cluster, ClusterSpec};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// The edge without redirects followed or bodies decoded: what a browser's first hop sees.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn get(
    cluster: &Cluster,
    node: usize,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = raw_client().request(method, format!("{}{path}", cluster.nodes[node].url())).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{host}{path}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("a body").to_vec();
    Answer { status, headers, body }
}

/// Waits until node `node` answers `host` `/` with a body containing `text`.
async fn until_serves(cluster: &Cluster, node: usize, host: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = get(cluster, node, Method::GET, host, "/", &[]).await;
        if answer.status == 200 && answer.text().contains(text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {node} never served {text:?} on {host}: {}",
            answer.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write(dir: &Path, path: &str, content: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// Runs `nimbus pages deploy` and returns its JSON answer and what it printed on stderr.
async fn deploy(cluster: &Cluster, dir: &Path, extra: &[&str]) -> (Value, String) {
    let dir = dir.to_string_lossy().into_owned();
    let mut args = vec!["pages", "deploy", dir.as_str(), "--project", "site", "--json"];
    args.extend_from_slice(extra);
    let output = cluster.nimbus(&args).await.expect("nimbus runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "deploy failed: {stderr}");
    (serde_json::from_slice(&output.stdout).expect("--json"), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_site_deploys_with_previews_rollback_and_cloudflares_rules_on_every_node() {
    let mut cluster = Cluster::start(ClusterSpec::local(2).expect("spec")).await.expect("cluster starts");
    let output = cluster.nimbus(&["pages", "project", "create", "site"]).await.expect("nimbus runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let site = tempfile::tempdir().expect("tempdir");
    let dir = site.path();
    write(dir, "index.html", "<title>Home</title><p>home v1</p>");
    write(dir, "about.html", "<p>about</p>");
    write(dir, "docs/index.html", "<p>docs</p>");
    write(dir, "docs/404.html", "<p>no such doc</p>");
    write(dir, "404.html", "<p>not here</p>");
    write(dir, "style.css", &"body { color: #333; margin: 0 auto; }\n".repeat(100));
    write(dir, "_redirects", "/old /about 301\n/blog/* /docs/:splat 302\n/app/* /index.html 200\n");
    write(dir, "_headers", "/*.css\n  X-Style: yes\n/docs/*\n  X-Frame-Options: DENY\n");
    let (first, stderr) = deploy(&cluster, dir, &["--commit-hash", "c0ffee1", "--commit-message", "first"]).await;
    assert!(stderr.contains("6 files, 6 new"), "{stderr}");
    let first_id = first["deployment"]["id"].as_str().expect("an id").to_owned();
    assert_eq!(first["deployment"]["production"], true, "{first}");

    let host = "site.pages.localhost";
    for node in 0..2 {
        until_serves(&cluster, node, host, "home v1").await;
    }
    // The defaults, ETag and revalidation.
    let home = get(&cluster, 1, Method::GET, host, "/", &[]).await;
    assert_eq!(home.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(home.header("access-control-allow-origin"), "*");
    assert_eq!(home.header("referrer-policy"), "strict-origin-when-cross-origin");
    assert_eq!(home.header("x-content-type-options"), "nosniff");
    assert_eq!(home.header("cache-control"), "public, max-age=0, must-revalidate");
    assert_eq!(home.header("x-robots-tag"), "", "production is indexed");
    let etag = home.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    let again = get(&cluster, 0, Method::GET, host, "/", &[("if-none-match", &etag)]).await;
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(again.header("etag"), etag);
    let head = get(&cluster, 0, Method::HEAD, host, "/", &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), home.body.len().to_string());
    let posted = get(&cluster, 0, Method::POST, host, "/", &[]).await;
    assert_eq!(posted.status, 405);

    // Cloudflare's asset rules.
    let about = get(&cluster, 0, Method::GET, host, "/about.html", &[]).await;
    assert_eq!((about.status, about.header("location")), (308, "/about"));
    assert_eq!(get(&cluster, 0, Method::GET, host, "/about", &[]).await.text(), "<p>about</p>");
    let docs = get(&cluster, 0, Method::GET, host, "/docs", &[]).await;
    assert_eq!((docs.status, docs.header("location")), (308, "/docs/"));
    let missing_doc = get(&cluster, 0, Method::GET, host, "/docs/nope", &[]).await;
    assert_eq!((missing_doc.status, missing_doc.text().as_str()), (404, "<p>no such doc</p>"));
    assert_eq!(missing_doc.header("x-frame-options"), "DENY", "_headers apply to the request's path");
    let missing = get(&cluster, 0, Method::GET, host, "/nowhere", &[]).await;
    assert_eq!((missing.status, missing.text().as_str()), (404, "<p>not here</p>"));
    // _redirects: redirects with splats, and a 200 rewrite.
    let old = get(&cluster, 1, Method::GET, host, "/old?x=1", &[]).await;
    assert_eq!((old.status, old.header("location")), (301, "/about?x=1"));
    let blog = get(&cluster, 1, Method::GET, host, "/blog/a/b", &[]).await;
    assert_eq!((blog.status, blog.header("location")), (302, "/docs/a/b"));
    let app = get(&cluster, 1, Method::GET, host, "/app/deep/link", &[]).await;
    assert_eq!((app.status, app.text().contains("home v1")), (200, true));
    // Compression, once the client accepts it; _headers by pattern.
    let css = get(&cluster, 0, Method::GET, host, "/style.css", &[("accept-encoding", "gzip")]).await;
    assert_eq!((css.header("content-encoding"), css.header("x-style")), ("gzip", "yes"));
    assert!(css.body.len() < 1000, "3.8 KB of repeated CSS gzips small: {}", css.body.len());
    assert!(css.header("etag").starts_with("W/"), "a compressed form has a weak ETag");
    let css = get(&cluster, 0, Method::GET, host, "/style.css", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(css.header("content-encoding"), "br");
    let css = get(&cluster, 0, Method::GET, host, "/style.css", &[]).await;
    assert_eq!((css.header("content-encoding"), css.body.len()), ("", 3800));

    // A preview of another branch, at its alias; production unchanged; only the changed
    // file is uploaded.
    write(dir, "index.html", "<title>Home</title><p>home v2</p>");
    let (preview, stderr) = deploy(&cluster, dir, &["--branch", "fix/api"]).await;
    assert!(stderr.contains("6 files, 1 new"), "only index.html is new: {stderr}");
    assert_eq!(preview["deployment"]["alias"], "fix-api");
    assert_eq!(preview["deployment"]["production"], false);
    for node in 0..2 {
        until_serves(&cluster, node, "fix-api.site.pages.localhost", "home v2").await;
    }
    let alias = get(&cluster, 0, Method::GET, "fix-api.site.pages.localhost", "/", &[]).await;
    assert_eq!(alias.header("x-robots-tag"), "noindex", "previews are not indexed");
    assert!(get(&cluster, 0, Method::GET, host, "/", &[]).await.text().contains("home v1"));

    // Production moves on; rollback brings the first back; its own URL never changes.
    write(dir, "index.html", "<title>Home</title><p>home v3</p>");
    deploy(&cluster, dir, &["--commit-message", "third"]).await;
    until_serves(&cluster, 1, host, "home v3").await;
    let output = cluster.nimbus(&["pages", "deployment", "rollback", "site", "--json"]).await.expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for node in 0..2 {
        until_serves(&cluster, node, host, "home v1").await;
    }
    let pinned = format!("{first_id}.site.pages.localhost");
    assert!(get(&cluster, 1, Method::GET, &pinned, "/", &[]).await.text().contains("home v1"));
    let output = cluster.nimbus(&["pages", "deployment", "list", "site", "--json"]).await.expect("runs");
    let listed: Value = serde_json::from_slice(&output.stdout).expect("--json");
    let deployments = listed["deployments"].as_array().expect("deployments");
    assert_eq!(deployments.len(), 3, "{listed}");
    assert_eq!(deployments.iter().filter(|d| d["production"] == true).count(), 1);
    assert!(deployments.iter().any(|d| d["production"] == true && d["id"] == first_id.as_str()), "{listed}");
    assert_eq!(deployments[0]["commit_message"], "third");

    // A broken rules file is refused with its file and line; production is unchanged.
    write(dir, "_redirects", "/old\n");
    let path = dir.to_string_lossy().into_owned();
    let output = cluster.nimbus(&["pages", "deploy", path.as_str(), "--project", "site"]).await.expect("nimbus runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("_redirects:1:"), "{stderr}");
    // A custom domain answers with production on every node; a worker cannot route it.
    let output = cluster.nimbus(&["pages", "domain", "add", "site", "www.example.test"]).await.expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for node in 0..2 {
        until_serves(&cluster, node, "www.example.test", "home v1").await;
    }
    let wasm = nimbus_testkit::examples::wasm_bytes("hello").expect("the hello example");
    let manifest = serde_json::json!({ "routes": ["www.example.test/*"] });
    let refused = cluster.deploy("squatter", &wasm, manifest).await.expect("deploy call");
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    let output = cluster.nimbus(&["pages", "domain", "remove", "site", "www.example.test"]).await.expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    cluster
        .eventually(WAIT, "the removed domain stops answering", || async {
            Ok(get(&cluster, 0, Method::GET, "www.example.test", "/", &[]).await.status == 404)
        })
        .await
        .expect("removed");
    // An upload past 25 MiB is refused before it is buffered; bytes of another hash too.
    let (http, api) = (cluster.http().clone(), cluster.api_url());
    let upload = |hash: String, body: Vec<u8>| {
        let (http, url) = (http.clone(), format!("{api}/v1/pages/assets/{hash}"));
        async move { http.put(url).body(body).send().await.expect("upload").status().as_u16() }
    };
    assert_eq!(upload("ab".repeat(32), vec![0; 25 * 1024 * 1024 + 2]).await, 413);
    assert_eq!(upload("ab".repeat(32), b"not those bytes".to_vec()).await, 400);
    // Unknown projects and hosts.
    assert_eq!(get(&cluster, 0, Method::GET, "nope.pages.localhost", "/", &[]).await.status, 404);
    assert_eq!(get(&cluster, 0, Method::GET, "zzzz.site.pages.localhost", "/", &[]).await.status, 404);

    // Without the control plane, a restarted node serves what it had.
    cluster.kill_control_plane().await.expect("kills");
    cluster.restart_node(1).await.expect("restarts");
    let home = get(&cluster, 1, Method::GET, host, "/", &[]).await;
    assert_eq!((home.status, home.text().contains("home v1")), (200, true));
    let preview = get(&cluster, 1, Method::GET, "fix-api.site.pages.localhost", "/", &[]).await;
    assert!(preview.text().contains("home v2"), "{}", preview.text());
    cluster.stop().await.expect("stops");
}

fn mkdocs_site(root: &Path, site_name: &str, welcome: &str) -> std::path::PathBuf {
    write(root, "mkdocs.yml", &format!("site_name: {site_name}\ntheme:\n  name: mkdocs\n  highlightjs: false\n"));
    write(
        root,
        "docs/index.md",
        &format!("# {welcome}\n\nSee the [guide](guide.md) and [the API](api/reference.md).\n"),
    );
    write(root, "docs/guide.md", "# Guide\n\nBack [home](index.md).\n\n```\ncode block\n```\n");
    write(root, "docs/api/reference.md", "# Reference\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
    let status = std::process::Command::new("mkdocs")
        .args(["build", "--quiet", "--site-dir", "site"])
        .current_dir(root)
        .status()
        .expect("mkdocs runs (scripts/setup installs it)");
    assert!(status.success(), "mkdocs build");
    root.join("site")
}

/// A site made by a real static site generator, opened in a real browser: it renders (title,
/// a screenshot unlike a blank page's), nothing it loads or links to fails, and another
/// branch's preview serves other content at its alias while production stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mkdocs_site_renders_in_chromium_with_every_asset_and_link_loading() {
    let cluster = Cluster::start(ClusterSpec::local(1).expect("spec")).await.expect("cluster starts");
    let output = cluster.nimbus(&["pages", "project", "create", "docs"]).await.expect("nimbus runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let production = tempfile::tempdir().expect("tempdir");
    let site = mkdocs_site(production.path(), "Nimbus Pages Docs", "Welcome");
    let deploy_docs = |dir: std::path::PathBuf, branch: Option<&'static str>| {
        let cluster = &cluster;
        async move {
            let dir = dir.to_string_lossy().into_owned();
            let mut args = vec!["pages", "deploy", dir.as_str(), "--project", "docs"];
            if let Some(branch) = branch {
                args.extend(["--branch", branch]);
            }
            let output = cluster.nimbus(&args).await.expect("nimbus runs");
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        }
    };
    deploy_docs(site, None).await;
    let preview = tempfile::tempdir().expect("tempdir");
    deploy_docs(mkdocs_site(preview.path(), "Nimbus Pages Preview", "Preview"), Some("docs/preview")).await;
    until_serves(&cluster, 0, "docs.pages.localhost", "Welcome").await;
    until_serves(&cluster, 0, "docs-preview.docs.pages.localhost", "Preview").await;

    let port = cluster.nodes[0].url().rsplit(':').next().expect("a port").trim_end_matches('/').to_owned();
    let origin = format!("http://docs.pages.localhost:{port}");
    let urls = vec![
        format!("{origin}/"),
        format!("{origin}/guide/"),
        format!("http://docs-preview.docs.pages.localhost:{port}/"),
        "about:blank".to_string(),
    ];
    let loads = nimbus_testkit::browser::open(&urls, WAIT).await.expect("chromium loads the pages");
    let blank = loads[3].screenshot.len();
    for (url, load) in urls.iter().zip(&loads).take(3) {
        assert!(load.responses.len() >= 4, "{url}: the page, its CSS and scripts: {:?}", load.responses);
        let failed: Vec<_> = load.responses.iter().filter(|(_, status)| *status >= 400).collect();
        assert!(failed.is_empty(), "{url}: failed loads {failed:?}");
        assert!(load.failures.is_empty(), "{url}: network errors {:?}", load.failures);
        assert!(load.screenshot.starts_with(b"\x89PNG"), "{url}: a PNG");
        assert!(
            load.screenshot.len() > blank * 3,
            "{url}: {} bytes against a blank page's {blank}",
            load.screenshot.len()
        );
    }
    assert_eq!(loads[0].title, "Nimbus Pages Docs");
    assert!(loads[1].title.starts_with("Guide - Nimbus Pages Docs"), "{}", loads[1].title);
    assert_eq!(loads[2].title, "Nimbus Pages Preview", "the preview serves its own build");
    // Every internal link of every page answers 200 (after at most one clean-URL redirect).
    let mut links: Vec<String> =
        loads[..2].iter().flat_map(|l| l.links.clone()).filter(|l| l.starts_with(&origin)).collect();
    links.sort();
    links.dedup();
    assert!(links.len() >= 3, "{links:?}");
    for link in links {
        let path = link[origin.len()..].split('#').next().unwrap_or("/").to_owned();
        let mut answer = get(&cluster, 0, Method::GET, "docs.pages.localhost", &path, &[]).await;
        if answer.status == 308 {
            let location = answer.header("location").to_owned();
            answer = get(&cluster, 0, Method::GET, "docs.pages.localhost", &location, &[]).await;
        }
        assert_eq!(answer.status, 200, "{link}");
    }
    let production_home = get(&cluster, 0, Method::GET, "docs.pages.localhost", "/", &[]).await;
    assert!(production_home.text().contains("Welcome"), "production is unchanged by the preview");
    cluster.stop().await.expect("stops");
}

/// `git` in `repo`, as a person would run it (a commit runs its hooks); its stdout.
async fn git(repo: &Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Tester", "-c", "user.email=tester@example.com"])
        .args(args)
        .env_remove("NIMBUS_API_URL")
        .env_remove("NIMBUS_API_TOKEN")
        .output()
        .await
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `nimbus pages connect`: a commit to the production branch deploys production, a commit
/// on another branch a preview at its alias, each built from a clean export of the commit
/// and recorded with its hash and message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_deploy_production_and_branch_previews_through_the_git_hook() {
    let cluster = Cluster::start(ClusterSpec::local(1).expect("spec")).await.expect("cluster starts");
    let output = cluster.nimbus(&["pages", "project", "create", "blog"]).await.expect("nimbus runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let checkout = tempfile::tempdir().expect("tempdir");
    let repo = checkout.path();
    git(repo, &["init", "--quiet", "--initial-branch", "main"]).await;
    write(repo, "src/index.html", "<p>main one</p>");
    write(repo, "functions/api/hello.ts", "export const onRequest = (): Response => new Response(\"fn main\");\n");
    let repo_arg = repo.to_string_lossy().into_owned();
    let build = "mkdir -p dist && cp src/*.html dist/";
    let output = cluster
        .nimbus(&["pages", "connect", "blog", "--repo", &repo_arg, "--build-command", build, "--output-dir", "dist"])
        .await
        .expect("nimbus runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    git(repo, &["add", "."]).await;
    git(repo, &["commit", "--quiet", "-m", "First post"]).await;
    until_serves(&cluster, 0, "blog.pages.localhost", "main one").await;
    // Uncommitted work is not deployed: the hook exports the commit.
    write(repo, "src/index.html", "<p>not committed</p>");
    git(repo, &["checkout", "--quiet", "-b", "feature/new-look"]).await;
    write(repo, "src/index.html", "<p>new look</p>");
    write(repo, "functions/api/hello.ts", "export const onRequest = (): Response => new Response(\"fn preview\");\n");
    git(repo, &["commit", "--quiet", "-am", "New look"]).await;
    let head = git(repo, &["rev-parse", "HEAD"]).await;
    until_serves(&cluster, 0, "feature-new-look.blog.pages.localhost", "new look").await;
    let production = get(&cluster, 0, Method::GET, "blog.pages.localhost", "/", &[]).await;
    assert!(production.text().contains("main one"), "production stays: {}", production.text());
    // Each commit's TypeScript Functions deploy with it.
    assert_eq!(get(&cluster, 0, Method::GET, "blog.pages.localhost", "/api/hello", &[]).await.text(), "fn main");
    let preview = get(&cluster, 0, Method::GET, "feature-new-look.blog.pages.localhost", "/api/hello", &[]).await;
    assert_eq!(preview.text(), "fn preview");

    let output = cluster.nimbus(&["pages", "deployment", "list", "blog", "--json"]).await.expect("runs");
    let listed: Value = serde_json::from_slice(&output.stdout).expect("--json");
    let newest = &listed["deployments"][0];
    assert_eq!(newest["branch"], "feature/new-look", "{listed}");
    assert_eq!(newest["commit_hash"], head.as_str());
    assert_eq!(newest["commit_message"], "New look");
    assert_eq!(newest["production"], false);
    assert_eq!(listed["deployments"][1]["commit_message"], "First post");
    cluster.stop().await.expect("stops");
}

/// Runs `nimbus` and asserts it succeeded; its stdout.
async fn nimbus_ok(cluster: &Cluster, args: &[&str]) -> String {
    let output = cluster.nimbus(args).await.expect("nimbus runs");
    assert!(output.status.success(), "nimbus {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const MIDDLEWARE_TS: &str = r#"interface Env { KV: KVNamespace; DB: D1Database }
type Context = { request: Request; next: () => Promise<Response>; data: Record<string, unknown> };

export const onRequest = [async (context: Context): Promise<Response> => {
  context.data.user = context.request.headers.get("x-user") ?? "anon";
  const response = await context.next();
  const headers = new Headers(response.headers);
  headers.set("x-middleware", "ran");
  return new Response(response.body, { status: response.status, headers });
}];
"#;

const USER_TS: &str = r#"import { Role, greeting } from "../../../lib/roles";
import type { Row } from "../../../lib/roles";

type Params = { id: string };

export const onRequestGet = async ({ params, env, data }: { params: Params; env: any; data: any }) => {
  const row = await env.DB.prepare("SELECT name FROM users WHERE id = ?").bind(params.id).first() as Row | null;
  return Response.json({ id: params.id, name: row?.name ?? null, role: Role.Reader, hello: greeting(data.user as string) });
};

export const onRequestPut = async ({ params, env, request }: { params: Params; env: any; request: Request }) => {
  const body = (await request.json()) as { name: string };
  await env.DB.prepare("INSERT OR REPLACE INTO users (id, name) VALUES (?, ?)").bind(params.id, body.name).run();
  await env.KV.put(`user:${params.id}`, body.name!);
  return new Response(null, { status: 204 });
};
"#;

const ROLES_TS: &str = r#"export enum Role { Admin = "admin", Reader = "reader" }
export enum Level { Low, High = 10, Higher }
export interface Row { name: string }
export function greeting(user: string): string {
  return `hello ${user} (${Level[Level.Higher]}=${Level.Higher})`;
}
"#;

/// A Functions project in TypeScript (middleware, params, a catch-all, KV and D1, `env.ASSETS`),
/// a `_worker.js` project, and a TypeScript syntax error refused with its file and line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_functions_route_with_middleware_params_bindings_and_assets() {
    let cluster = Cluster::start(ClusterSpec::local(2).expect("spec")).await.expect("cluster starts");
    nimbus_ok(&cluster, &["pages", "project", "create", "app"]).await;
    nimbus_ok(&cluster, &["d1", "create", "pagesdb"]).await;
    nimbus_ok(&cluster, &["d1", "execute", "pagesdb", "-c", "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT)"])
        .await;
    let project = tempfile::tempdir().expect("tempdir");
    let root = project.path();
    write(root, "site/index.html", "<p>static home</p>");
    write(root, "site/about.html", "<p>about</p>");
    write(root, "functions/_middleware.ts", MIDDLEWARE_TS);
    write(root, "functions/api/users/[id].ts", USER_TS);
    write(
        root,
        "functions/api/kv/[key].ts",
        "export const onRequestGet = async ({ params, env }: any) => new Response(await env.KV.get(params.key));\n",
    );
    write(
        root,
        "functions/docs/[[path]].ts",
        "export const onRequest = ({ params }: any) => Response.json({ path: params.path });\n",
    );
    write(
        root,
        "functions/shout.ts",
        "export async function onRequest(context: any): Promise<Response> {\n  const about = await context.env.ASSETS.fetch(new URL(\"/about\", context.request.url));\n  return new Response((await about.text()).toUpperCase());\n}\n",
    );
    write(root, "lib/roles.ts", ROLES_TS);
    write(root, "nimbus.toml", "[[kv_namespaces]]\nbinding = \"KV\"\nid = \"users\"\n\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"pagesdb\"\n");
    let (site, functions, config) = (root.join("site"), root.join("functions"), root.join("nimbus.toml"));
    let (site, functions, config) = (
        site.to_string_lossy().into_owned(),
        functions.to_string_lossy().into_owned(),
        config.to_string_lossy().into_owned(),
    );
    let deployed = nimbus_ok(
        &cluster,
        &["pages", "deploy", &site, "--project", "app", "--functions", &functions, "--config", &config, "--json"],
    )
    .await;
    let deployed: Value = serde_json::from_str(&deployed).expect("--json");
    assert!(deployed["deployment"]["worker"].as_str().is_some_and(|w| w.starts_with("pages-app-")), "{deployed}");

    let host = "app.pages.localhost";
    for node in 0..2 {
        until_serves(&cluster, node, host, "static home").await;
    }
    // The root middleware wraps the assets too.
    let home = get(&cluster, 1, Method::GET, host, "/", &[]).await;
    assert_eq!((home.header("x-middleware"), home.text().as_str()), ("ran", "<p>static home</p>"));
    // Params, D1 and KV through the bindings of nimbus.toml; a type-only import and enums.
    let put = raw_client()
        .put(format!("{}/api/users/7", cluster.nodes[0].url()))
        .header("host", host)
        .body(r#"{"name":"Ada"}"#)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 204, "{:?}", put.text().await);
    let user = get(&cluster, 1, Method::GET, host, "/api/users/7", &[("x-user", "bob")]).await;
    assert_eq!(user.status, 200, "{}", user.text());
    let user: Value = serde_json::from_slice(&user.body).expect("json");
    assert_eq!(
        user,
        serde_json::json!({ "id": "7", "name": "Ada", "role": "reader", "hello": "hello bob (Higher=11)" })
    );
    let kv = get(&cluster, 0, Method::GET, host, "/api/kv/user:7", &[]).await;
    assert_eq!((kv.status, kv.text().as_str()), (200, "Ada"));
    // A catch-all, env.ASSETS, and a method no Function handles falling through to the assets.
    let docs = get(&cluster, 0, Method::GET, host, "/docs/a/b/c", &[]).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&docs.body).expect("json"),
        serde_json::json!({ "path": ["a", "b", "c"] })
    );
    assert_eq!(get(&cluster, 0, Method::GET, host, "/shout", &[]).await.text(), "<P>ABOUT</P>");
    assert_eq!(get(&cluster, 0, Method::POST, host, "/api/users/7", &[]).await.status, 405);
    assert_eq!(get(&cluster, 0, Method::GET, host, "/about", &[]).await.text(), "<p>about</p>");

    // A syntax error in a Function is refused with its file, line and column; nothing changes.
    write(root, "functions/broken.ts", "export const onRequest = () => {\n  let x: = 1;\n};\n");
    let output = cluster
        .nimbus(&["pages", "deploy", &site, "--project", "app", "--functions", &functions, "--config", &config])
        .await
        .expect("nimbus runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("functions/broken.ts:2:"), "{stderr}");
    std::fs::remove_file(root.join("functions/broken.ts")).expect("rm");

    // Advanced mode: `_worker.js` answers everything and reaches the assets itself.
    nimbus_ok(&cluster, &["pages", "project", "create", "adv"]).await;
    write(root, "adv/index.html", "<p>adv home</p>");
    write(
        root,
        "adv/_worker.js",
        "export default {\n  async fetch(request, env) {\n    if (new URL(request.url).pathname === \"/api\") return new Response(\"from the worker\");\n    return env.ASSETS.fetch(request);\n  },\n};\n",
    );
    let adv = root.join("adv").to_string_lossy().into_owned();
    nimbus_ok(&cluster, &["pages", "deploy", &adv, "--project", "adv"]).await;
    until_serves(&cluster, 0, "adv.pages.localhost", "adv home").await;
    assert_eq!(get(&cluster, 0, Method::GET, "adv.pages.localhost", "/api", &[]).await.text(), "from the worker");
    // Never served as a file (without a 404.html the site is a single-page application).
    let source = get(&cluster, 0, Method::GET, "adv.pages.localhost", "/_worker.js", &[]).await;
    assert!(!source.text().contains("export default"), "{}", source.text());
    cluster.stop().await.expect("stops");
}

const WORKER_TS: &str = r#"import { double, type Pair } from "./util";

interface Env { GREETING: string }

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/boom") {
      throw new Error("boom at line 9");
    }
    const pair: Pair = { a: 2, b: 3 } satisfies Pair;
    return Response.json({ greeting: env.GREETING, doubled: double(pair.a + pair.b) });
  },
};
"#;

/// A `.ts` worker deploys directly (`main = "src/index.ts"`, importing `./util` meaning
/// `util.ts`); a throw is reported at its line in the `.ts` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_workers_deploy_directly_and_errors_point_at_the_ts_lines() {
    let cluster = Cluster::start(ClusterSpec::local(1).expect("spec")).await.expect("cluster starts");
    let project = tempfile::tempdir().expect("tempdir");
    let root = project.path();
    write(root, "nimbus.toml", "name = \"ts-hello\"\nmain = \"src/index.ts\"\n\n[vars]\nGREETING = \"hi\"\n");
    write(root, "src/index.ts", WORKER_TS);
    write(
        root,
        "src/util.ts",
        "export type Pair = { a: number; b: number };\nexport const double = (n: number): number => n * 2;\n",
    );
    let config = root.join("nimbus.toml").to_string_lossy().into_owned();
    nimbus_ok(&cluster, &["deploy", "-c", &config]).await;
    let (status, body) = cluster.get_worker(0, "ts-hello", "/").await.expect("request");
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).ok()),
        (200, Some(serde_json::json!({ "greeting": "hi", "doubled": 10 })))
    );
    let (status, body) = cluster.get_worker(0, "ts-hello", "/boom").await.expect("request");
    assert_eq!(status, 500, "{body}");
    let log = cluster.node_log(0).expect("the node's log");
    assert!(log.contains("src/index.ts:9"), "the stack names the .ts line: {}", &log[log.len().saturating_sub(3000)..]);

    // A type error is TypeScript's business; a syntax error is refused with its position.
    write(root, "src/util.ts", "export const double = (n: number): number => {\n  return n *;\n};\n");
    let output = cluster.nimbus(&["deploy", "-c", &config]).await.expect("nimbus runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("src/util.ts:2:"), "{stderr}");
    assert!(stderr.contains("HTTP 400"), "{stderr}");
    cluster.stop().await.expect("stops");
}
