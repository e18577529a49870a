//! What an S3 request addresses and carries: the bucket and key (path-style or
//! virtual-host-style), the query, the object metadata and conditions in its headers, the
//! `response-*` overrides, continuation tokens, and `aws-chunked` bodies.

use super::xml;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use http::{header, HeaderMap, HeaderValue};
use nimbus_r2::conditions::Conditions;
use nimbus_r2::meta::HttpMetadata;
use nimbus_r2::sigv4::ChunkSigning;
use nimbus_r2::{BodyStream, R2Error};
use sha2::{Digest, Sha256};
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
/// The largest `aws-chunked` chunk (SDKs send 64 KiB to 8 MiB).
const MAX_CHUNK_BYTES: usize = 16 << 20;

/// Decodes an `aws-chunked` body: `<hex size>[;chunk-signature=<sig>]\r\n`, the bytes, `\r\n`,
/// …, a zero-size chunk, then trailers (checksums, dropped). With `signing`
/// (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`) every chunk's signature is checked as the chunk
/// ends; bytes flow on before that, and a bad signature fails the body, so the write that
/// reads it commits nothing.
pub fn aws_chunked(raw: BodyStream, signing: Option<ChunkSigning>) -> BodyStream {
    enum State {
        Header,
        Data { left: usize, signature: Option<String> },
        DataEnd { signature: Option<String> },
        Trailers,
    }
    struct Decoder {
        raw: BodyStream,
        buffer: BytesMut,
        state: State,
        ended: bool,
        signing: Option<ChunkSigning>,
        hash: Sha256,
    }
    impl Decoder {
        /// Ends a chunk: checks its signature, if the body is signed.
        fn close_chunk(&mut self, signature: Option<String>) -> Result<(), R2Error> {
            let digest: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
            match (&mut self.signing, signature) {
                (Some(signing), Some(signature)) => signing.verify(&digest, &signature),
                (Some(_), None) => Err(malformed("a chunk without its chunk-signature")),
                (None, _) => Ok(()),
            }
        }
    }
    let decoder =
        Decoder { raw, buffer: BytesMut::new(), state: State::Header, ended: false, signing, hash: Sha256::new() };
    let fail = |mut decoder: Decoder, error: R2Error| {
        decoder.state = State::Trailers;
        decoder.ended = true;
        Some((Err(error), decoder))
    };
    let stream = futures::stream::unfold(decoder, move |mut d| async move {
        loop {
            match std::mem::replace(&mut d.state, State::Trailers) {
                State::Header => {
                    if let Some(at) = d.buffer.windows(2).position(|w| w == b"\r\n") {
                        let line = d.buffer.split_to(at + 2);
                        let text = String::from_utf8_lossy(&line[..at]).into_owned();
                        let mut fields = text.split(';');
                        let size = fields.next().and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
                        let signature =
                            fields.find_map(|f| f.trim().strip_prefix("chunk-signature=").map(str::to_owned));
                        match size {
                            Some(size) if size > MAX_CHUNK_BYTES => return fail(d, malformed("a chunk over 16 MiB")),
                            Some(0) => {
                                if let Err(e) = d.close_chunk(signature) {
                                    return fail(d, e);
                                }
                                d.state = State::Trailers;
                            }
                            Some(left) => d.state = State::Data { left, signature },
                            None => return fail(d, malformed("a chunk header")),
                        }
                        continue;
                    }
                    if d.buffer.len() > MAX_CHUNK_HEADER {
                        return fail(d, malformed("a chunk header too long"));
                    }
                    d.state = State::Header;
                }
                State::Data { left, signature } if !d.buffer.is_empty() => {
                    let take = left.min(d.buffer.len());
                    let data = d.buffer.split_to(take).freeze();
                    d.hash.update(&data);
                    d.state = if take == left {
                        State::DataEnd { signature }
                    } else {
                        State::Data { left: left - take, signature }
                    };
                    return Some((Ok(data), d));
                }
                data @ State::Data { .. } => d.state = data,
                State::DataEnd { signature } if d.buffer.len() >= 2 => {
                    if &d.buffer[..2] != b"\r\n" {
                        return fail(d, malformed("a chunk's end"));
                    }
                    d.buffer.advance(2);
                    if let Err(e) = d.close_chunk(signature) {
                        return fail(d, e);
                    }
                    d.state = State::Header;
                    continue;
                }
                end @ State::DataEnd { .. } => d.state = end,
                State::Trailers => {
                    // Trailers (checksums) and the final CRLF: read and dropped.
                    if d.ended {
                        return None;
                    }
                    d.buffer.clear();
                }
            }
            if d.ended {
                return match d.state {
                    State::Trailers => None,
                    _ => fail(d, malformed("the body ended inside a chunk")),
                };
            }
            match d.raw.next().await {
                Some(Ok(bytes)) => d.buffer.extend_from_slice(&bytes),
                Some(Err(e)) => return fail(d, e),
                None => d.ended = true,
            }
        }
    });
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
        let mut stream = aws_chunked(Box::pin(futures::stream::iter(raw)), None);
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

    /// AWS's signed streaming example: 64 KiB and 1 KiB of `a` and the final chunk, each
    /// signature chained from the seed; one changed byte fails the body.
    #[tokio::test]
    async fn signed_aws_chunked_bodies_are_checked_chunk_by_chunk() {
        let signing = || {
            Some(ChunkSigning::new(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524T000000Z",
                "us-east-1",
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ))
        };
        let mut body =
            b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n".to_vec();
        body.extend(vec![b'a'; 65536]);
        body.extend(b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
        body.extend(vec![b'a'; 1024]);
        body.extend(b"\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
        let run = |body: Vec<u8>| async move {
            let raw: Vec<Result<Bytes, R2Error>> = body.chunks(1000).map(|p| Ok(Bytes::copy_from_slice(p))).collect();
            let mut stream = aws_chunked(Box::pin(futures::stream::iter(raw)), signing());
            let mut out = Vec::new();
            while let Some(piece) = stream.next().await {
                out.extend_from_slice(&piece?);
            }
            Ok::<_, R2Error>(out)
        };
        assert_eq!(run(body.clone()).await.expect("decodes").len(), 65536 + 1024);
        let mut changed = body.clone();
        changed[200] = b'b';
        assert!(matches!(run(changed).await, Err(R2Error::SignatureDoesNotMatch)));
        let unsigned = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
        assert!(run(unsigned).await.is_err(), "a signed body's chunks must carry signatures");
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
