//! The hot paths allocate nothing: a counting global allocator (counting this thread's
//! allocations only, so the test harness's own threads do not interfere) around 10,000
//! rounds of every channel and lock operation.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::Names;
use shmkit::{frames, mpmc, spsc, Event, Mutex, Semaphore};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; counting touches only a const-initialised
// thread-local, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCS.with(Cell::get)
}

#[test]
fn sending_receiving_and_locking_allocate_nothing() {
    let names = Names::new("alloc");
    let mut tx = spsc::Sender::<u64>::create(&names.name("spsc"), 64).unwrap();
    let mut rx = spsc::Receiver::<u64>::open(&names.name("spsc")).unwrap();
    let mut ftx = frames::Sender::create(&names.name("frames"), 4096).unwrap();
    let mut frx = frames::Receiver::open(&names.name("frames")).unwrap();
    let mut mtx = mpmc::Sender::<u64>::create(&names.name("mpmc"), 64).unwrap();
    let mut mrx = mpmc::Receiver::<u64>::open(&names.name("mpmc")).unwrap();
    let m = Mutex::<u64>::create(&names.name("m"), 0).unwrap();
    let sem = Semaphore::create(&names.name("sem"), 0).unwrap();
    let ev = Event::create(&names.name("ev")).unwrap();
    let payload = [7u8; 100];

    let mut round = |i: u64,
                     tx: &mut spsc::Sender<u64>,
                     rx: &mut spsc::Receiver<u64>,
                     ftx: &mut frames::Sender,
                     frx: &mut frames::Receiver| {
        tx.send(i).unwrap();
        let mut slot = tx.loan().unwrap();
        *slot = i + 1;
        slot.commit().unwrap();
        assert_eq!(rx.recv().unwrap(), i); // a copy
        assert_eq!(*rx.try_recv_ref().unwrap(), i + 1); // in place
        ftx.send(&payload).unwrap();
        let mut loan = ftx.loan(8).unwrap();
        loan.copy_from_slice(&i.to_le_bytes());
        loan.commit().unwrap();
        // In place: the owned `recv` of a frame returns a `Vec`, which allocates.
        assert_eq!(frx.recv_ref().unwrap().len(), 100);
        assert_eq!(frx.try_recv_ref().unwrap().len(), 8);
        mtx.send(i).unwrap();
        assert_eq!(mrx.recv().unwrap(), i);
        mtx.try_send(i).unwrap();
        assert_eq!(*mrx.try_recv_ref().unwrap(), i);
        *m.lock().unwrap() += 1;
        sem.release().unwrap();
        sem.acquire().unwrap();
        ev.set();
        ev.wait().unwrap();
        ev.clear();
    };
    // Warm-up: the first use registers this process's liveness (which allocates once).
    round(0, &mut tx, &mut rx, &mut ftx, &mut frx);
    let before = allocations();
    for i in 1..10_000 {
        round(i, &mut tx, &mut rx, &mut ftx, &mut frx);
    }
    assert_eq!(allocations() - before, 0, "the hot paths allocated");
    assert_eq!(*m.lock().unwrap(), 10_000);
}
