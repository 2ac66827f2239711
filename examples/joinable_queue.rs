//! Python's `JoinableQueue` program: a producer fills the queue with tasks (structs with a
//! string and numbers), consumers process them and call `task_done`, the producer `join`s
//! until every task is done, then sentinels stop the consumers.
//!
//! ```sh
//! cargo run --release --example joinable_queue
//! ```

use serde::{Deserialize, Serialize};
use shmkit::process::Process;
use shmkit::JoinableQueue;

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    name: String,
    width: u32,
    height: u32,
}

shmkit::task! {
    /// Takes jobs until the `None` sentinel, marking each done; returns how many it did.
    fn consumer(queue: String) -> Result<u32, String> {
        let mut q = JoinableQueue::<Option<Job>>::open(&queue).map_err(|e| e.to_string())?;
        let mut done = 0;
        while let Some(job) = q.get().map_err(|e| e.to_string())? {
            let area = job.width * job.height;
            println!("process {}: {} has area {area}", std::process::id(), job.name);
            done += 1;
            q.task_done().map_err(|e| e.to_string())?;
        }
        q.task_done().map_err(|e| e.to_string())?; // the sentinel
        Ok(done)
    }
}

const CONSUMERS: usize = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::init();
    let name = format!("example.jq.{}", std::process::id());
    let mut q = JoinableQueue::<Option<Job>>::create(&name, 64)?;
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| Process::spawn(consumer, name.clone()))
        .collect::<Result<_, _>>()?;
    for i in 0..20 {
        q.put(&Some(Job {
            name: format!("rect-{i}"),
            width: i,
            height: i + 1,
        }))?;
    }
    q.join()?; // every job marked done (an error, not a hang, if a consumer died holding one)
    println!("all {} jobs done", 20);
    for _ in 0..CONSUMERS {
        q.put(&None)?;
    }
    let mut total = 0;
    for c in consumers {
        total += c.join()??;
    }
    assert_eq!(total, 20);
    Ok(())
}
