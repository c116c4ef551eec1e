//! The progress bar (indicatif), and printing to stderr around it.
//!
//! There is at most one bar per process; it is drawn only when stderr is a
//! terminal and `--no-progress` was not given. Anything else printed on
//! stderr while it runs (the cancel notice, warnings) goes through
//! [`eprintln`], which hides the bar for the moment it takes.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use s3pump::{Progress, TreeProgress};

static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// Starts the bar when it is wanted and returns the transfer's progress
/// callback; `None` when there is no bar. `size` is the object's size when
/// known before the first part is acknowledged.
pub fn start(
    wanted: bool,
    size: Option<u64>,
) -> Option<impl FnMut(Progress) -> bool + Send + 'static> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = BAR.get_or_init(|| {
        let bar = ProgressBar::new_spinner().with_style(unknown_size_style());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let bar = bar.clone();
    let mut sized = false;
    let mut set_size = move |bar: &ProgressBar, total: Option<u64>| {
        if let (Some(total), false) = (total, sized) {
            bar.set_style(known_size_style());
            bar.set_length(total);
            sized = true;
        }
    };
    set_size(&bar, size);
    Some(move |p: Progress| {
        set_size(&bar, p.total);
        bar.set_position(p.bytes_sent);
        true
    })
}

/// Starts the bar of a tree (`cp --recursive`) when it is wanted: bytes of
/// the whole tree, and objects done. Until the first report (the tree is
/// walked or listed first) it is a spinner: a bar of 0 bytes would read 100%.
pub fn start_tree(wanted: bool) -> Option<impl FnMut(TreeProgress) -> bool + Send + 'static> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = BAR.get_or_init(|| {
        let bar = ProgressBar::new_spinner().with_style(unknown_size_style());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let bar = bar.clone();
    let mut sized = false;
    Some(move |p: TreeProgress| {
        if !sized {
            bar.set_style(tree_style());
            sized = true;
        }
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        bar.set_message(format!("{}/{} objects", p.objects_done, p.objects_total));
        true
    })
}

// The styles fit an 80-column terminal with room to spare. Widest values:
// a byte count is at most 11 columns ("1023.99 MiB"), a rate 13
// ("1023.99 MiB/s"), a compact eta 4 ("59m", "23h"); a percentage 4.
// Known size: 22 + 1 + 4 + 1 + 23 + 1 + 13 + 5 + 4 = 74 columns.
// Tree: 16 + 1 + 4 + 1 + 23 + 1 + 13 + 1 = 60, then "N/M objects" (19
// columns up to 99,999 objects: 79). Unknown size: 10 + 1 + 1 + 1 + 11 +
// 1 + 13 = 38. The tests below render the widest values.

fn tree_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "[{bar:14}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} \
         {msg}",
    )
    .expect("a valid template")
    .progress_chars("#> ")
}

fn known_size_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "[{bar:20}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} \
         eta {eta}",
    )
    .expect("a valid template")
    .progress_chars("#> ")
}

fn unknown_size_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "[{elapsed_precise}] {spinner} {binary_bytes} {binary_bytes_per_sec}",
    )
    .expect("a valid template")
}

/// Removes the bar (at the end of the transfer, whatever its outcome).
pub fn finish() {
    if let Some(bar) = BAR.get() {
        bar.finish_and_clear();
    }
}

/// Prints one line on stderr, above the bar if one is drawn.
pub fn eprintln(line: &str) {
    match BAR.get() {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::{ProgressDrawTarget, TermLike};
    use std::sync::{Arc, Mutex};

    /// A terminal of 200 columns (so that indicatif cuts nothing) that keeps
    /// the lines drawn.
    #[derive(Debug, Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl TermLike for Recorder {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The widest line `style` draws: 1023.99 GiB of 1023.99 GiB-ish, an
    /// hour and more to go, 99,999 of 99,999 objects in the message.
    fn widest(style: ProgressStyle) -> String {
        let term = Recorder::default();
        let bar = ProgressBar::with_draw_target(
            Some((1 << 40) - (1 << 30) / 100),
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        )
        .with_style(style);
        bar.set_message("99999/99999 objects");
        bar.set_position((1 << 40) - (1 << 30));
        bar.force_draw();
        let lines = term.0.lock().unwrap();
        // (indicatif pads a line with spaces to the terminal's width.)
        let trimmed = lines.iter().map(|l| l.trim_end());
        trimmed
            .max_by_key(|l| l.chars().count())
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_style_fits_80_columns() {
        for (name, style) in [
            ("known size", known_size_style()),
            ("tree", tree_style()),
            ("unknown size", unknown_size_style()),
        ] {
            let line = widest(style);
            assert!(line.contains("GiB"), "{name}: {line:?}");
            assert!(line.chars().count() < 80, "{name}: {line:?}");
        }
    }
}
