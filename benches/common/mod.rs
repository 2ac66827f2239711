//! What the criterion benches that have a Python `multiprocessing` equivalent share: running
//! that equivalent once at the start, so that a reader sees both in the same run.

use std::process::Command;

/// Whether this run measures: not `--test` (a quick check) nor `--list`, where a Python
/// reference would only cost time.
pub fn measuring() -> bool {
    !std::env::args().any(|a| a == "--test" || a == "--list")
}

/// Runs `scripts/python/SCRIPT ARGS...` and prints `title` and its rows to stderr. `false`,
/// after a note saying the reference is skipped, when `python3` is missing or the script
/// failed.
pub fn python(script: &str, args: &[String], title: &str) -> bool {
    let path = format!("{}/scripts/python/{script}", env!("CARGO_MANIFEST_DIR"));
    match Command::new("python3").arg(path).args(args).output() {
        Ok(out) if out.status.success() => {
            eprintln!("{title}");
            eprint!("{}", String::from_utf8_lossy(&out.stdout));
            true
        }
        _ => {
            eprintln!("note: python3 not available: the Python reference is skipped");
            false
        }
    }
}
