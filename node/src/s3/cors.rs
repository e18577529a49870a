//! Bucket CORS rules as S3 evaluates them: stored with the bucket (as JSON), answered to a
//! browser's preflight (`OPTIONS`, unsigned, as browsers send it), and added to the actual
//! responses of signed requests from an allowed origin.

use super::{xml, Addressed, Answer};
use axum::response::IntoResponse;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use nimbus_r2::{R2Error, R2};
use serde::{Deserialize, Serialize};

/// Rules one bucket may hold (S3's limit).
const MAX_RULES: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules(pub Vec<Rule>);

fn malformed(message: &str) -> R2Error {
    R2Error::Limit { code: "MalformedXML".into(), message: message.into() }
}

/// `*` anywhere in a pattern matches any run of characters (S3 allows one).
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(text),
        Some((head, tail)) => {
            text.len() >= head.len() + tail.len()
                && text[..head.len()].eq_ignore_ascii_case(head)
                && text[text.len() - tail.len()..].eq_ignore_ascii_case(tail)
        }
    }
}

impl Rules {
    pub fn from_xml(root: &xml::Element) -> Result<Rules, R2Error> {
        if root.name != "CORSConfiguration" {
            return Err(malformed("the document is a CORSConfiguration"));
        }
        let texts =
            |rule: &xml::Element, name: &str| rule.children(name).map(|e| e.text.trim().to_owned()).collect::<Vec<_>>();
        let mut rules = Vec::new();
        for rule in root.children("CORSRule") {
            let parsed = Rule {
                allowed_origins: texts(rule, "AllowedOrigin"),
                allowed_methods: texts(rule, "AllowedMethod"),
                allowed_headers: texts(rule, "AllowedHeader"),
                expose_headers: texts(rule, "ExposeHeader"),
                max_age_seconds: rule.text_of("MaxAgeSeconds").and_then(|s| s.parse().ok()),
            };
            if parsed.allowed_origins.is_empty() || parsed.allowed_methods.is_empty() {
                return Err(malformed("every CORSRule has an AllowedOrigin and an AllowedMethod"));
            }
            if let Some(method) =
                parsed.allowed_methods.iter().find(|m| !["GET", "PUT", "POST", "DELETE", "HEAD"].contains(&m.as_str()))
            {
                return Err(malformed(&format!("{method} is not a method CORS rules allow")));
            }
            rules.push(parsed);
        }
        if rules.is_empty() || rules.len() > MAX_RULES {
            return Err(malformed("a CORS configuration has 1 to 100 rules"));
        }
        Ok(Rules(rules))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Rules, R2Error> {
        serde_json::from_str(text).map_err(|e| R2Error::Internal(format!("stored CORS rules: {e}")))
    }

    pub fn to_xml(&self) -> String {
        let mut document = xml::Writer::new("CORSConfiguration");
        for rule in &self.0 {
            document.open("CORSRule");
            for origin in &rule.allowed_origins {
                document.field("AllowedOrigin", origin);
            }
            for method in &rule.allowed_methods {
                document.field("AllowedMethod", method);
            }
            for name in &rule.allowed_headers {
                document.field("AllowedHeader", name);
            }
            for name in &rule.expose_headers {
                document.field("ExposeHeader", name);
            }
            if let Some(age) = rule.max_age_seconds {
                document.field("MaxAgeSeconds", age);
            }
            document.close("CORSRule");
        }
        document.finish("CORSConfiguration")
    }

    /// The first rule that allows `origin` to use `method` with `headers`.
    pub fn matching(&self, origin: &str, method: &str, headers: &[String]) -> Option<&Rule> {
        self.0.iter().find(|rule| {
            rule.allowed_origins.iter().any(|o| wildcard(o, origin))
                && rule.allowed_methods.iter().any(|m| m.eq_ignore_ascii_case(method))
                && headers.iter().all(|h| rule.allowed_headers.iter().any(|allowed| wildcard(allowed, h)))
        })
    }
}

async fn rules(r2: &R2, bucket: &str) -> Result<Option<Rules>, R2Error> {
    r2.cors(bucket).await?.map(|stored| Rules::from_json(&stored)).transpose()
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Answers a browser's preflight: 200 with the allowed origin, methods and headers, or 403.
pub async fn preflight(r2: &R2, addressed: &Addressed, headers: &HeaderMap) -> Answer {
    let forbidden = || R2Error::AccessDenied("CORSResponse: this CORS request is not allowed");
    let bucket = addressed.bucket.as_deref().ok_or_else(forbidden)?;
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (Some(origin), Some(method)) = (text(header::ORIGIN), text(header::ACCESS_CONTROL_REQUEST_METHOD)) else {
        return Err(R2Error::InvalidRequest(
            "a CORS preflight names its Origin and Access-Control-Request-Method".into(),
        ));
    };
    let requested: Vec<String> = text(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .map(|list| list.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect())
        .unwrap_or_default();
    let rules = rules(r2, bucket).await?.ok_or_else(forbidden)?;
    let rule = rules.matching(&origin, &method, &requested).ok_or_else(forbidden)?;
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    set(out, "access-control-allow-origin", if any_origin { "*" } else { &origin });
    set(out, "access-control-allow-methods", &rule.allowed_methods.join(", "));
    if !requested.is_empty() {
        set(out, "access-control-allow-headers", &requested.join(", "));
    }
    if !rule.expose_headers.is_empty() {
        set(out, "access-control-expose-headers", &rule.expose_headers.join(", "));
    }
    if let Some(age) = rule.max_age_seconds {
        set(out, "access-control-max-age", &age.to_string());
    }
    set(out, "vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method");
    Ok(response)
}

/// Adds the CORS headers to an actual response when a rule allows the request's origin.
pub async fn decorate(r2: &R2, bucket: &str, origin: &HeaderValue, method: &Method, out: &mut HeaderMap) {
    let Ok(origin) = origin.to_str() else { return };
    let Ok(Some(rules)) = rules(r2, bucket).await else { return };
    let Some(rule) = rules.matching(origin, method.as_str(), &[]) else { return };
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    set(out, "access-control-allow-origin", if any_origin { "*" } else { origin });
    if !rule.expose_headers.is_empty() {
        set(out, "access-control-expose-headers", &rule.expose_headers.join(", "));
    }
    set(out, "vary", "Origin");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_origins_methods_and_headers_as_s3_does() {
        let document = br#"<CORSConfiguration><CORSRule><AllowedOrigin>https://*.example.com</AllowedOrigin>
            <AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>x-amz-*</AllowedHeader>
            <AllowedHeader>content-type</AllowedHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>"#;
        let rules = Rules::from_xml(&xml::parse(document).expect("xml")).expect("rules");
        assert!(rules
            .matching("https://app.example.com", "PUT", &["content-type".into(), "x-amz-date".into()])
            .is_some());
        assert!(rules.matching("https://app.example.com", "DELETE", &[]).is_none(), "method not allowed");
        assert!(rules.matching("https://evil.test", "GET", &[]).is_none(), "origin not allowed");
        assert!(rules.matching("https://app.example.com", "GET", &["authorization".into()]).is_none());
        assert_eq!(Rules::from_json(&rules.to_json()).expect("round trip"), rules);
        let bad = xml::parse(b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule></CORSConfiguration>");
        assert!(Rules::from_xml(&bad.expect("xml")).is_err());
    }
}
