//! What an S3 request addresses and carries: the bucket and key (path-style or
//! virtual-host-style), the query, the object metadata and conditions in its headers, the
//! `response-*` overrides, continuation tokens, and `aws-chunked` bodies.

use super::xml;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue};
use nimbus_r2::conditions::Conditions;
use nimbus_r2::meta::HttpMetadata;
use nimbus_r2::{BodyStream, R2Error};
use std::collections::BTreeMap;

/// The bucket and key a request names (either may be absent: ListBuckets, bucket operations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressed {
    pub bucket: Option<String>,
    pub key: Option<String>,
}

fn decode(text: &str) -> Result<String, R2Error> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| R2Error::InvalidRequest("the path is not UTF-8".into()))
}

/// Reads the bucket from the Host (`<bucket>.<domain>`) or the path's first segment.
pub fn address(request: &http::request::Parts, domain: &str) -> Result<Addressed, R2Error> {
    let path = request.uri.path();
    let host =
        request.headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| request.uri.host()).unwrap_or("");
    let host =
        host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    let virtual_bucket = (!domain.is_empty())
        .then(|| host.strip_suffix(domain).and_then(|rest| rest.strip_suffix('.')))
        .flatten()
        .filter(|bucket| !bucket.is_empty());
    let rest = path.strip_prefix('/').unwrap_or(path);
    let (bucket, key) = match virtual_bucket {
        Some(bucket) => (Some(bucket.to_owned()), (!rest.is_empty()).then(|| rest.to_owned())),
        None => match rest.split_once('/') {
            Some((bucket, key)) => (Some(bucket.to_owned()), (!key.is_empty()).then(|| key.to_owned())),
            None => ((!rest.is_empty()).then(|| rest.to_owned()), None),
        },
    };
    let bucket = bucket.map(|b| decode(&b)).transpose()?;
    if let Some(bucket) = &bucket {
        nimbus_r2::meta::check_bucket_name(bucket)?;
    }
    let key = key.map(|k| decode(&k)).transpose()?;
    if let Some(key) = &key {
        nimbus_r2::limits::check_key(key)?;
    }
    Ok(Addressed { bucket, key })
}

/// A request's query, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: &str) -> Query {
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let plus = |s: &str| s.replace('+', " ");
                let decode = |s: &str| percent_encoding::percent_decode_str(&plus(s)).decode_utf8_lossy().into_owned();
                (decode(name), decode(value))
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// `uploadId` and `partNumber`, when both are there (UploadPart, UploadPartCopy).
    pub fn upload(&self) -> Option<(String, u32)> {
        let id = self.get("uploadId")?.to_owned();
        let part = self.get("partNumber")?.parse().ok()?;
        Some((id, part))
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The HTTP metadata and `x-amz-meta-*` custom metadata a PUT (or a replacing copy) sets.
pub fn metadata(headers: &HeaderMap) -> Result<(HttpMetadata, BTreeMap<String, String>), R2Error> {
    let http = HttpMetadata {
        content_type: header_text(headers, "content-type"),
        content_language: header_text(headers, "content-language"),
        content_disposition: header_text(headers, "content-disposition"),
        content_encoding: header_text(headers, "content-encoding")
            .map(|e| e.split(',').map(str::trim).filter(|c| *c != "aws-chunked").collect::<Vec<_>>().join(", "))
            .filter(|e| !e.is_empty()),
        cache_control: header_text(headers, "cache-control"),
        expires: header_text(headers, "expires"),
    };
    let mut custom = BTreeMap::new();
    for (name, value) in headers {
        if let Some(name) = name.as_str().strip_prefix("x-amz-meta-") {
            let value =
                value.to_str().map_err(|_| R2Error::InvalidRequest(format!("x-amz-meta-{name} is not text")))?;
            custom.insert(name.to_owned(), value.to_owned());
        }
    }
    Ok((http, custom))
}

/// The conditions in `<prefix>if-match` … (`x-amz-copy-source-` for a copy's source).
pub fn conditions(headers: &HeaderMap, prefix: &str) -> Conditions {
    let get = |name: &str| header_text(headers, &format!("{prefix}{name}"));
    Conditions {
        if_match: get("if-match"),
        if_none_match: get("if-none-match"),
        if_modified_since: get("if-modified-since").and_then(|d| xml::parse_http_date(&d)),
        if_unmodified_since: get("if-unmodified-since").and_then(|d| xml::parse_http_date(&d)),
    }
}

/// GetObject's `response-*` query parameters replace the headers they name.
pub fn overrides(query: &Query, headers: &mut HeaderMap) {
    for (parameter, name) in [
        ("response-content-type", header::CONTENT_TYPE),
        ("response-content-language", header::CONTENT_LANGUAGE),
        ("response-expires", header::EXPIRES),
        ("response-cache-control", header::CACHE_CONTROL),
        ("response-content-disposition", header::CONTENT_DISPOSITION),
        ("response-content-encoding", header::CONTENT_ENCODING),
    ] {
        if let Some(value) = query.get(parameter).and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
}

/// A request id for the `x-amz-request-id` header.
pub fn request_id() -> HeaderValue {
    HeaderValue::from_str(&format!("{:016X}", rand_id())).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    start ^ NEXT.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
}

/// A key percent-encoded for `encoding-type=url` (as S3 encodes: everything but unreserved
/// characters and `/`).
pub fn url_encode(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

/// ListObjectsV2's continuation token: the last key listed, hex-encoded (opaque to clients).
pub fn encode_token(last: &str) -> String {
    hex::encode(last)
}

pub fn decode_token(token: &str) -> Result<String, R2Error> {
    hex::decode(token).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(|| R2Error::Limit {
        code: "InvalidArgument".into(),
        message: "the continuation token is not one this server gave".into(),
    })
}

/// The longest `aws-chunked` chunk header line.
const MAX_CHUNK_HEADER: usize = 4096;

/// Decodes an `aws-chunked` body (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`): `<hex size>[;…]\r\n`,
/// the bytes, `\r\n`, …, a zero-size chunk, then trailers (checksums), which are dropped.
pub fn aws_chunked(raw: BodyStream) -> BodyStream {
    enum State {
        Header,
        Data(usize),
        DataEnd,
        Trailers,
    }
    let stream = futures::stream::unfold(
        (raw, BytesMut::new(), State::Header, false),
        |(mut raw, mut buffer, mut state, mut ended)| async move {
            loop {
                match state {
                    State::Header => {
                        if let Some(at) = buffer.windows(2).position(|w| w == b"\r\n") {
                            let line = buffer.split_to(at + 2);
                            let text = String::from_utf8_lossy(&line[..at]).into_owned();
                            let size = text.split(';').next().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                            match size {
                                Some(0) => state = State::Trailers,
                                Some(size) => state = State::Data(size),
                                None => {
                                    return Some((
                                        Err(malformed("a chunk header")),
                                        (raw, buffer, State::Trailers, true),
                                    ))
                                }
                            }
                            continue;
                        }
                        if buffer.len() > MAX_CHUNK_HEADER {
                            return Some((
                                Err(malformed("a chunk header too long")),
                                (raw, buffer, State::Trailers, true),
                            ));
                        }
                    }
                    State::Data(left) if !buffer.is_empty() => {
                        let take = left.min(buffer.len());
                        let data = buffer.split_to(take).freeze();
                        state = if take == left { State::DataEnd } else { State::Data(left - take) };
                        return Some((Ok(data), (raw, buffer, state, ended)));
                    }
                    State::Data(_) => {}
                    State::DataEnd if buffer.len() >= 2 => {
                        if &buffer[..2] != b"\r\n" {
                            return Some((Err(malformed("a chunk's end")), (raw, buffer, State::Trailers, true)));
                        }
                        buffer.advance(2);
                        state = State::Header;
                        continue;
                    }
                    State::DataEnd => {}
                    State::Trailers => {
                        // Trailers (checksums) and the final CRLF: read and dropped.
                        if ended {
                            return None;
                        }
                        buffer.clear();
                    }
                }
                if ended {
                    return match state {
                        State::Trailers => None,
                        _ => Some((
                            Err(malformed("the body ended inside a chunk")),
                            (raw, buffer, State::Trailers, true),
                        )),
                    };
                }
                match raw.next().await {
                    Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
                    Some(Err(e)) => return Some((Err(e), (raw, buffer, State::Trailers, true))),
                    None => ended = true,
                }
            }
        },
    );
    Box::pin(stream)
}

fn malformed(what: &str) -> R2Error {
    R2Error::InvalidRequest(format!("the aws-chunked body is malformed: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;

    use bytes::Bytes;

    async fn decoded(pieces: &[&[u8]]) -> Result<Vec<u8>, R2Error> {
        let raw: Vec<Result<Bytes, R2Error>> = pieces.iter().map(|p| Ok(Bytes::copy_from_slice(p))).collect();
        let mut stream = aws_chunked(Box::pin(futures::stream::iter(raw)));
        let mut out = Vec::new();
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn aws_chunked_bodies_decode_across_any_split() {
        let body = b"5\r\nhello\r\n6;chunk-signature=ab\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(decoded(&[a, b]).await.expect("decodes"), b"hello world", "split at {split}");
        }
        assert!(decoded(&[b"5\r\nhel"]).await.is_err(), "a body that ends inside a chunk fails");
        assert!(decoded(&[b"zz\r\n"]).await.is_err());
        assert!(decoded(&[b"5\r\nhelloXX0\r\n\r\n"]).await.is_err(), "a chunk must end with CRLF");
    }

    #[test]
    fn path_and_virtual_host_style_address_the_same_object() {
        let request = |host: &str, path: &str| {
            Request::builder().uri(path).header(header::HOST, host).body(Body::empty()).expect("request").into_parts().0
        };
        let both = Addressed { bucket: Some("media".into()), key: Some("a b/c.txt".into()) };
        assert_eq!(address(&request("localhost:9000", "/media/a%20b/c.txt"), "r2.localhost").expect("path"), both);
        assert_eq!(address(&request("media.r2.localhost:9000", "/a%20b/c.txt"), "r2.localhost").expect("vhost"), both);
        let root = address(&request("localhost", "/"), "").expect("root");
        assert_eq!(root, Addressed { bucket: None, key: None });
        assert!(address(&request("localhost", "/Bad_Bucket/x"), "").is_err());
        let long = format!("/media/{}", "k".repeat(1025));
        assert!(matches!(address(&request("localhost", &long), ""), Err(R2Error::KeyTooLong { .. })));
    }
}
