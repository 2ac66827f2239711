//! The `shmkit` command-line tool.
//!
//! - `shmkit bench`: the showdown: shmkit's channels against a pipe and a Unix socket and
//!   the hardware floors, across two pinned processes, in under a minute.
//! - `shmkit list`: this crate's segments in `/dev/shm`.

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
                    "{{\"name\":{:?},\"kind\":{:?},\"size\":{},\"creator_pid\":{},\"mode\":\"{:o}\",\"age_s\":{}}}",
                    s.name,
                    s.kind.map_or("invalid", |k| k.as_str()),
                    s.size,
                    s.creator_pid,
                    s.mode,
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
        "{:<40} {:<18} {:>12} {:>8} {:>6} {:>10}",
        "NAME", "KIND", "SIZE", "PID", "MODE", "AGE"
    );
    for s in segments {
        let age = s
            .created
            .and_then(|c| now.duration_since(c).ok())
            .map_or("?".to_string(), |d| format!("{:.0}s", d.as_secs_f64()));
        println!(
            "{:<40} {:<18} {:>12} {:>8} {:>6o} {:>10}",
            s.name,
            s.kind.map_or("invalid", |k| k.as_str()),
            s.size,
            s.creator_pid,
            s.mode,
            age
        );
    }
    Ok(())
}
