//! Python's first `multiprocessing` program: start processes with arguments, print their
//! pids, join them, look at how they ended.
//!
//! ```python
//! def f(name):
//!     print('hello', name, os.getpid())
//! if __name__ == '__main__':
//!     p = Process(target=f, args=('bob',))
//!     p.start(); p.join(); print(p.exitcode)
//! ```
//!
//! ```sh
//! cargo run --release --example process_hello
//! ```

use shmkit::process::Process;

shmkit::task! {
    /// Greets from its own process and says which one.
    fn hello(name: String, times: u32) -> u32 {
        for _ in 0..times {
            println!("hello {name} from process {}", std::process::id());
        }
        std::process::id()
    }
}

fn main() -> Result<(), shmkit::Error> {
    shmkit::init(); // a worker runs its task here and exits; the parent goes on
    println!("parent process {}", std::process::id());
    let mut procs = Vec::new();
    for (name, times) in [("bob", 1), ("alice", 2), ("carol", 1)] {
        let p = Process::spawn(hello, (name.to_string(), times))?;
        println!("started {name} in process {}", p.pid());
        procs.push(p);
    }
    for mut p in procs {
        let pid = p.pid();
        let ran_in = p.join_timeout(std::time::Duration::from_secs(30))?;
        assert_eq!(ran_in, pid);
        if let Some(status) = p.exit_status() {
            println!("process {pid} {status}");
        }
    }
    Ok(())
}
