//! Python's `Manager().dict()` and `.list()`: ten processes each write `d[pid] = pid` and
//! append to a shared list; the parent prints both. No server process: the dict and the
//! list live in shared memory, and each write is a copy under a robust lock.
//!
//! ```python
//! def f(d, l):
//!     d[os.getpid()] = os.getpid()
//!     l.append(os.getpid())
//! if __name__ == '__main__':
//!     with Manager() as m:
//!         d, l = m.dict(), m.list()
//!         ps = [Process(target=f, args=(d, l)) for _ in range(10)]
//!         for p in ps: p.start()
//!         for p in ps: p.join()
//!         print(d); print(l)
//! ```
//!
//! ```sh
//! cargo run --release --example manager_dict_list
//! ```

use shmkit::process::Process;
use shmkit::{SharedDict, SharedList};

shmkit::task! {
    /// Writes this process's pid into the dict and appends it to the list.
    fn record(dict: String, list: String) -> u32 {
        let pid = std::process::id();
        let d = SharedDict::<u32, u32>::open(&dict).expect("open the dict");
        let l = SharedList::<u32>::open(&list).expect("open the list");
        d.insert(&pid, &pid).expect("insert");
        l.push(&pid).expect("append");
        pid
    }
}

fn main() -> Result<(), shmkit::Error> {
    shmkit::init(); // a worker runs its task here and exits; the parent goes on
    let (dict, list) = (
        format!("example.dict.{}", std::process::id()),
        format!("example.list.{}", std::process::id()),
    );
    // The parent holds both for as long as it lives; the names go when it drops them.
    let d = SharedDict::<u32, u32>::create(&dict, 64)?;
    let l = SharedList::<u32>::create(&list, 64)?;
    let procs = (0..10)
        .map(|_| Process::spawn(record, (dict.clone(), list.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    for p in procs {
        p.join()?;
    }
    let mut entries = d.snapshot()?;
    entries.sort();
    println!("dict ({} entries): {entries:?}", d.len());
    println!("list ({} values): {:?}", l.len(), l.to_vec()?);
    Ok(())
}
