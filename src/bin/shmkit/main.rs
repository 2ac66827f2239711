//! The `shmkit` command-line tool.
//!
//! - `shmkit bench`: the showdown: shmkit's channels against a pipe and a Unix socket and
//!   the hardware floors, across two pinned processes, in under a minute.
//! - `shmkit list`: this crate's segments in `/dev/shm`, with whether a live process
//!   holds each.
//! - `shmkit inspect NAME`: a segment's header and, for channels, their state.
//! - `shmkit clean [--dry-run]`: removes the segments no live process holds.

mod bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shmkit",
    version,
    about = "Shared-memory IPC: benchmarks and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the showdown: round trips and throughput of shmkit against a pipe, a Unix
    /// socket and the floors, measured in the same run, interleaved.
    Bench(bench::Args),
    /// Lists this crate's shared-memory segments.
    List {
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows a segment's header and, for channels, depth, capacity, endpoints and their
    /// liveness, and lost messages.
    Inspect {
        /// The segment's name (as `list` shows it).
        name: String,
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Removes this crate's segments that no live process holds (left by processes that
    /// died). Never touches a segment a live process has open. Safe to run concurrently.
    Clean {
        /// Only shows what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Only segments whose name starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Also removes files under our prefix that shmkit did not create (no shmkit
        /// header: `list` shows them as `foreign`); their users hold no shmkit lock, so they go
        /// even if a program still uses them.
        #[arg(long)]
        foreign: bool,
    },
    /// The peer process of a benchmark (internal).
    #[command(name = "__peer", hide = true)]
    Peer {
        case: String,
        name: String,
        size: usize,
        count: u64,
    },
}

fn main() {
    // First thing: in a worker process of the bench's pools this runs the worker and exits.
    shmkit::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Peer {
            case,
            name,
            size,
            count,
        } => bench::peer(&case, &name, size, count),
        Command::List { json } => list(json),
        Command::Inspect { name, json } => inspect(&name, json),
        Command::Clean {
            dry_run,
            prefix,
            foreign,
        } => clean(&prefix, dry_run, foreign),
    };
    if let Err(e) = result {
        eprintln!("shmkit: {e}");
        std::process::exit(1);
    }
}

fn list(json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let segments = shmkit::list()?;
    let now = std::time::SystemTime::now();
    if json {
        let rows: Vec<String> = segments
            .iter()
            .map(|s| {
                format!(
                    "{{\"name\":{},\"kind\":{},\"size\":{},\"creator_pid\":{},\"mode\":\"{:o}\",\"held\":{},\"age_s\":{}}}",
                    json_str(&s.name),
                    json_str(kind_name(s)),
                    s.size,
                    s.creator_pid,
                    s.mode,
                    s.held,
                    s.created
                        .and_then(|c| now.duration_since(c).ok())
                        .map_or(-1.0, |d| d.as_secs_f64())
                )
            })
            .collect();
        println!("[{}]", rows.join(","));
        return Ok(());
    }
    println!(
        "{:<40} {:<18} {:>12} {:>8} {:>6} {:>5} {:>10}",
        "NAME", "KIND", "SIZE", "PID", "MODE", "HELD", "AGE"
    );
    for s in segments {
        let age = s
            .created
            .and_then(|c| now.duration_since(c).ok())
            .map_or("?".to_string(), |d| format!("{:.0}s", d.as_secs_f64()));
        println!(
            "{:<40} {:<18} {:>12} {:>8} {:>6o} {:>5} {:>10}",
            s.name,
            kind_name(&s),
            s.size,
            s.creator_pid,
            s.mode,
            if s.held { "yes" } else { "no" },
            age
        );
    }
    Ok(())
}

fn inspect(name: &str, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let report = shmkit::inspect(name)?;
    if json {
        let fields: Vec<String> = report
            .fields
            .iter()
            .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
            .collect();
        println!(
            "{{\"name\":{},\"fields\":{{{}}}}}",
            json_str(&report.info.name),
            fields.join(",")
        );
        return Ok(());
    }
    println!("{}", report.info.name);
    let width = report
        .fields
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    for (k, v) in &report.fields {
        println!("  {k:<width$}  {v}");
    }
    Ok(())
}

fn clean(prefix: &str, dry_run: bool, foreign: bool) -> Result<(), Box<dyn std::error::Error>> {
    let mode = match (dry_run, foreign) {
        (true, _) => shmkit::CleanMode::DryRun,
        (false, false) => shmkit::CleanMode::Remove,
        (false, true) => shmkit::CleanMode::RemoveIncludingForeign,
    };
    let files = shmkit::clean(prefix, mode)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for f in &files {
        println!("{verb} /dev/shm/{f}");
    }
    eprintln!("{} segment file(s) {verb}", files.len());
    Ok(())
}

/// What `list` calls a segment's kind.
fn kind_name(s: &shmkit::SegmentInfo) -> &'static str {
    match s.kind {
        Some(k) => k.as_str(),
        None if s.foreign => "foreign",
        None => "invalid",
    }
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
