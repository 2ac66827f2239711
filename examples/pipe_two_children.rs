//! Python's `a, b = Pipe()` handed to two processes: the parent makes the pipe and talks
//! on neither end; one child asks, the other answers.
//!
//! ```python
//! def ask(conn):
//!     for q in ["ping", "2+2", "bye"]:
//!         conn.send(q)
//!         print(q, "->", conn.recv())
//!
//! def answer(conn):
//!     while (q := conn.recv()) != "bye":
//!         conn.send({"ping": "pong", "2+2": "4"}.get(q, "?"))
//!     conn.send("ciao")
//!
//! a, b = Pipe()
//! p, q = Process(target=ask, args=(a,)), Process(target=answer, args=(b,))
//! ```
//!
//! Here the parent *holds* the pipe (`Pipe::hold`): it keeps the pipe, and its name, for
//! as long as it lives, so the children may start in any order and open their ends
//! (`Pipe::open_first`, `Pipe::open`) whenever they come.
//!
//! ```sh
//! cargo run --release --example pipe_two_children
//! ```

use shmkit::process::Process;
use shmkit::Pipe;

shmkit::task! {
    /// Sends three questions on the pipe's first end, printing each answer.
    fn ask(name: String) -> Result<Vec<String>, String> {
        let mut conn = Pipe::open_first(&name).map_err(|e| e.to_string())?;
        let mut answers = Vec::new();
        for q in ["ping", "2+2", "bye"] {
            conn.send(q.as_bytes()).map_err(|e| e.to_string())?;
            let a = String::from_utf8(conn.recv().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            println!("{q} -> {a}");
            answers.push(a);
        }
        Ok(answers)
    }
}

shmkit::task! {
    /// Answers questions on the pipe's second end until "bye".
    fn answer(name: String) -> Result<u32, String> {
        let mut conn = Pipe::open(&name).map_err(|e| e.to_string())?;
        let mut answered = 0;
        loop {
            let q = conn.recv().map_err(|e| e.to_string())?;
            let a: &[u8] = match &q[..] {
                b"ping" => b"pong",
                b"2+2" => b"4",
                b"bye" => b"ciao",
                _ => b"?",
            };
            conn.send(a).map_err(|e| e.to_string())?;
            answered += 1;
            if q == b"bye" {
                return Ok(answered);
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::init();
    let name = format!("example-pipe2-{}", std::process::id());
    let _held = Pipe::hold(&name, 1 << 12)?; // removes the name when it drops
                                             // The answering child first, on purpose: the order does not matter.
    let b = Process::spawn(answer, name.clone())?;
    let a = Process::spawn(ask, name)?;
    let answers = a.join()??;
    let answered = b.join()??;
    assert_eq!(answers, ["pong", "4", "ciao"]);
    println!("{answered} questions answered between two child processes");
    Ok(())
}
