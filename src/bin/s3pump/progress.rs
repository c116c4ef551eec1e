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
/// the whole tree, and objects done.
pub fn start_tree(wanted: bool) -> Option<impl FnMut(TreeProgress) -> bool + Send + 'static> {
    if !wanted || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = BAR.get_or_init(|| {
        let bar = ProgressBar::new(0).with_style(tree_style());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let bar = bar.clone();
    Some(move |p: TreeProgress| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        bar.set_message(format!("{}/{} objects", p.objects_done, p.objects_total));
        true
    })
}

fn tree_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "[{elapsed_precise}] [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes} \
         {binary_bytes_per_sec} {msg}",
    )
    .expect("a valid template")
    .progress_chars("#> ")
}

fn known_size_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "[{elapsed_precise}] [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes} \
         {binary_bytes_per_sec} eta {eta}",
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
