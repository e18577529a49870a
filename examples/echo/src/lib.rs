//! Returns what it received: method, path, headers and body, as JSON-ish text.

struct Echo;

impl nimbus::Handler for Echo {
    fn fetch(req: nimbus::Request) -> nimbus::Result<nimbus::Response> {
        let mut out = format!("method: {}\npath: {}\n", req.method, req.path);
        for (name, value) in &req.headers {
            out.push_str(&format!("header: {name}: {}\n", String::from_utf8_lossy(value)));
        }
        out.push_str(&format!("body-length: {}\n", req.body.len()));
        out.push_str("body: ");
        out.push_str(&String::from_utf8_lossy(&req.body));
        Ok(nimbus::Response::text(out))
    }
}

nimbus::export!(Echo);
