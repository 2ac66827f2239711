//! Python's writer/reader pair over a `Queue`: a writer process puts three strings, a
//! reader process prints them.
//!
//! ```python
//! def writer(q):
//!     for s in ("A", "B", "C"): q.put(s)
//! def reader(q):
//!     for _ in range(3): print(q.get())
//! ```
//!
//! ```sh
//! cargo run --release --example queue_writer_reader
//! ```

use shmkit::process::Process;
use shmkit::Queue;

// A task's result crosses the process boundary with serde: errors travel as text.
shmkit::task! {
    fn writer(queue: String) -> Result<(), String> {
        let mut q = Queue::<String>::open(&queue).map_err(|e| e.to_string())?;
        for s in ["A", "B", "C"] {
            q.put(&s.to_string()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

shmkit::task! {
    fn reader(queue: String) -> Result<Vec<String>, String> {
        let mut q = Queue::<String>::open(&queue).map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        for _ in 0..3 {
            let s = q.get().map_err(|e| e.to_string())?;
            println!("reader {} got {s:?}", std::process::id());
            got.push(s);
        }
        Ok(got)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::init();
    let name = format!("example.queue.{}", std::process::id());
    // The parent holds the queue (neither puts nor gets): its name lives as long as `q`.
    let q = Queue::<String>::create(&name, 16)?;
    let r = Process::spawn(reader, name.clone())?;
    let w = Process::spawn(writer, name.clone())?;
    w.join()??;
    let got = r.join()??;
    assert_eq!(got, ["A", "B", "C"]);
    drop(q);
    Ok(())
}
