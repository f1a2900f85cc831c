//! Progress of nodes being installed. On a terminal: a block with one line per node (state,
//! elapsed time, last installer event) redrawn in place, with messages scrolling above it.
//! Anywhere else (a pipe, a log file, CI): a plain line per change, nothing redrawn.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the live block is redrawn when nothing changed (the elapsed times move).
const REDRAW: Duration = Duration::from_secs(1);

/// Where progress goes.
pub(crate) struct Screen {
    out: Box<dyn Write>,
    live: Option<Live>,
}

/// The live block's state.
struct Live {
    /// Lines of the block now on screen (the cursor is below them).
    drawn: usize,
    /// Terminal width: longer lines are cut so that each row is one screen line.
    width: usize,
    rows: Vec<String>,
    drawn_at: Option<Instant>,
}

impl Screen {
    /// Standard output: live when it is a terminal (and `TERM` is not `dumb`).
    pub(crate) fn stdout() -> Self {
        let tty =
            std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
        let width = terminal_size::terminal_size().map_or(100, |(w, _)| usize::from(w.0));
        Self::new(Box::new(std::io::stdout()), tty.then_some(width))
    }

    /// Progress to `out`; live with this terminal width, or plain.
    pub(crate) fn new(out: Box<dyn Write>, live_width: Option<usize>) -> Self {
        Self {
            out,
            live: live_width.map(|width| Live {
                drawn: 0,
                width: width.max(20),
                rows: Vec::new(),
                drawn_at: None,
            }),
        }
    }

    /// A message that stays: scrolls above the live block, or a plain line.
    pub(crate) fn log(&mut self, line: &str) {
        let mut text = String::new();
        if let Some(live) = &mut self.live {
            text.push_str(&live.erase());
            text.push_str(line);
            text.push('\n');
            text.push_str(&live.draw());
        } else {
            text.push_str(line);
            text.push('\n');
        }
        self.write(&text);
    }

    /// A node's state or event changed: a plain line; the live block shows it in its row.
    pub(crate) fn change(&mut self, line: &str) {
        if self.live.is_none() {
            self.write(&format!("{line}\n"));
        }
    }

    /// The block's rows now (live only): redrawn when they changed or a second passed.
    pub(crate) fn rows(&mut self, rows: Vec<String>) {
        let Some(live) = &mut self.live else { return };
        let stale = live.drawn_at.is_none_or(|t| t.elapsed() >= REDRAW);
        if rows == live.rows && !stale {
            return;
        }
        live.rows = rows;
        let text = format!("{}{}", live.erase(), live.draw());
        self.write(&text);
    }

    /// Done: the last block stays on screen above what follows.
    pub(crate) fn finish(&mut self) {
        self.live = None;
    }

    fn write(&mut self, text: &str) {
        // Progress output is best effort: a closed pipe must not stop an install.
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

impl Live {
    /// Moves to the block's first line and clears to the end of the screen (ECMA-48 CUU, ED).
    fn erase(&mut self) -> String {
        let text = match self.drawn {
            0 => String::new(),
            n => format!("\x1b[{n}A\r\x1b[J"),
        };
        self.drawn = 0;
        text
    }

    fn draw(&mut self) -> String {
        let mut text = String::new();
        for row in &self.rows {
            // One screen line per row, or the cursor-up count is wrong.
            let cut: String = row.chars().take(self.width - 1).collect();
            text.push_str(&cut);
            text.push('\n');
        }
        self.drawn = self.rows.len();
        self.drawn_at = Some(Instant::now());
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn plain_output_is_a_line_per_message_and_change_without_escapes() {
        let out = Captured::default();
        let mut screen = Screen::new(Box::new(out.clone()), None);
        screen.log("cmp1: provisioning");
        screen.rows(vec!["cmp1 provisioning 1.0s".into()]);
        screen.change("cmp1 installing");
        assert_eq!(out.text(), "cmp1: provisioning\ncmp1 installing\n");
    }

    #[test]
    fn the_live_block_is_redrawn_in_place_with_messages_above_it() {
        let out = Captured::default();
        let mut screen = Screen::new(Box::new(out.clone()), Some(30));
        screen.rows(vec!["a".into(), "b".into()]);
        assert_eq!(out.text(), "a\nb\n");
        // Unchanged within a second: nothing is written.
        screen.rows(vec!["a".into(), "b".into()]);
        assert_eq!(out.text(), "a\nb\n");
        // A change: up two lines, clear, draw again.
        screen.rows(vec!["a".into(), "c".into()]);
        assert_eq!(out.text(), "a\nb\n\x1b[2A\r\x1b[Ja\nc\n");
        // A message goes above the block; changes are in the rows only.
        screen.change("ignored on a terminal");
        screen.log("note");
        assert!(
            out.text().ends_with("\x1b[2A\r\x1b[Jnote\na\nc\n"),
            "{:?}",
            out.text()
        );
        // Long rows are cut to the width (one screen line each).
        screen.rows(vec!["x".repeat(80)]);
        assert!(out.text().ends_with(&format!("{}\n", "x".repeat(29))));
        screen.finish();
        screen.log("summary");
        assert!(
            out.text()
                .ends_with(&format!("{}\nsummary\n", "x".repeat(29)))
        );
    }
}
