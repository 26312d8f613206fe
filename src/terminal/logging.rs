//! The library's own diagnostics (`tracing` events: a download resumed after a broken
//! connection, parts of an aborted upload left behind) on stderr.
//!
//! Without a subscriber these events vanish. Warnings show by default, `-v` adds the
//! library's informational events, `-vv` debug, `-vvv` everything, `-q` errors only;
//! `RUST_LOG` (targets syntax: `warn`, `rkectl=debug,aws_sdk_s3=info`) overrides them.
//! `-q` also silences the CLI's own INFO lines and progress (see [`quiet`]).

use std::io::IsTerminal;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `-q` was given: INFO lines and progress are not shown.
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// An INFO line of the CLI's own, in the reference's shape, unless `-q`.
pub fn info(secs: u64, message: impl std::fmt::Display) {
    if !quiet() {
        eprintln!("INFO[{secs:04}] {message}");
    }
}

/// Whether output to a stream that `is_terminal` may be coloured: never where `NO_COLOR`
/// is set to anything but the empty string (no-color.org).
pub fn colours(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `-v` was given: plans list what does not change too.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `-v` was given.
pub fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the stderr subscriber for `verbose` (`-v` count) or `quiet` unless `RUST_LOG`
/// says otherwise.
pub fn init(verbose: u8, quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
    VERBOSE.store(verbose > 0, std::sync::atomic::Ordering::Relaxed);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| targets(verbose, quiet));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colours(std::io::stderr().is_terminal()))
        .with_target(false)
        .without_time();
    // A second init (tests calling main twice) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).with(filter).try_init();
}

/// What `-v` shows: rkectl's own diagnostics, one level more per `v`. Other crates stay at
/// warnings: at debug, bollard logs every container it inspects whole, and RKE's
/// `etcd-rolling-snapshots` carries the S3 keys in its environment (only RUST_LOG asks
/// for more, knowingly).
fn targets(verbose: u8, quiet: bool) -> Targets {
    let (ours, theirs) =
        if quiet { (LevelFilter::ERROR, LevelFilter::ERROR) } else { (level(verbose), LevelFilter::WARN) };
    Targets::new().with_default(theirs).with_target("rkectl", ours)
}

/// The level `-v` repeated `verbose` times shows.
fn level(verbose: u8) -> LevelFilter {
    match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_v_shows_one_level_more() {
        assert_eq!(level(0), LevelFilter::WARN);
        assert_eq!(level(1), LevelFilter::INFO);
        assert_eq!(level(2), LevelFilter::DEBUG);
        assert_eq!(level(9), LevelFilter::TRACE);
    }

    #[test]
    fn v_never_turns_on_other_crates_debug_lines() {
        let t = targets(3, false);
        assert!(t.would_enable("rkectl::refresh", &tracing::Level::TRACE));
        assert!(!t.would_enable("bollard::docker", &tracing::Level::DEBUG), "bollard dumps container environments");
        assert!(t.would_enable("bollard::docker", &tracing::Level::WARN));
        assert!(!targets(0, true).would_enable("rkectl", &tracing::Level::WARN));
    }
}
