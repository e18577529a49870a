//! A real browser for tests: Debian's `chromium-headless-shell`, driven over the Chrome
//! DevTools Protocol. [`open`] loads a URL and reports what a person and the network log
//! would see: the title, every response's status, the links on the page, a screenshot.
//!
//! Chromium resolves every `*.localhost` name to loopback itself, so Pages hosts need no
//! resolver. The browser runs with a fresh profile in a temporary directory and is killed
//! when [`open`] returns.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// The browser's executable (Debian's package `chromium-headless-shell`).
pub const CHROMIUM: &str = "chromium-headless-shell";

/// What loading a page showed.
#[derive(Debug, Clone)]
pub struct PageLoad {
    pub title: String,
    /// Every response the page's load received: (URL, HTTP status).
    pub responses: Vec<(String, u16)>,
    /// Requests that got no response at all: (URL, the network error).
    pub failures: Vec<(String, String)>,
    /// The absolute `href` of every link on the page.
    pub links: Vec<String>,
    /// A PNG of the viewport.
    pub screenshot: Vec<u8>,
}

/// Opens each URL in turn in one headless Chromium, within `timeout` each.
pub async fn open(urls: &[String], timeout: Duration) -> Result<Vec<PageLoad>> {
    let profile = tempfile::tempdir().context("a profile directory")?;
    let mut child = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1280,800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {CHROMIUM} (scripts/setup installs it)"))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let endpoint = tokio::time::timeout(timeout, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find("ws://") {
                return Ok(line[at..].trim().to_owned());
            }
        }
        bail!("{CHROMIUM} exited before it listened")
    })
    .await
    .context("waiting for the DevTools endpoint")??;
    // Chromium's later messages are not read; keep the pipe drained so it never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (ws, _) = tokio_tungstenite::connect_async(&endpoint).await.context("connecting to DevTools")?;
    let mut cdp = Cdp { ws, next_id: 0, events: Vec::new() };
    let mut loads = Vec::new();
    for url in urls {
        let load = tokio::time::timeout(timeout, cdp.load(url)).await.with_context(|| format!("loading {url}"))??;
        loads.push(load);
    }
    let _ = child.kill().await;
    Ok(loads)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Cdp {
    ws: Socket,
    next_id: u64,
    /// Events read while waiting for a reply: (session, method, params).
    events: Vec<(String, String, Value)>,
}

impl Cdp {
    /// Sends `method` (to `session`, or the browser) and returns its result.
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.ws.send(Message::text(message.to_string())).await?;
        loop {
            let reply = self.read().await?;
            if reply["id"].as_u64() == Some(id) {
                if let Some(error) = reply.get("error") {
                    bail!("{method}: {error}");
                }
                return Ok(reply["result"].clone());
            }
            self.keep(reply);
        }
    }

    async fn read(&mut self) -> Result<Value> {
        loop {
            match self.ws.next().await.ok_or_else(|| anyhow!("DevTools closed"))?? {
                Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                Message::Close(_) => bail!("DevTools closed"),
                _ => {}
            }
        }
    }

    fn keep(&mut self, message: Value) {
        if let Some(method) = message["method"].as_str() {
            let session = message["sessionId"].as_str().unwrap_or("").to_owned();
            self.events.push((session, method.to_owned(), message["params"].clone()));
        }
    }

    async fn load(&mut self, url: &str) -> Result<PageLoad> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" })).await?;
        let target_id = target["targetId"].as_str().ok_or_else(|| anyhow!("no targetId"))?.to_owned();
        let attached =
            self.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await?;
        let session = attached["sessionId"].as_str().ok_or_else(|| anyhow!("no sessionId"))?.to_owned();
        let s = Some(session.as_str());
        self.call(s, "Network.enable", json!({})).await?;
        self.call(s, "Page.enable", json!({})).await?;
        self.events.clear();
        self.call(s, "Page.navigate", json!({ "url": url })).await?;
        // The load event comes after every subresource the document asked for.
        let loaded = |events: &[(String, String, Value)]| {
            events.iter().any(|(at, method, _)| *at == session && method == "Page.loadEventFired")
        };
        while !loaded(&self.events) {
            let message = self.read().await?;
            self.keep(message);
        }
        let evaluate = |expression: &str| json!({ "expression": expression, "returnByValue": true });
        let title = self.call(s, "Runtime.evaluate", evaluate("document.title")).await?;
        let links = self
            .call(
                s,
                "Runtime.evaluate",
                evaluate("JSON.stringify([...document.querySelectorAll('a[href]')].map(a => a.href))"),
            )
            .await?;
        let shot = self.call(s, "Page.captureScreenshot", json!({ "format": "png" })).await?;
        let mut responses = Vec::new();
        let mut failures = Vec::new();
        for (at, method, params) in &self.events {
            if *at != session {
                continue;
            }
            match method.as_str() {
                "Network.responseReceived" => responses.push((
                    params["response"]["url"].as_str().unwrap_or("").to_owned(),
                    params["response"]["status"].as_u64().unwrap_or(0) as u16,
                )),
                "Network.loadingFailed" => failures.push((
                    params["requestId"].as_str().unwrap_or("").to_owned(),
                    params["errorText"].as_str().unwrap_or("").to_owned(),
                )),
                _ => {}
            }
        }
        self.call(None, "Target.closeTarget", json!({ "targetId": target_id })).await?;
        Ok(PageLoad {
            title: title["result"]["value"].as_str().unwrap_or("").to_owned(),
            responses,
            failures,
            links: serde_json::from_str(links["result"]["value"].as_str().unwrap_or("[]"))?,
            screenshot: base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap_or(""))
                .context("the screenshot's base64")?,
        })
    }
}
