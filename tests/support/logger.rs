//! A `log` logger that keeps every record, so tests can assert what was
//! logged (and what never was, such as secrets).

use std::sync::{Mutex, OnceLock};

struct Capture(Mutex<Vec<String>>, std::time::Instant);

impl log::Log for Capture {
    /// s3pump's own records at every level; other crates' from INFO up.
    /// (At TRACE, ureq-proto hex-dumps every byte it sends and receives:
    /// kept, that grew the test process by gigabytes.)
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("s3pump") || metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {}: {} (at {:.3}s)",
            record.level(),
            record.target(),
            record.args(),
            self.1.elapsed().as_secs_f64()
        );
        self.0.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static LOGGER: OnceLock<&'static Capture> = OnceLock::new();

fn logger() -> &'static Capture {
    LOGGER.get_or_init(|| {
        let l: &'static Capture = Box::leak(Box::new(Capture(
            Mutex::new(Vec::new()),
            std::time::Instant::now(),
        )));
        log::set_logger(l).expect("no other logger in tests");
        log::set_max_level(log::LevelFilter::Trace);
        l
    })
}

/// Starts capturing s3pump's records at TRACE (idempotent).
pub fn capture() {
    logger();
}

/// Every captured line that contains `needle`.
pub fn lines_containing(needle: &str) -> Vec<String> {
    logger()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Every captured line so far.
pub fn all_lines() -> Vec<String> {
    logger().0.lock().unwrap().clone()
}
