//! Python's `Pool.apply_async` with a callback: ten calls of a slow function on a pool of
//! five processes; the callback runs in the parent as each result comes.
//!
//! ```python
//! def foo(i):
//!     time.sleep(0.2); return i + 100
//! def show(r):
//!     print(r)
//! with Pool(5) as pool:
//!     for i in range(10):
//!         pool.apply_async(foo, (i,), callback=show)
//!     pool.close(); pool.join()
//! ```
//!
//! ```sh
//! cargo run --release --example pool_apply_async
//! ```

use std::time::Duration;

use shmkit::process::Pool;

shmkit::task! {
    fn foo(i: u32) -> u32 {
        std::thread::sleep(Duration::from_millis(200));
        i + 100
    }
}

fn main() -> Result<(), shmkit::Error> {
    shmkit::init();
    let mut pool = Pool::new(5)?;
    for i in 0..10 {
        pool.apply_async_then(foo, i, |r| match r {
            Ok(v) => println!("{v}"),
            Err(e) => eprintln!("foo failed: {e}"),
        })?;
    }
    pool.close();
    pool.join()?; // waits for all ten; the callbacks have run by then
    Ok(())
}
