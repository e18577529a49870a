//! Which asset answers a path, by Cloudflare Pages' rules (`html_handling` "auto trailing
//! slash", `not_found_handling` "404-page" or single-page application):
//!
//! - `/x.html` redirects to `/x`, and `/a/index.html` (or `/a/index`) to `/a/` (308);
//! - `/x` serves `/x.html`, and `/a/` serves `/a/index.html`; `/a` redirects to `/a/` when
//!   only `/a/index.html` exists, and `/a/` to `/a` when only `/a.html` does;
//! - a miss is answered by the nearest `404.html` walking up the path, with status 404; when
//!   there is no `404.html` at the top, the site is taken for a single-page application and
//!   `/index.html` answers with 200.
//!
//! The caller says which files exist; this module never reads them.

/// What answers a request for a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Serve the file at `file` with `status` (200, or 404 for a `404.html`).
    Serve { file: String, status: u16 },
    /// Redirect (308) to `location`.
    Redirect { location: String },
    /// Nothing answers.
    NotFound,
}

/// Resolves `path` (decoded, starting with `/`) against the files `exists` knows.
pub fn lookup(path: &str, exists: impl Fn(&str) -> bool) -> Lookup {
    let redirect = |location: String| Lookup::Redirect { location };
    let serve = |file: String| Lookup::Serve { file, status: 200 };
    // Explicit `.html` and `index` names redirect to their clean form.
    if let Some(dir) = path.strip_suffix("index.html").filter(|d| d.ends_with('/')) {
        if exists(path) {
            return redirect(dir.to_owned());
        }
    } else if let Some(dir) = path.strip_suffix("/index") {
        if exists(&format!("{dir}/index.html")) {
            return redirect(format!("{dir}/"));
        }
    } else if let Some(stem) = path.strip_suffix(".html") {
        if exists(path) {
            return redirect(stem.to_owned());
        }
    }
    if path.ends_with('/') {
        let index = format!("{path}index.html");
        if exists(&index) {
            return serve(index);
        }
        let stem = path.trim_end_matches('/');
        if !stem.is_empty() && exists(&format!("{stem}.html")) {
            return redirect(stem.to_owned());
        }
    } else {
        if exists(path) {
            return serve(path.to_owned());
        }
        let html = format!("{path}.html");
        if exists(&html) {
            return serve(html);
        }
        if exists(&format!("{path}/index.html")) {
            return redirect(format!("{path}/"));
        }
    }
    not_found(path, exists)
}

fn not_found(path: &str, exists: impl Fn(&str) -> bool) -> Lookup {
    let mut dir = &path[..path.rfind('/').map_or(0, |at| at + 1)];
    loop {
        let page = format!("{dir}404.html");
        if exists(&page) {
            return Lookup::Serve { file: page, status: 404 };
        }
        if dir.len() <= 1 {
            break;
        }
        let parent = dir[..dir.len() - 1].rfind('/').map_or(0, |at| at + 1);
        dir = &dir[..parent.max(1)];
    }
    if exists("/index.html") {
        Lookup::Serve { file: "/index.html".into(), status: 200 }
    } else {
        Lookup::NotFound
    }
}

/// The `Content-Type` of a file, by its extension (`application/octet-stream` when unknown).
pub fn content_type(file: &str) -> &'static str {
    let extension = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "json" | "map" => "application/json; charset=utf-8",
        "webmanifest" => "application/manifest+json; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "xml" => "application/xml; charset=utf-8",
        "svg" => "image/svg+xml; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Whether a response of this type is worth compressing (text; not images or archives).
pub fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.contains("javascript")
        || content_type.contains("json")
        || content_type.contains("xml")
        || content_type.starts_with("application/wasm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(files: &'static [&'static str]) -> impl Fn(&str) -> bool {
        move |path| files.contains(&path)
    }

    fn serve(file: &str) -> Lookup {
        Lookup::Serve { file: file.into(), status: 200 }
    }

    fn redirect(location: &str) -> Lookup {
        Lookup::Redirect { location: location.into() }
    }

    const FILES: &[&str] =
        &["/index.html", "/contact.html", "/about/index.html", "/docs/404.html", "/404.html", "/style.css"];

    #[test]
    fn clean_urls_as_cloudflare_serves_them() {
        let exists = site(FILES);
        assert_eq!(lookup("/", &exists), serve("/index.html"));
        assert_eq!(lookup("/contact", &exists), serve("/contact.html"));
        assert_eq!(lookup("/contact.html", &exists), redirect("/contact"));
        assert_eq!(lookup("/contact/", &exists), redirect("/contact"));
        assert_eq!(lookup("/about/", &exists), serve("/about/index.html"));
        assert_eq!(lookup("/about", &exists), redirect("/about/"));
        assert_eq!(lookup("/about/index.html", &exists), redirect("/about/"));
        assert_eq!(lookup("/about/index", &exists), redirect("/about/"));
        assert_eq!(lookup("/index.html", &exists), redirect("/"));
        assert_eq!(lookup("/style.css", &exists), serve("/style.css"));
    }

    #[test]
    fn the_nearest_404_page_or_the_single_page_app() {
        let exists = site(FILES);
        assert_eq!(lookup("/docs/a/b/missing", &exists), Lookup::Serve { file: "/docs/404.html".into(), status: 404 });
        assert_eq!(lookup("/docs/missing", &exists), Lookup::Serve { file: "/docs/404.html".into(), status: 404 });
        assert_eq!(lookup("/nowhere", &exists), Lookup::Serve { file: "/404.html".into(), status: 404 });
        // No top-level 404.html: a single-page application, index.html answers everything.
        let spa = site(&["/index.html", "/assets/app.js"]);
        assert_eq!(lookup("/dashboard/settings", &spa), serve("/index.html"));
        assert_eq!(lookup("/assets/app.js", &spa), serve("/assets/app.js"));
        assert_eq!(lookup("/x", site(&["/other.txt"])), Lookup::NotFound);
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/a/app.JS"), "application/javascript; charset=utf-8");
        assert_eq!(content_type("/logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(content_type("/font.woff2"), "font/woff2");
        assert_eq!(content_type("/LICENSE"), "application/octet-stream");
        assert!(compressible(content_type("/a.css")) && !compressible(content_type("/a.png")));
    }
}
