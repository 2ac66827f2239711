//! SHA-512 of every file under a directory with `imap_unordered` and chunks of 20: the
//! seeds' `hashlib` + `Pool` program. Prints how many files, then `path: digest` per file;
//! a file that cannot be read is reported, not fatal.
//!
//! ```sh
//! cargo run --release --example pool_digest -- [DIR]   # default: the current directory
//! ```

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha512};
use shmkit::process::Pool;

shmkit::task! {
    /// The hex SHA-512 of the file at `path`, or why it could not be read.
    fn digest(path: String) -> (String, Result<String, String>) {
        let r = std::fs::read(&path)
            .map(|bytes| {
                Sha512::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
            })
            .map_err(|e| e.to_string());
        (path, r)
    }
}

/// Every regular file under `dir` (symbolic links are not followed).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!("cannot list {}", dir.display());
        return;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => files(&e.path(), out),
            Ok(t) if t.is_file() => out.push(e.path()),
            _ => {}
        }
    }
}

fn main() -> Result<(), shmkit::Error> {
    shmkit::init();
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let mut paths = Vec::new();
    files(Path::new(&dir), &mut paths);
    println!("{} files", paths.len());
    let pool = Pool::builder().build()?;
    let names = paths.into_iter().map(|p| p.display().to_string());
    for r in pool.imap_unordered(digest, names, 20)? {
        match r? {
            (path, Ok(hex)) => println!("{path}: {hex}"),
            (path, Err(e)) => println!("{path}: unreadable: {e}"),
        }
    }
    Ok(())
}
