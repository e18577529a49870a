//! The natives `R2Bucket` is built on (`__nimbus.r2*`): plain objects in, plain objects out,
//! with bodies as bytes or host stream handles ([`crate::body`]). The prelude shapes
//! Cloudflare's `R2Object`, `R2ObjectBody`, `R2Objects` and `R2MultipartUpload` from them.

use crate::bindings::nimbus::worker::r2::{
    self, Body, Conditions, GetOptions, GetResult, HttpMetadata, ListOptions, PutOptions, UploadedPart,
};
use crate::natives::{binding_error, bytes_of, throw, uint8_array};
use rquickjs::{Array, Ctx, Object, Result, TypedArray, Value};

const FIELDS: [(&str, usize); 6] = [
    ("contentType", 0),
    ("contentLanguage", 1),
    ("contentDisposition", 2),
    ("contentEncoding", 3),
    ("cacheControl", 4),
    ("cacheExpiry", 5),
];

fn http_fields(http: &mut HttpMetadata) -> [&mut Option<String>; 6] {
    [
        &mut http.content_type,
        &mut http.content_language,
        &mut http.content_disposition,
        &mut http.content_encoding,
        &mut http.cache_control,
        &mut http.cache_expiry,
    ]
}

fn http_of(value: Option<Object<'_>>) -> Result<HttpMetadata> {
    let mut http = HttpMetadata {
        content_type: None,
        content_language: None,
        content_disposition: None,
        content_encoding: None,
        cache_control: None,
        cache_expiry: None,
    };
    if let Some(object) = value {
        let fields = http_fields(&mut http);
        for (name, i) in FIELDS {
            *fields[i] = object.get::<_, Option<String>>(name)?;
        }
    }
    Ok(http)
}

fn http_object<'js>(ctx: &Ctx<'js>, mut http: HttpMetadata) -> Result<Object<'js>> {
    let object = Object::new(ctx.clone())?;
    let fields = http_fields(&mut http);
    for (name, i) in FIELDS {
        if let Some(value) = fields[i].take() {
            object.set(name, value)?;
        }
    }
    Ok(object)
}

/// `[[name, value], …]` as the prelude passes custom metadata.
fn custom_of(value: Option<Array<'_>>) -> Result<Vec<(String, String)>> {
    match value {
        Some(list) => crate::natives::pairs(&list),
        None => Ok(Vec::new()),
    }
}

fn conditions_of(value: Option<Object<'_>>) -> Result<Conditions> {
    let Some(object) = value else {
        return Ok(Conditions {
            etag_matches: None,
            etag_does_not_match: None,
            uploaded_before: None,
            uploaded_after: None,
        });
    };
    let seconds = |name: &str| -> Result<Option<u64>> {
        Ok(object.get::<_, Option<f64>>(name)?.filter(|s| s.is_finite()).map(|s| s.max(0.0) as u64))
    };
    Ok(Conditions {
        etag_matches: object.get("etagMatches")?,
        etag_does_not_match: object.get("etagDoesNotMatch")?,
        uploaded_before: seconds("uploadedBefore")?,
        uploaded_after: seconds("uploadedAfter")?,
    })
}

fn digest_of(ctx: &Ctx<'_>, object: &Object<'_>, name: &str) -> Result<Option<Vec<u8>>> {
    let value: Value<'_> = object.get(name)?;
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    bytes_of(ctx, &value).map(Some)
}

/// The body the prelude passes: bytes, or `{stream}` naming a host stream to hand on.
fn body_of(ctx: &Ctx<'_>, value: &Value<'_>) -> Result<(Body, Option<u64>)> {
    if TypedArray::<u8>::from_value(value.clone()).is_err() {
        if let Some(object) = value.as_object() {
            if let Some(handle) = object.get::<_, Option<u32>>("stream")? {
                let (stream, length) = crate::body::take(handle)
                    .ok_or_else(|| throw(ctx, "R2: the body stream was already read or handed on"))?;
                return Ok((Body::Stream(stream), length));
            }
        }
    }
    let bytes = bytes_of(ctx, value)?;
    let length = bytes.len() as u64;
    Ok((Body::Bytes(bytes), Some(length)))
}

fn object_value<'js>(ctx: &Ctx<'js>, object: r2::Object) -> Result<Object<'js>> {
    let out = Object::new(ctx.clone())?;
    out.set("key", object.key)?;
    out.set("version", object.version)?;
    out.set("size", object.size as f64)?;
    out.set("etag", object.etag)?;
    out.set("uploaded", object.uploaded_ms as f64)?;
    out.set("httpMetadata", http_object(ctx, object.http_metadata)?)?;
    let custom = Object::new(ctx.clone())?;
    for (name, value) in object.custom_metadata {
        custom.set(name, value)?;
    }
    out.set("customMetadata", custom)?;
    let digest = |bytes: Option<Vec<u8>>| -> Result<Value<'js>> {
        match bytes {
            Some(bytes) => uint8_array(ctx, bytes),
            None => Ok(Value::new_null(ctx.clone())),
        }
    };
    out.set("md5", digest(object.md5)?)?;
    out.set("sha256", digest(object.sha256)?)?;
    Ok(out)
}

pub fn head<'js>(ctx: Ctx<'js>, binding: String, key: String) -> Result<Value<'js>> {
    match r2::head(&binding, &key).map_err(|e| binding_error(&ctx, "R2 head failed", e))? {
        Some(object) => Ok(object_value(&ctx, object)?.into_value()),
        None => Ok(Value::new_null(ctx)),
    }
}

pub fn get<'js>(
    ctx: Ctx<'js>,
    binding: String,
    key: String,
    only_if: Option<Object<'js>>,
    range: Option<String>,
) -> Result<Value<'js>> {
    let options = GetOptions { only_if: conditions_of(only_if)?, range };
    let result = r2::get(&binding, &key, &options).map_err(|e| binding_error(&ctx, "R2 get failed", e))?;
    let out = Object::new(ctx.clone())?;
    match result {
        GetResult::NotFound => return Ok(Value::new_null(ctx)),
        GetResult::Unmet(object) => {
            out.set("object", object_value(&ctx, object)?)?;
            out.set("unmet", true)?;
        }
        GetResult::Found(found) => {
            let length = found.range.as_ref().map_or(found.object.size, |r| r.length);
            if let Some(range) = found.range {
                let r = Object::new(ctx.clone())?;
                r.set("offset", range.offset as f64)?;
                r.set("length", range.length as f64)?;
                out.set("range", r)?;
            }
            out.set("object", object_value(&ctx, found.object)?)?;
            out.set("stream", crate::body::open(found.body, Some(length), None))?;
        }
    }
    Ok(out.into_value())
}

pub fn put<'js>(
    ctx: Ctx<'js>,
    binding: String,
    key: String,
    body: Value<'js>,
    options: Object<'js>,
) -> Result<Value<'js>> {
    let (body, known) = body_of(&ctx, &body)?;
    let length: Option<f64> = options.get("length")?;
    let options = PutOptions {
        http_metadata: http_of(options.get("httpMetadata")?)?,
        custom_metadata: custom_of(options.get("customMetadata")?)?,
        only_if: conditions_of(options.get("onlyIf")?)?,
        md5: digest_of(&ctx, &options, "md5")?,
        sha256: digest_of(&ctx, &options, "sha256")?,
        length: length.map(|n| n.max(0.0) as u64).or(known),
    };
    match r2::put(&binding, &key, body, &options).map_err(|e| binding_error(&ctx, "R2 put failed", e))? {
        Some(object) => Ok(object_value(&ctx, object)?.into_value()),
        None => Ok(Value::new_null(ctx)),
    }
}

pub fn delete(ctx: Ctx<'_>, binding: String, keys: Vec<String>) -> Result<()> {
    r2::delete(&binding, &keys).map_err(|e| binding_error(&ctx, "R2 delete failed", e))
}

pub fn list<'js>(ctx: Ctx<'js>, binding: String, options: Object<'js>) -> Result<Object<'js>> {
    let limit: Option<f64> = options.get("limit")?;
    let options = ListOptions {
        prefix: options.get("prefix")?,
        cursor: options.get("cursor")?,
        delimiter: options.get("delimiter")?,
        start_after: options.get("startAfter")?,
        limit: limit.map(|n| n.clamp(0.0, f64::from(u32::MAX)) as u32),
    };
    let listing = r2::list(&binding, &options).map_err(|e| binding_error(&ctx, "R2 list failed", e))?;
    let objects = Array::new(ctx.clone())?;
    for (i, object) in listing.objects.into_iter().enumerate() {
        objects.set(i, object_value(&ctx, object)?)?;
    }
    let out = Object::new(ctx)?;
    out.set("objects", objects)?;
    out.set("delimitedPrefixes", listing.delimited_prefixes)?;
    out.set("truncated", listing.truncated)?;
    out.set("cursor", listing.cursor)?;
    Ok(out)
}

pub fn create_multipart<'js>(
    ctx: Ctx<'js>,
    binding: String,
    key: String,
    http: Option<Object<'js>>,
    custom: Option<Array<'js>>,
) -> Result<String> {
    r2::create_multipart_upload(&binding, &key, &http_of(http)?, &custom_of(custom)?)
        .map_err(|e| binding_error(&ctx, "R2 createMultipartUpload failed", e))
}

pub fn upload_part<'js>(
    ctx: Ctx<'js>,
    binding: String,
    key: String,
    upload_id: String,
    part_number: u32,
    body: Value<'js>,
) -> Result<Object<'js>> {
    let (body, length) = body_of(&ctx, &body)?;
    let part = r2::upload_part(&binding, &key, &upload_id, part_number, body, length)
        .map_err(|e| binding_error(&ctx, "R2 uploadPart failed", e))?;
    let out = Object::new(ctx)?;
    out.set("partNumber", part.part_number)?;
    out.set("etag", part.etag)?;
    Ok(out)
}

pub fn complete<'js>(
    ctx: Ctx<'js>,
    binding: String,
    key: String,
    upload_id: String,
    parts: Array<'js>,
) -> Result<Object<'js>> {
    let mut uploaded = Vec::with_capacity(parts.len());
    for part in parts.iter::<Object<'js>>() {
        let part = part?;
        uploaded.push(UploadedPart { part_number: part.get("partNumber")?, etag: part.get("etag")? });
    }
    let object = r2::complete_multipart_upload(&binding, &key, &upload_id, &uploaded)
        .map_err(|e| binding_error(&ctx, "R2 complete failed", e))?;
    object_value(&ctx, object)
}

pub fn abort(ctx: Ctx<'_>, binding: String, key: String, upload_id: String) -> Result<()> {
    r2::abort_multipart_upload(&binding, &key, &upload_id).map_err(|e| binding_error(&ctx, "R2 abort failed", e))
}
