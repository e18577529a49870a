//! The `console` binding: a worker's log lines, into the node's log stream.

use super::nimbus::worker::console::{self as wit, Level};
use super::Host;

/// Longest console line kept; the rest is cut with a note of how much was dropped.
const MAX_LOG_LINE: usize = 8 * 1024;

impl wit::Host for Host {
    async fn log(&mut self, level: Level, message: String) {
        let message = clip_log_line(message);
        let worker = self.worker();
        match level {
            Level::Debug => tracing::debug!(target: "worker", worker, "{message}"),
            Level::Info => tracing::info!(target: "worker", worker, "{message}"),
            Level::Warn => tracing::warn!(target: "worker", worker, "{message}"),
            Level::Error => tracing::error!(target: "worker", worker, "{message}"),
        }
    }
}

fn clip_log_line(mut message: String) -> String {
    if message.len() > MAX_LOG_LINE {
        let dropped = message.len() - MAX_LOG_LINE;
        let mut cut = MAX_LOG_LINE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!(" … ({dropped} more bytes)"));
    }
    message
}
