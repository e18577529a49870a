//! R2 from a Rust worker: files streamed in and out of a bucket without passing through the
//! worker's memory.
//!
//! - `PUT /files/<key>`: the request's body streamed into the bucket (`content-type` kept).
//! - `GET /files/<key>`: the object streamed back (`Range` honoured: 206).
//! - `HEAD /files/<key>`, `DELETE /files/<key>`.
//! - `GET /list?prefix=…`: keys and sizes, one per line.
//! - `POST /multipart/<key>?parts=N&size=S`: a multipart upload of N generated parts of S
//!   bytes each (part i filled with byte i), completed; answers the ETag.
//! - `GET /sum/<key>`: the object read into the worker, its size and a checksum.
//! - `GET /leak/<key>`: opens the object and leaks the handle (`mem::forget`), as a buggy
//!   worker would: the node must still free what it holds when the request ends.

use nimbus::r2::{self, GetOptions, ListOptions, PutOptions};
use nimbus::{Bucket, Got, Request, Response, Result};

struct Files;

fn key_of(path: &str, prefix: &str) -> String {
    path.split('?').next().unwrap_or("").trim_start_matches(prefix).to_string()
}

fn query(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| v.to_string())
    })
}

impl nimbus::Handler for Files {
    const STREAM_REQUEST_BODY: bool = true;

    fn fetch(mut req: Request) -> Result<Response> {
        let bucket = Bucket::new("FILES");
        let path = req.path.clone();
        if let Some(rest) = path.strip_prefix("/files/") {
            let key = key_of(rest, "");
            return match req.method.as_str() {
                "PUT" => {
                    let mut options = PutOptions { length: req.content_length(), ..PutOptions::default() };
                    options.http_metadata.content_type = req.header("content-type").map(str::to_string);
                    let body = req.take_body_stream().ok_or("the request has no body")?;
                    let object = bucket.put(&key, r2::Body::Stream(body), options)?.ok_or("precondition failed")?;
                    Ok(Response::text(format!("{} {} {}\n", object.key, object.size, object.etag)))
                }
                "GET" => {
                    let options = GetOptions { range: req.header("range").map(str::to_string), ..GetOptions::default() };
                    match bucket.get_with(&key, &options)? {
                        Some(Got::Body(object)) => Ok(object.into_response()),
                        Some(Got::Unmet(_)) => Ok(Response::new(412, "precondition failed\n")),
                        None => Ok(Response::new(404, "no such file\n")),
                    }
                }
                "HEAD" => match bucket.head(&key)? {
                    Some(object) => {
                        let mut response = Response::new(200, Vec::new())
                            .with_header("etag", object.http_etag())
                            .with_header("x-object-size", object.size.to_string());
                        object.write_http_metadata(&mut response.headers);
                        Ok(response)
                    }
                    None => Ok(Response::new(404, Vec::new())),
                },
                "DELETE" => {
                    bucket.delete(&[key])?;
                    Ok(Response::new(204, Vec::new()))
                }
                _ => Ok(Response::new(405, "method not allowed\n")),
            };
        }
        if path.starts_with("/list") {
            let options = ListOptions { prefix: query(&path, "prefix"), ..ListOptions::default() };
            let listing = bucket.list(&options)?;
            let mut out = String::new();
            for object in listing.objects {
                out.push_str(&format!("{} {}\n", object.key, object.size));
            }
            return Ok(Response::text(out));
        }
        if let Some(rest) = path.strip_prefix("/multipart/") {
            let key = key_of(rest, "");
            let parts: u32 = query(&path, "parts").and_then(|v| v.parse().ok()).unwrap_or(2);
            let size: usize = query(&path, "size").and_then(|v| v.parse().ok()).unwrap_or(5 << 20);
            let upload = bucket.create_multipart_upload(&key, &r2::HttpMetadata::default(), &[])?;
            let mut uploaded = Vec::new();
            for number in 1..=parts {
                uploaded.push(upload.upload_part(number, vec![number as u8; size], None)?);
            }
            let object = upload.complete(&uploaded)?;
            return Ok(Response::text(format!("{} {}\n", object.size, object.etag)));
        }
        if let Some(rest) = path.strip_prefix("/leak/") {
            let object = bucket.get(&key_of(rest, ""))?.ok_or("no such file")?;
            std::mem::forget(object);
            return Ok(Response::new(200, "leaked\n"));
        }
        if let Some(rest) = path.strip_prefix("/sum/") {
            let Some(object) = bucket.get(&key_of(rest, ""))? else {
                return Ok(Response::new(404, "no such file\n"));
            };
            let size = object.object.size;
            let bytes = object.bytes()?;
            let sum = bytes.iter().fold(0u64, |sum, b| (sum + u64::from(*b)) % 65521);
            return Ok(Response::text(format!("{size} {} {sum}\n", bytes.len())));
        }
        Ok(Response::new(404, "not found\n"))
    }
}

nimbus::export!(Files);
