//! Output for people: aligned tables, colour only when stdout is a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Style {
    color: bool,
}

impl Style {
    pub fn detect() -> Self {
        Style { color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn ok(&self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn warn(&self, text: &str) -> String {
        self.paint("33", text)
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}

/// Prints rows under a header with columns padded to their widest cell.
pub fn table(style: &Style, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(visible_len(cell));
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w.saturating_sub(visible_len(cell)))))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| style.bold(h)).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Length without ANSI escape sequences.
fn visible_len(text: &str) -> usize {
    let mut len = 0;
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => len += 1,
        }
    }
    len
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// "3 s ago", "2 min ago" … from a Unix time in milliseconds.
pub fn ago(unix_ms: i64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let secs = (now - unix_ms).max(0) / 1000;
    match secs {
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

/// A progress line on stderr (only on a terminal, only for transfers that take a while).
pub struct Progress {
    total: Option<u64>,
    pub done: u64,
    started: Instant,
    shown: Instant,
    /// Whether it draws (a terminal); the caller may turn it off.
    pub on: bool,
}

impl Progress {
    pub fn new(total: Option<u64>) -> Progress {
        let now = Instant::now();
        Progress { total, done: 0, started: now, shown: now, on: std::io::stderr().is_terminal() }
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.on && self.shown.elapsed() >= Duration::from_millis(200) {
            self.shown = Instant::now();
            self.draw();
        }
    }

    fn draw(&self) {
        let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let line = match self.total {
            Some(total) if total > 0 => {
                let width = 30;
                let filled = (self.done.min(total) * width / total) as usize;
                format!(
                    "[{}{}] {:>3}% {} of {}  {}/s",
                    "#".repeat(filled),
                    " ".repeat(width as usize - filled),
                    self.done * 100 / total,
                    bytes(self.done),
                    bytes(total),
                    bytes(rate as u64)
                )
            }
            _ => format!("{}  {}/s", bytes(self.done), bytes(rate as u64)),
        };
        eprint!("\r{line}\x1b[K");
    }

    pub fn finish(&self) {
        if self.on && self.started.elapsed() >= Duration::from_millis(200) {
            self.draw();
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_do_not_count_towards_width() {
        assert_eq!(visible_len("\x1b[32mok\x1b[0m"), 2);
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
