//! AWS Signature Version 4 as S3 checks it: in the `Authorization` header or presigned in the
//! query, for the region R2 answers to (`auto`; an empty region and `us-east-1` mean `auto`).
//!
//! HTTP-agnostic: the S3 listener hands over the method, the raw path and query as sent, and
//! the headers. The secret is looked up by access key id; the signature is compared in
//! constant time. What the signature vouches for about the body (a SHA-256, or that it is
//! unsigned or streamed) is returned for the body reader to hold the client to.

use super::R2Error;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The longest a presigned URL may live (S3's limit: 7 days).
pub const MAX_PRESIGNED_SECS: u64 = 7 * 24 * 3600;
/// How far a header-signed request's time may be from ours (S3's: 15 minutes).
pub const MAX_SKEW_SECS: u64 = 15 * 60;
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A request as it arrived.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent, percent-encoded.
    pub path: &'a str,
    /// The query string as sent (without `?`), percent-encoded.
    pub query: &'a str,
    /// Every header (names in any case).
    pub headers: &'a [(&'a str, &'a str)],
}

/// What a valid signature established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    /// `x-amz-content-sha256` as signed: a hex SHA-256, `UNSIGNED-PAYLOAD`, or a `STREAMING-…`
    /// mode; `UNSIGNED-PAYLOAD` for presigned URLs.
    pub payload: String,
    /// For `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: what checks each chunk's signature.
    pub chunks: Option<ChunkSigning>,
}

/// The payload mode of a body sent in signed `aws-chunked` chunks.
pub const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Checks the chunks of a signed `aws-chunked` body in order: each chunk's signature chains
/// from the previous one (the first from the request's own signature), so a chunk cannot be
/// changed, dropped, reordered or added without the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkSigning {
    key: Vec<u8>,
    amz_date: String,
    scope: String,
    previous: String,
}

impl std::fmt::Debug for ChunkSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigning")
            .field("scope", &self.scope)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl ChunkSigning {
    /// The chain for a request signed with `secret` at `amz_date` (`20130524T000000Z`) for
    /// `region`, whose own signature is `seed_signature`.
    pub fn new(secret: &str, amz_date: &str, region: &str, seed_signature: &str) -> ChunkSigning {
        let date = amz_date.get(..8).unwrap_or_default();
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        for step in [region.as_bytes(), b"s3", b"aws4_request"] {
            key = hmac(&key, step);
        }
        ChunkSigning {
            key,
            amz_date: amz_date.to_owned(),
            scope: format!("{date}/{region}/s3/aws4_request"),
            previous: seed_signature.to_owned(),
        }
    }

    /// Checks the next chunk (its SHA-256 and the signature it came with).
    pub fn verify(&mut self, chunk_sha256: &[u8; 32], claimed: &str) -> Result<(), R2Error> {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            hex::encode(chunk_sha256)
        );
        let bytes = hex::decode(claimed).map_err(|_| R2Error::SignatureDoesNotMatch)?;
        let mut mac = HmacSha256::new_from_slice(&self.key).map_err(|_| R2Error::SignatureDoesNotMatch)?;
        mac.update(string_to_sign.as_bytes());
        mac.verify_slice(&bytes).map_err(|_| R2Error::SignatureDoesNotMatch)?;
        self.previous = claimed.to_owned();
        Ok(())
    }
}

fn header<'a>(request: &Request<'a>, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

fn malformed(why: &str) -> R2Error {
    R2Error::AuthorizationMalformed(why.to_string())
}

/// Checks `request`'s signature at Unix time `now`, with `secret_of` giving an access key's
/// secret (`None`: no such key).
pub fn verify(
    request: &Request<'_>,
    now: u64,
    secret_of: impl FnOnce(&str) -> Option<String>,
) -> Result<Verified, R2Error> {
    let query = query_pairs(request.query)?;
    let presigned = query.iter().any(|(k, _)| k == "X-Amz-Algorithm");
    let parts = if presigned { presigned_parts(&query, now)? } else { header_parts(request, now)? };
    let (date, region, service) = parts.scope;
    if !matches!(region.as_str(), "auto" | "us-east-1" | "") {
        return Err(malformed("the region is 'auto' (or empty, or us-east-1)"));
    }
    if service != "s3" {
        return Err(malformed("the service is 's3'"));
    }
    let secret = secret_of(&parts.access_key).ok_or(R2Error::InvalidAccessKeyId)?;
    let canonical = canonical_request(request, query, &parts.signed_headers, &parts.payload, presigned)?;
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{date}/{region}/{service}/aws4_request\n{}",
        parts.amz_date,
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for step in [region.as_bytes(), service.as_bytes(), b"aws4_request"] {
        key = hmac(&key, step);
    }
    let claimed = hex::decode(&parts.signature).map_err(|_| R2Error::SignatureDoesNotMatch)?;
    let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| R2Error::SignatureDoesNotMatch)?;
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&claimed).map_err(|_| R2Error::SignatureDoesNotMatch)?;
    let chunks = (parts.payload == STREAMING_SIGNED).then(|| ChunkSigning {
        key,
        amz_date: parts.amz_date.clone(),
        scope: format!("{date}/{region}/{service}/aws4_request"),
        previous: parts.signature.clone(),
    });
    Ok(Verified { access_key: parts.access_key, payload: parts.payload, chunks })
}

/// The access key id a request claims (in the header's or the URL's credential), to look up
/// its secret before [`verify`]; `None` when the request is not signed.
pub fn access_key_id(request: &Request<'_>) -> Option<String> {
    let credential = match header(request, "authorization") {
        Some(auth) => auth.split("Credential=").nth(1)?.split(',').next()?.to_string(),
        None => query_pairs(request.query).ok()?.into_iter().find(|(k, _)| k == "X-Amz-Credential")?.1,
    };
    credential.split('/').next().filter(|id| !id.is_empty()).map(str::to_string)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

struct Parts {
    access_key: String,
    scope: (String, String, String),
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    payload: String,
}

/// `AKID/20261205/auto/s3/aws4_request` → the key and (date, region, service).
fn credential(text: &str, amz_date: &str) -> Result<(String, (String, String, String)), R2Error> {
    let fields: Vec<&str> = text.split('/').collect();
    let [key, date, region, service, "aws4_request"] = fields[..] else {
        return Err(malformed("the credential is <key>/<date>/<region>/s3/aws4_request"));
    };
    if !amz_date.starts_with(date) || date.len() != 8 {
        return Err(malformed("the credential's date is not the request's date"));
    }
    Ok((key.to_string(), (date.to_string(), region.to_string(), service.to_string())))
}

fn signed_header_list(text: &str) -> Result<Vec<String>, R2Error> {
    let names: Vec<String> = text.split(';').map(str::to_ascii_lowercase).collect();
    if names.iter().any(String::is_empty) || !names.iter().any(|n| n == "host") {
        return Err(malformed("the signed headers include host"));
    }
    Ok(names)
}

fn header_parts(request: &Request<'_>, now: u64) -> Result<Parts, R2Error> {
    let auth = header(request, "authorization").ok_or(R2Error::AccessDenied("the request is not signed"))?;
    let rest = auth.strip_prefix(ALGORITHM).ok_or_else(|| malformed("the algorithm is AWS4-HMAC-SHA256"))?;
    let (mut credential_text, mut signed, mut signature) = (None, None, None);
    for field in rest.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => credential_text = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(malformed("the authorization header has Credential, SignedHeaders and Signature")),
        }
    }
    let (Some(credential_text), Some(signed), Some(signature)) = (credential_text, signed, signature) else {
        return Err(malformed("the authorization header has Credential, SignedHeaders and Signature"));
    };
    let amz_date = header(request, "x-amz-date").ok_or_else(|| malformed("x-amz-date is missing"))?;
    let time = parse_amz_date(amz_date)?;
    if time.abs_diff(now) > MAX_SKEW_SECS {
        return Err(R2Error::RequestTimeTooSkewed);
    }
    let (access_key, scope) = credential(credential_text, amz_date)?;
    let payload =
        header(request, "x-amz-content-sha256").ok_or_else(|| malformed("x-amz-content-sha256 is missing"))?;
    Ok(Parts {
        access_key,
        scope,
        signed_headers: signed_header_list(signed)?,
        signature: signature.to_string(),
        amz_date: amz_date.to_string(),
        payload: payload.to_string(),
    })
}

fn presigned_parts(query: &[(String, String)], now: u64) -> Result<Parts, R2Error> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| malformed(&format!("{name} is missing from the presigned URL")))
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(malformed("the algorithm is AWS4-HMAC-SHA256"));
    }
    let amz_date = get("X-Amz-Date")?;
    let expires: u64 = get("X-Amz-Expires")?.parse().map_err(|_| malformed("X-Amz-Expires is a number of seconds"))?;
    if expires > MAX_PRESIGNED_SECS {
        return Err(malformed("X-Amz-Expires is at most 604800"));
    }
    let signed_at = parse_amz_date(&amz_date)?;
    if now > signed_at.saturating_add(expires) {
        return Err(R2Error::AccessDenied("Request has expired"));
    }
    if signed_at > now + MAX_SKEW_SECS {
        return Err(R2Error::AccessDenied("Request is not valid yet"));
    }
    let (access_key, scope) = credential(&get("X-Amz-Credential")?, &amz_date)?;
    Ok(Parts {
        access_key,
        scope,
        signed_headers: signed_header_list(&get("X-Amz-SignedHeaders")?)?,
        signature: get("X-Amz-Signature")?,
        amz_date,
        payload: "UNSIGNED-PAYLOAD".to_string(),
    })
}

fn canonical_request(
    request: &Request<'_>,
    query: Vec<(String, String)>,
    signed_headers: &[String],
    payload: &str,
    presigned: bool,
) -> Result<String, R2Error> {
    let path = if request.path.is_empty() { "/".to_string() } else { encode(&decode(request.path)?, false) };
    let mut query: Vec<(String, String)> = query
        .into_iter()
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| (encode(&k, true), encode(&v, true)))
        .collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut out = format!("{}\n{path}\n{}\n", request.method, query.join("&"));
    for name in signed_headers {
        let values: Vec<&str> =
            request.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v).collect();
        if values.is_empty() {
            return Err(malformed(&format!("the signed header {name} is missing")));
        }
        let value =
            values.iter().map(|v| v.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join(",");
        out.push_str(&format!("{name}:{value}\n"));
    }
    out.push_str(&format!("\n{}\n{payload}", signed_headers.join(";")));
    Ok(out)
}

/// `k=v&k2` → decoded pairs (a key without `=` has an empty value).
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, R2Error> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(&k.replace('+', "%20"))?, decode(&v.replace('+', "%20"))?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, R2Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| malformed("a % escape is cut short"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| malformed("a % escape is not hex"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| malformed("a % escape is not hex"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| malformed("the path or query is not UTF-8"))
}

/// SigV4's URI encoding: unreserved characters as they are, everything else `%XX`; `/` kept
/// in paths, encoded in query components.
fn encode(text: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `20261205T060000Z` → Unix seconds.
fn parse_amz_date(text: &str) -> Result<u64, R2Error> {
    let bad = || malformed("dates are YYYYMMDDTHHMMSSZ");
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| text.get(range).and_then(|s| s.parse::<u64>().ok()).ok_or_else(bad);
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years from 1970.
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with botocore 1.43 (S3SigV4Auth / S3SigV4QueryAuth, region "auto") at a fixed
    // clock, 2026-12-05 06:00:00 UTC: what boto3 and the aws CLI send.
    const KEY: &str = "AKIDNIMBUSEXAMPLE";
    const SECRET: &str = "nimbus/secret+EXAMPLEKEY0123456789abcdef";
    const NOW: u64 = 1_796_450_400;

    fn secret(key: &str) -> Option<String> {
        (key == KEY).then(|| SECRET.to_string())
    }

    fn get_headers(signature: &str) -> Vec<(&'static str, String)> {
        vec![
            ("Host", "127.0.0.1:9000".into()),
            ("Range", "bytes=0-9".into()),
            ("X-Amz-Date", "20261205T060000Z".into()),
            ("X-Amz-Content-SHA256", EMPTY_SHA256.into()),
            (
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={KEY}/20261205/auto/s3/aws4_request, \
                     SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature={signature}"
                ),
            ),
        ]
    }

    fn check(
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&'static str, String)],
        now: u64,
    ) -> Result<Verified, R2Error> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        verify(&Request { method, path, query, headers: &headers }, now, secret)
    }

    const GET_SIGNATURE: &str = "502940d4efacc8211a91ca204dd4f4efd39483589016638864f1c741607b3760";

    #[test]
    fn the_dates_are_unix_seconds() {
        assert_eq!(parse_amz_date("19700101T000000Z").ok(), Some(0));
        assert_eq!(parse_amz_date("20261205T060000Z").ok(), Some(NOW));
        assert!(parse_amz_date("20261305T060000Z").is_err());
        assert!(parse_amz_date("2026-12-05").is_err());
    }

    #[test]
    fn header_signatures_from_boto_verify_and_any_change_breaks_them() {
        let headers = get_headers(GET_SIGNATURE);
        let path = "/media/avatars/user%201.jpg";
        let query = "list-type=2&prefix=a%2Fb";
        let ok = check("GET", path, query, &headers, NOW + 60).expect("boto's signature verifies");
        assert_eq!(ok, Verified { access_key: KEY.into(), payload: EMPTY_SHA256.into(), chunks: None });
        // The query in another order is the same request.
        assert!(check("GET", path, "prefix=a%2Fb&list-type=2", &headers, NOW).is_ok());

        let denied = |r: Result<Verified, R2Error>| r.map_err(|e| (e.s3_code(), e.status())).err();
        let mismatch = Some(("SignatureDoesNotMatch", 403));
        assert_eq!(denied(check("PUT", path, query, &headers, NOW)), mismatch);
        assert_eq!(denied(check("GET", "/media/avatars/user%202.jpg", query, &headers, NOW)), mismatch);
        assert_eq!(denied(check("GET", path, "list-type=2&prefix=b", &headers, NOW)), mismatch);
        let mut other_range = headers.clone();
        other_range[1].1 = "bytes=0-99".into();
        assert_eq!(denied(check("GET", path, query, &other_range, NOW)), mismatch);
        let forged = get_headers(&GET_SIGNATURE.replace('5', "6"));
        assert_eq!(denied(check("GET", path, query, &forged, NOW)), mismatch);

        let mut stranger = headers.clone();
        stranger[4].1 = stranger[4].1.replace(KEY, "AKIDSTRANGER");
        assert_eq!(denied(check("GET", path, query, &stranger, NOW)), Some(("InvalidAccessKeyId", 403)));
        assert_eq!(denied(check("GET", path, query, &headers, NOW + 16 * 60)), Some(("RequestTimeTooSkewed", 403)));
        assert_eq!(denied(check("GET", path, query, &headers[..4], NOW)), Some(("AccessDenied", 403)));
        let mut no_date = headers.clone();
        no_date.remove(2);
        assert_eq!(denied(check("GET", path, query, &no_date, NOW)).map(|e| e.0), Some("AuthorizationHeaderMalformed"));
    }

    #[test]
    fn a_signed_put_binds_its_payload_hash_and_a_virtual_host() {
        let headers = vec![
            ("Host", "media.s3.localhost:9000".to_string()),
            ("Content-Type", "text/plain".into()),
            ("X-Amz-Date", "20261205T060000Z".into()),
            ("X-Amz-Content-SHA256", "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into()),
            (
                "Authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={KEY}/20261205/auto/s3/aws4_request, \
                     SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, \
                     Signature=9ef1de9f27370771553262a108eb282808034ce6ce5808f7793a404cf778cd40"
                ),
            ),
        ];
        let ok = check("PUT", "/k%C3%A9y", "", &headers, NOW).expect("verifies");
        assert_eq!(ok.payload, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "sha256(\"hello\")");
        let mut other_body = headers.clone();
        other_body[3].1 = EMPTY_SHA256.into();
        assert!(matches!(check("PUT", "/k%C3%A9y", "", &other_body, NOW), Err(R2Error::SignatureDoesNotMatch)));
    }

    #[test]
    fn presigned_urls_verify_until_they_expire() {
        let query =
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDNIMBUSEXAMPLE%2F20261205%2Fauto%2Fs3%2Faws4_request\
                     &X-Amz-Date=20261205T060000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
                     &X-Amz-Signature=4d994268eded303af11ce2cf09b9d49d64a0561aec4490ab08bf7e11d2aa1242";
        let headers = vec![("Host", "127.0.0.1:9000".to_string())];
        let ok = check("GET", "/media/photo.jpg", query, &headers, NOW + 3600).expect("verifies within the hour");
        assert_eq!(ok.payload, "UNSIGNED-PAYLOAD");
        let expired = check("GET", "/media/photo.jpg", query, &headers, NOW + 3601);
        assert_eq!(
            expired.map_err(|e| (e.s3_code(), e.to_string())).err(),
            Some(("AccessDenied", "access denied: Request has expired".into()))
        );
        assert!(matches!(check("GET", "/media/other.jpg", query, &headers, NOW), Err(R2Error::SignatureDoesNotMatch)));
        let longer = query.replace("X-Amz-Expires=3600", "X-Amz-Expires=7200");
        assert!(matches!(
            check("GET", "/media/photo.jpg", &longer, &headers, NOW),
            Err(R2Error::SignatureDoesNotMatch)
        ));
        let too_long = query.replace("X-Amz-Expires=3600", "X-Amz-Expires=604801");
        assert!(matches!(
            check("GET", "/media/photo.jpg", &too_long, &headers, NOW),
            Err(R2Error::AuthorizationMalformed(_))
        ));
    }

    /// AWS's worked example of a signed streaming upload ("Signature Calculations for the
    /// Authorization Header: Transferring Payload in Multiple Chunks"): 64 KiB of `a`, then
    /// 1 KiB of `a`, then the empty final chunk, chained from the seed signature.
    #[test]
    fn signed_chunks_chain_from_the_seed_signature() {
        let fresh = || {
            ChunkSigning::new(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524T000000Z",
                "us-east-1",
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            )
        };
        let sha = |n: usize| -> [u8; 32] { Sha256::digest(vec![b'a'; n]).into() };
        let mut chain = fresh();
        chain.verify(&sha(65536), "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648").expect("chunk 1");
        chain.verify(&sha(1024), "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497").expect("chunk 2");
        chain.verify(&sha(0), "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9").expect("final chunk");
        // Out of order, or changed bytes, break the chain.
        let mut chain = fresh();
        assert!(chain.verify(&sha(1024), "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497").is_err());
        assert!(fresh()
            .verify(&sha(65535), "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
            .is_err());
    }
}
