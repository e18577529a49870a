//! A node's management API as `nimbus kv` and `nimbus d1` call it: one client, and a failed call
//! turned into one readable line (the node's `error` message and the HTTP status).

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

pub struct Node {
    url: String,
    http: reqwest::Client,
}

impl Node {
    /// A node's management API at `url`, presenting `token`.
    pub fn new((url, token): (String, String), timeout: Duration) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        Ok(Node { url, http: reqwest::Client::builder().timeout(timeout).default_headers(headers).build()? })
    }

    /// Sends raw bytes; the response when the node answers 2xx.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        self.checked(self.http.request(method, format!("{}{path}", self.url)).query(query).body(body)).await
    }

    /// Streams a body (with its length, when known) and reads the reply as `T`.
    pub async fn stream_json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: reqwest::Body,
        length: Option<u64>,
        content_type: Option<String>,
    ) -> Result<T> {
        let mut request = self.http.request(method, format!("{}{path}", self.url)).body(body);
        if let Some(length) = length {
            request = request.header(reqwest::header::CONTENT_LENGTH, length);
        }
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let value: Value = self.checked(request).await?.json().await?;
        serde_json::from_value(value).with_context(|| format!("reading the node's answer to {path}"))
    }

    /// Sends raw bytes and reads a JSON reply.
    pub async fn json(&self, method: Method, path: &str, query: &[(&str, String)], body: Vec<u8>) -> Result<Value> {
        Ok(self.send(method, path, query, body).await?.json().await?)
    }

    /// Sends raw bytes and reads the reply as `T` (a type of `nimbus_api`).
    pub async fn json_as<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<T> {
        let value = self.json(method, path, query, body).await?;
        serde_json::from_value(value).with_context(|| format!("reading the node's answer to {path}"))
    }

    /// Sends a JSON body (if any) and reads a JSON reply.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(self.checked(request).await?.json().await?)
    }

    /// [`Node::call`], its reply read as `T` (a type of `nimbus_api`).
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let value = self.call(method, path, body).await?;
        serde_json::from_value(value).with_context(|| format!("reading the node's answer to {path}"))
    }

    async fn checked(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = request.send().await.with_context(|| format!("cannot reach the node at {}", self.url))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{} (HTTP {status})", message.trim_end());
    }
}
