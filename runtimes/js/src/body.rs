//! Bodies the host streams: the request's body and R2 objects' bodies, as `wasi:io` input
//! streams behind small integer handles that the prelude's `ReadableStream`s hold.
//!
//! A stream the script never reads travels on untouched: an R2 body returned as the
//! response is spliced by the host into the response's body, and the request's body given to
//! `R2Bucket.put` is read by the host, so neither enters the engine's memory. A stream the
//! script does read comes in slices (`__nimbus.streamRead`). Every stream still open when the
//! event ends is dropped with it.

use crate::bindings::wasi::http::types::IncomingBody;
use crate::bindings::wasi::io::streams::{InputStream, StreamError};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// One open stream. Fields drop in order: the stream before the body it belongs to.
struct Open {
    stream: InputStream,
    /// The byte count, when known (a `content-length`, an object's size).
    length: Option<u64>,
    /// The request body the stream reads, kept alive while the stream is.
    parent: Option<IncomingBody>,
}

#[derive(Default)]
struct Streams {
    next: u32,
    open: BTreeMap<u32, Open>,
    /// Request bodies whose stream was handed to the host: kept until the event ends.
    orphans: Vec<IncomingBody>,
}

thread_local! {
    static STREAMS: RefCell<Streams> = RefCell::new(Streams::default());
}

/// Registers `stream`; its handle for the prelude.
pub fn open(stream: InputStream, length: Option<u64>, parent: Option<IncomingBody>) -> u32 {
    STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        streams.next = streams.next.wrapping_add(1);
        let handle = streams.next;
        streams.open.insert(handle, Open { stream, length, parent });
        handle
    })
}

/// The stream behind `handle`, taken out to be handed to the host, and its known length.
pub fn take(handle: u32) -> Option<(InputStream, Option<u64>)> {
    STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        let Open { stream, length, parent } = streams.open.remove(&handle)?;
        if let Some(parent) = parent {
            streams.orphans.push(parent);
        }
        Some((stream, length))
    })
}

/// Up to `max` bytes of the stream behind `handle`; `None` at its end (the stream is then
/// closed).
pub fn read(handle: u32, max: u64) -> Result<Option<Vec<u8>>, String> {
    STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        let Some(open) = streams.open.get(&handle) else {
            return Err("the body stream is closed or was handed on".to_string());
        };
        match open.stream.blocking_read(max) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(StreamError::Closed) => {
                close_in(&mut streams, handle);
                Ok(None)
            }
            Err(StreamError::LastOperationFailed(e)) => {
                close_in(&mut streams, handle);
                Err(format!("reading the body failed: {}", e.to_debug_string()))
            }
        }
    })
}

fn close_in(streams: &mut Streams, handle: u32) {
    if let Some(Open { stream, parent, .. }) = streams.open.remove(&handle) {
        drop(stream);
        drop(parent);
    }
}

/// Closes the stream behind `handle` (a reader's `cancel`).
pub fn close(handle: u32) {
    STREAMS.with(|streams| close_in(&mut streams.borrow_mut(), handle));
}

/// The known length of the stream behind `handle`.
pub fn length(handle: u32) -> Option<u64> {
    STREAMS.with(|streams| streams.borrow().open.get(&handle).and_then(|open| open.length))
}

/// Drops every stream of the event that ended.
pub fn clear() {
    STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        let open = std::mem::take(&mut streams.open);
        drop(open);
        streams.orphans.clear();
    });
}
