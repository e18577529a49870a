//! The native functions under `__nimbus`: the only way the prelude reaches the host.
//!
//! Each is a thin conversion between JS values and one `nimbus:worker` (or WASI) call; the
//! API shapes Cloudflare documents (`KVNamespace`, `D1Database`, stubs, storage) are built on
//! them in `prelude.js`. Bytes cross as `Uint8Array` (the prelude normalises every other
//! buffer type first). A failed binding call throws a JS `Error` with the binding's message.

use crate::bindings::nimbus::worker::types::BindingError;
use crate::bindings::nimbus::worker::{console, d1, durable_objects, kv, storage, websocket};
use crate::bindings::wasi::clocks::monotonic_clock;
use crate::bindings::wasi::random::random;
use crate::http::{self, Incoming, Reply};
use rquickjs::function::Opt;
use rquickjs::{Array, Ctx, Exception, Function, Object, Result, TypedArray, Value};

/// Installs `globalThis.__nimbus` with every native function.
pub fn install(ctx: &Ctx<'_>) -> Result<()> {
    let natives = Object::new(ctx.clone())?;
    macro_rules! native {
        ($($name:literal => $f:expr),* $(,)?) => {
            $( natives.set($name, Function::new(ctx.clone(), $f)?.with_name($name)?)?; )*
        };
    }
    native! {
        "log" => log,
        "sleep" => sleep,
        "randomBytes" => random_bytes,
        "utf8Encode" => utf8_encode,
        "utf8Decode" => utf8_decode,
        "fetch" => fetch,
        "kvGet" => kv_get,
        "kvPut" => kv_put,
        "kvDelete" => kv_delete,
        "kvList" => kv_list,
        "d1Query" => d1_query,
        "d1Batch" => d1_batch,
        "d1Exec" => d1_exec,
        "doIdFromName" => do_id_from_name,
        "doNewUniqueId" => do_new_unique_id,
        "doIdFromString" => do_id_from_string,
        "doFetch" => do_fetch,
        "storageGet" => storage_get,
        "storageList" => storage_list,
        "storageWrite" => storage_write,
        "storageDeleteAll" => storage_delete_all,
        "storageGetAlarm" => storage_get_alarm,
        "storageSetAlarm" => storage_set_alarm,
        "wsAccept" => ws_accept,
        "wsSend" => ws_send,
        "wsClose" => ws_close,
        "wsSockets" => ws_sockets,
        "wsTags" => ws_tags,
        "streamRead" => stream_read,
        "streamClose" => stream_close,
        "r2Head" => crate::r2::head,
        "r2Get" => crate::r2::get,
        "r2Put" => crate::r2::put,
        "r2Delete" => crate::r2::delete,
        "r2List" => crate::r2::list,
        "r2CreateMultipart" => crate::r2::create_multipart,
        "r2UploadPart" => crate::r2::upload_part,
        "r2Complete" => crate::r2::complete,
        "r2Abort" => crate::r2::abort,
        "queueSend" => queue_send,
    }
    ctx.globals().set("__nimbus", natives)
}

/// Throws a JS `Error` carrying `message`.
pub fn throw(ctx: &Ctx<'_>, message: &str) -> rquickjs::Error {
    match Exception::from_message(ctx.clone(), message) {
        Ok(exception) => exception.throw(),
        Err(e) => e,
    }
}

pub fn binding_error(ctx: &Ctx<'_>, what: &str, error: BindingError) -> rquickjs::Error {
    let message = match error {
        BindingError::UnknownBinding(m) => format!("{what}: unknown binding: {m}"),
        BindingError::Unavailable(m) => format!("{what}: unavailable: {m}"),
        BindingError::InvalidInput(m) => format!("{what}: {m}"),
        BindingError::Internal(m) => format!("{what}: internal error: {m}"),
    };
    throw(ctx, &message)
}

/// A copy of the bytes of a `Uint8Array` (`undefined` and `null` are empty).
pub fn bytes_of(ctx: &Ctx<'_>, value: &Value<'_>) -> Result<Vec<u8>> {
    if value.is_undefined() || value.is_null() {
        return Ok(Vec::new());
    }
    let array = TypedArray::<u8>::from_value(value.clone())
        .map_err(|_| throw(ctx, "expected a Uint8Array (the prelude converts other buffers)"))?;
    typed_bytes(ctx, &array)
}

/// A copy of the bytes of `array`.
fn typed_bytes(ctx: &Ctx<'_>, array: &TypedArray<'_, u8>) -> Result<Vec<u8>> {
    let Some(raw) = array.as_raw() else {
        return Err(throw(ctx, "the buffer is detached"));
    };
    // SAFETY: `raw` points into the live typed array's backing store, and no JavaScript runs
    // between taking the pointer and copying the bytes out.
    #[allow(unsafe_code)]
    let bytes = unsafe { raw.as_ref() }.to_vec();
    Ok(bytes)
}

pub fn uint8_array<'js>(ctx: &Ctx<'js>, bytes: Vec<u8>) -> Result<Value<'js>> {
    Ok(TypedArray::<u8>::new(ctx.clone(), bytes)?.into_value())
}

pub fn pairs(list: &Array<'_>) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(list.len());
    for pair in list.iter::<Array<'_>>() {
        let pair = pair?;
        out.push((pair.get(0)?, pair.get(1)?));
    }
    Ok(out)
}

pub fn pairs_array<'js>(ctx: &Ctx<'js>, list: Vec<(String, String)>) -> Result<Array<'js>> {
    let array = Array::new(ctx.clone())?;
    for (i, (name, value)) in list.into_iter().enumerate() {
        let pair = Array::new(ctx.clone())?;
        pair.set(0, name)?;
        pair.set(1, value)?;
        array.set(i, pair)?;
    }
    Ok(array)
}

fn reply_object<'js>(
    ctx: &Ctx<'js>,
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Result<Object<'js>> {
    let reply = Object::new(ctx.clone())?;
    reply.set("status", status)?;
    reply.set("headers", pairs_array(ctx, headers)?)?;
    reply.set("body", uint8_array(ctx, body)?)?;
    Ok(reply)
}

fn incoming(ctx: &Ctx<'_>, method: String, url: String, headers: Array<'_>, body: Value<'_>) -> Result<Incoming> {
    Ok(Incoming { method, url, headers: pairs(&headers)?, body: bytes_of(ctx, &body)?, stream: None })
}

// --- console, timers, randomness, text ------------------------------------------------

fn log(level: String, message: String) {
    let level = match level.as_str() {
        "debug" => console::Level::Debug,
        "warn" => console::Level::Warn,
        "error" => console::Level::Error,
        _ => console::Level::Info,
    };
    console::log(level, &message);
}

/// Blocks the instance for `ms` milliseconds: the event loop calls it when only timers are
/// left to wait for.
fn sleep(ms: f64) {
    if ms > 0.0 && ms.is_finite() {
        monotonic_clock::subscribe_duration((ms * 1_000_000.0) as u64).block();
    }
}

fn random_bytes<'js>(ctx: Ctx<'js>, length: u32) -> Result<Value<'js>> {
    if length > 65_536 {
        return Err(throw(&ctx, "crypto.getRandomValues: at most 65536 bytes at a time (QuotaExceededError)"));
    }
    uint8_array(&ctx, random::get_random_bytes(u64::from(length)))
}

fn utf8_encode<'js>(ctx: Ctx<'js>, text: String) -> Result<Value<'js>> {
    uint8_array(&ctx, text.into_bytes())
}

fn utf8_decode(ctx: Ctx<'_>, bytes: Value<'_>, fatal: Opt<bool>) -> Result<String> {
    let bytes = bytes_of(&ctx, &bytes)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    if fatal.0.unwrap_or(false) {
        return String::from_utf8(bytes.to_vec())
            .map_err(|e| throw(&ctx, &format!("TextDecoder: the data is not valid UTF-8 ({e})")));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

// --- host streams -------------------------------------------------------------------------

/// Up to `max` bytes of a host stream, or `null` at its end.
fn stream_read<'js>(ctx: Ctx<'js>, handle: u32, max: u32) -> Result<Value<'js>> {
    match crate::body::read(handle, u64::from(max.max(1))) {
        Ok(Some(bytes)) => uint8_array(&ctx, bytes),
        Ok(None) => Ok(Value::new_null(ctx)),
        Err(e) => Err(throw(&ctx, &e)),
    }
}

fn stream_close(handle: u32) {
    crate::body::close(handle);
}

// --- outbound fetch ---------------------------------------------------------------------

fn fetch<'js>(
    ctx: Ctx<'js>,
    method: String,
    url: String,
    headers: Array<'js>,
    body: Value<'js>,
) -> Result<Object<'js>> {
    let request = incoming(&ctx, method, url, headers, body)?;
    let Reply { status, headers, body, .. } = http::fetch(request).map_err(|e| throw(&ctx, &e))?;
    reply_object(&ctx, status, headers, body)
}

// --- KV -----------------------------------------------------------------------------------

fn kv_get<'js>(ctx: Ctx<'js>, binding: String, key: String) -> Result<Value<'js>> {
    match kv::get(&binding, &key).map_err(|e| binding_error(&ctx, "KV GET failed", e))? {
        None => Ok(Value::new_null(ctx)),
        Some(entry) => {
            let result = Object::new(ctx.clone())?;
            result.set("value", uint8_array(&ctx, entry.value)?)?;
            result.set("metadata", entry.metadata)?;
            result.set("expiration", entry.expiration.map(|e| e as f64))?;
            Ok(result.into_value())
        }
    }
}

fn kv_put(
    ctx: Ctx<'_>,
    binding: String,
    key: String,
    value: Value<'_>,
    expiration: Option<f64>,
    expiration_ttl: Option<f64>,
    metadata: Option<String>,
) -> Result<()> {
    let value = bytes_of(&ctx, &value)?;
    let options = kv::PutOptions {
        expiration: expiration.map(|e| e.max(0.0) as u64),
        expiration_ttl: expiration_ttl.map(|t| t.max(0.0) as u64),
        metadata,
    };
    kv::put(&binding, &key, &value, &options).map_err(|e| binding_error(&ctx, "KV PUT failed", e))
}

fn kv_delete(ctx: Ctx<'_>, binding: String, key: String) -> Result<()> {
    kv::delete(&binding, &key).map_err(|e| binding_error(&ctx, "KV DELETE failed", e))
}

fn kv_list<'js>(
    ctx: Ctx<'js>,
    binding: String,
    prefix: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<Object<'js>> {
    let listed = kv::list(&binding, &kv::ListOptions { prefix, limit, cursor })
        .map_err(|e| binding_error(&ctx, "KV LIST failed", e))?;
    let keys = Array::new(ctx.clone())?;
    for (i, key) in listed.keys.into_iter().enumerate() {
        let info = Object::new(ctx.clone())?;
        info.set("name", key.name)?;
        if let Some(expiration) = key.expiration {
            info.set("expiration", expiration as f64)?;
        }
        info.set("metadata", key.metadata)?;
        keys.set(i, info)?;
    }
    let result = Object::new(ctx)?;
    result.set("keys", keys)?;
    result.set("list_complete", listed.list_complete)?;
    result.set("cursor", listed.cursor)?;
    Ok(result)
}

// --- D1 -----------------------------------------------------------------------------------

fn d1_value(ctx: &Ctx<'_>, value: &Value<'_>) -> Result<d1::Value> {
    if value.is_undefined() || value.is_null() {
        return Ok(d1::Value::Null);
    }
    if let Some(b) = value.as_bool() {
        return Ok(d1::Value::Integer(i64::from(b)));
    }
    if let Some(i) = value.as_int() {
        return Ok(d1::Value::Integer(i64::from(i)));
    }
    if let Some(f) = value.as_float() {
        // Whole numbers bind as INTEGER, as D1 does.
        if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            return Ok(d1::Value::Integer(f as i64));
        }
        return Ok(d1::Value::Real(f));
    }
    if let Some(s) = value.as_string() {
        return Ok(d1::Value::Text(s.to_string()?));
    }
    if let Some(big) = value.as_big_int() {
        return big.clone().to_i64().map(d1::Value::Integer);
    }
    if let Ok(array) = TypedArray::<u8>::from_value(value.clone()) {
        return Ok(d1::Value::Blob(typed_bytes(ctx, &array)?));
    }
    Err(throw(ctx, &format!("D1_TYPE_ERROR: Type '{}' not supported for value", value.type_name())))
}

fn js_value<'js>(ctx: &Ctx<'js>, value: d1::Value) -> Result<Value<'js>> {
    Ok(match value {
        d1::Value::Null => Value::new_null(ctx.clone()),
        d1::Value::Integer(i) => Value::new_number(ctx.clone(), i as f64),
        d1::Value::Real(f) => Value::new_number(ctx.clone(), f),
        d1::Value::Text(s) => rquickjs::String::from_str(ctx.clone(), &s)?.into_value(),
        // D1 returns BLOB columns as arrays of byte values.
        d1::Value::Blob(bytes) => {
            let array = Array::new(ctx.clone())?;
            for (i, b) in bytes.into_iter().enumerate() {
                array.set(i, b)?;
            }
            array.into_value()
        }
    })
}

fn statement(ctx: &Ctx<'_>, sql: String, params: &Array<'_>) -> Result<d1::Statement> {
    let mut values = Vec::with_capacity(params.len());
    for param in params.iter::<Value<'_>>() {
        values.push(d1_value(ctx, &param?)?);
    }
    Ok(d1::Statement { sql, params: values })
}

fn session(ctx: &Ctx<'_>, consistency: &str, bookmark: Option<String>) -> Result<d1::Session> {
    let consistency = match consistency {
        "primary" => d1::Consistency::Primary,
        "local" => d1::Consistency::Local,
        "bookmark" => d1::Consistency::Bookmark,
        "linearizable" => d1::Consistency::Linearizable,
        other => return Err(throw(ctx, &format!("D1: unknown consistency `{other}`"))),
    };
    Ok(d1::Session { consistency, bookmark })
}

fn query_result<'js>(ctx: &Ctx<'js>, result: d1::QueryResult) -> Result<Object<'js>> {
    let columns = Array::new(ctx.clone())?;
    for (i, column) in result.columns.into_iter().enumerate() {
        columns.set(i, column)?;
    }
    let rows = Array::new(ctx.clone())?;
    for (i, row) in result.rows.into_iter().enumerate() {
        let cells = Array::new(ctx.clone())?;
        for (j, value) in row.into_iter().enumerate() {
            cells.set(j, js_value(ctx, value)?)?;
        }
        rows.set(i, cells)?;
    }
    let meta = Object::new(ctx.clone())?;
    meta.set("changes", result.meta.changes as f64)?;
    meta.set("last_row_id", result.meta.last_row_id as f64)?;
    meta.set("duration", result.meta.duration_ms)?;
    meta.set("served_by", result.meta.served_by)?;
    meta.set("served_by_region", result.meta.served_by_region)?;
    meta.set("served_by_primary", result.meta.served_by_primary)?;
    let out = Object::new(ctx.clone())?;
    out.set("columns", columns)?;
    out.set("rows", rows)?;
    out.set("meta", meta)?;
    out.set("bookmark", result.bookmark)?;
    Ok(out)
}

fn d1_query<'js>(
    ctx: Ctx<'js>,
    binding: String,
    sql: String,
    params: Array<'js>,
    consistency: String,
    bookmark: Option<String>,
) -> Result<Object<'js>> {
    let statement = statement(&ctx, sql, &params)?;
    let session = session(&ctx, &consistency, bookmark)?;
    let result = d1::query(&binding, &statement, &session).map_err(|e| binding_error(&ctx, "D1_ERROR", e))?;
    query_result(&ctx, result)
}

fn d1_batch<'js>(
    ctx: Ctx<'js>,
    binding: String,
    statements: Array<'js>,
    consistency: String,
    bookmark: Option<String>,
) -> Result<Array<'js>> {
    let mut batch = Vec::with_capacity(statements.len());
    for entry in statements.iter::<Array<'js>>() {
        let entry = entry?;
        batch.push(statement(&ctx, entry.get(0)?, &entry.get::<Array<'js>>(1)?)?);
    }
    let session = session(&ctx, &consistency, bookmark)?;
    let results = d1::batch(&binding, &batch, &session).map_err(|e| binding_error(&ctx, "D1_ERROR", e))?;
    let out = Array::new(ctx.clone())?;
    for (i, result) in results.into_iter().enumerate() {
        out.set(i, query_result(&ctx, result)?)?;
    }
    Ok(out)
}

fn d1_exec(ctx: Ctx<'_>, binding: String, sql: String) -> Result<u32> {
    d1::exec(&binding, &sql).map_err(|e| binding_error(&ctx, "D1_EXEC_ERROR", e))
}

// --- Durable Objects: namespaces and stubs -----------------------------------------------

fn do_id_from_name(ctx: Ctx<'_>, binding: String, name: String) -> Result<String> {
    durable_objects::id_from_name(&binding, &name).map_err(|e| binding_error(&ctx, "idFromName", e))
}

fn do_new_unique_id(ctx: Ctx<'_>, binding: String) -> Result<String> {
    durable_objects::new_unique_id(&binding).map_err(|e| binding_error(&ctx, "newUniqueId", e))
}

fn do_id_from_string(ctx: Ctx<'_>, binding: String, id: String) -> Result<String> {
    durable_objects::id_from_string(&binding, &id).map_err(|e| binding_error(&ctx, "idFromString", e))
}

fn do_fetch<'js>(
    ctx: Ctx<'js>,
    binding: String,
    id: String,
    method: String,
    url: String,
    headers: Array<'js>,
    body: Value<'js>,
) -> Result<Object<'js>> {
    let request = incoming(&ctx, method, url, headers, body)?;
    let request = durable_objects::HttpRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
    };
    let response = durable_objects::fetch(&binding, &id, &request)
        .map_err(|e| binding_error(&ctx, "Durable Object fetch failed", e))?;
    reply_object(&ctx, response.status, response.headers, response.body)
}

// --- Durable Objects: storage of the running object ---------------------------------------

fn storage_get<'js>(ctx: Ctx<'js>, keys: Vec<String>) -> Result<Array<'js>> {
    let values = storage::get(&keys).map_err(|e| binding_error(&ctx, "storage.get", e))?;
    let out = Array::new(ctx.clone())?;
    for (i, value) in values.into_iter().enumerate() {
        match value {
            Some(bytes) => out.set(i, uint8_array(&ctx, bytes)?)?,
            None => out.set(i, Value::new_null(ctx.clone()))?,
        }
    }
    Ok(out)
}

fn storage_list<'js>(
    ctx: Ctx<'js>,
    start: Option<String>,
    end: Option<String>,
    prefix: Option<String>,
    reverse: bool,
    limit: Option<u32>,
) -> Result<Array<'js>> {
    let entries = storage::list(&storage::ListOptions { start, end, prefix, reverse, limit })
        .map_err(|e| binding_error(&ctx, "storage.list", e))?;
    let out = Array::new(ctx.clone())?;
    for (i, (key, value)) in entries.into_iter().enumerate() {
        let pair = Array::new(ctx.clone())?;
        pair.set(0, key)?;
        pair.set(1, uint8_array(&ctx, value)?)?;
        out.set(i, pair)?;
    }
    Ok(out)
}

/// `writes`: `[["put", key, Uint8Array] | ["delete", key], …]`, applied all or none.
fn storage_write(ctx: Ctx<'_>, writes: Array<'_>) -> Result<()> {
    let mut batch = Vec::with_capacity(writes.len());
    for write in writes.iter::<Array<'_>>() {
        let write = write?;
        let op: String = write.get(0)?;
        let key: String = write.get(1)?;
        batch.push(match op.as_str() {
            "put" => storage::StorageWrite::Put((key, bytes_of(&ctx, &write.get(2)?)?)),
            _ => storage::StorageWrite::Delete(key),
        });
    }
    storage::write(&batch).map_err(|e| binding_error(&ctx, "storage.put", e))
}

fn storage_delete_all(ctx: Ctx<'_>) -> Result<()> {
    storage::delete_all().map_err(|e| binding_error(&ctx, "storage.deleteAll", e))
}

fn storage_get_alarm(ctx: Ctx<'_>) -> Result<Option<f64>> {
    let alarm = storage::get_alarm().map_err(|e| binding_error(&ctx, "storage.getAlarm", e))?;
    Ok(alarm.map(|ms| ms as f64))
}

fn storage_set_alarm(ctx: Ctx<'_>, scheduled_ms: Option<f64>) -> Result<()> {
    storage::set_alarm(scheduled_ms.map(|ms| ms as i64)).map_err(|e| binding_error(&ctx, "storage.setAlarm", e))
}

// --- WebSockets of the running object -------------------------------------------------------

fn ws_accept(ctx: Ctx<'_>, tags: Vec<String>) -> Result<f64> {
    let socket = websocket::accept(&tags).map_err(|e| binding_error(&ctx, "acceptWebSocket", e))?;
    Ok(socket as f64)
}

fn ws_send(ctx: Ctx<'_>, socket: f64, message: Value<'_>) -> Result<()> {
    let message = match message.as_string() {
        Some(text) => websocket::Message::Text(text.to_string()?),
        None => websocket::Message::Binary(bytes_of(&ctx, &message)?),
    };
    websocket::send(socket as u64, &message).map_err(|e| binding_error(&ctx, "WebSocket.send", e))
}

fn ws_close(ctx: Ctx<'_>, socket: f64, code: u16, reason: String) -> Result<()> {
    websocket::close(socket as u64, code, &reason).map_err(|e| binding_error(&ctx, "WebSocket.close", e))
}

fn ws_sockets(ctx: Ctx<'_>, tag: Option<String>) -> Result<Vec<f64>> {
    let sockets = websocket::sockets(tag.as_deref()).map_err(|e| binding_error(&ctx, "getWebSockets", e))?;
    Ok(sockets.into_iter().map(|s| s as f64).collect())
}

fn ws_tags(ctx: Ctx<'_>, socket: f64) -> Result<Vec<String>> {
    websocket::tags(socket as u64).map_err(|e| binding_error(&ctx, "getTags", e))
}

/// `Queue.sendBatch`: parallel arrays of bodies, content types and delays (-1: none).
fn queue_send(ctx: Ctx<'_>, binding: String, bodies: Array<'_>, types: Vec<String>, delays: Vec<f64>) -> Result<()> {
    use crate::bindings::nimbus::worker::queue;
    let mut messages = Vec::with_capacity(types.len());
    for (at, (kind, delay)) in types.iter().zip(delays).enumerate() {
        let body: Value<'_> = bodies.get(at)?;
        let content_type = match kind.as_str() {
            "json" => queue::ContentType::Json,
            "text" => queue::ContentType::Text,
            "bytes" => queue::ContentType::Bytes,
            _ => queue::ContentType::V8,
        };
        messages.push(queue::OutgoingMessage {
            body: bytes_of(&ctx, &body)?,
            content_type,
            delay_seconds: (delay >= 0.0).then_some(delay.min(f64::from(u32::MAX)) as u32),
        });
    }
    queue::send_batch(&binding, &messages).map_err(|e| binding_error(&ctx, "Queue send failed", e))
}
