//! A budget for log lines that a network client can cause: a few lines per window, then a count.
//! A flood of 400k bad DHCP packets once wrote 68 MB of log in 10 s; with a budget it writes a
//! handful of lines saying how many were left out.

use std::time::{Duration, Instant};

/// Lines allowed per window, and how many were held back since the last one written.
#[derive(Debug)]
pub struct LogLimit {
    window: Duration,
    per_window: u32,
    started: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogLimit {
    /// `per_window` lines every `window`.
    pub const fn new(per_window: u32, window: Duration) -> Self {
        Self {
            window,
            per_window,
            started: None,
            written: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may be written now; `Some(n)` with the number of lines held back since the
    /// last one written (for the line to say), `None` when this one is held back too.
    pub fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .started
            .is_none_or(|started| now.duration_since(started) >= self.window)
        {
            self.started = Some(now);
            self.written = 0;
        }
        if self.written < self.per_window {
            self.written += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Log at `level` through `limit`: the line gets a `suppressed` field when others were held
/// back before it.
#[macro_export]
macro_rules! limited {
    ($limit:expr, $level:ident, $($arg:tt)+) => {
        if let Some(suppressed) = $limit.admit() {
            if suppressed > 0 {
                tracing::$level!(suppressed, $($arg)+);
            } else {
                tracing::$level!($($arg)+);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_the_budget_then_counts() {
        let mut limit = LogLimit::new(3, Duration::from_secs(3600));
        let admitted: Vec<Option<u64>> = (0..10).map(|_| limit.admit()).collect();
        assert_eq!(&admitted[..3], &[Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none));
        // A new window: the next line says how many were left out.
        limit.started = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(limit.admit(), Some(7));
        assert_eq!(limit.admit(), Some(0));
    }
}
