//! `Queue<T>` and `JoinableQueue<T>` across real processes: exactly-once delivery of
//! serde items between 3 producers and 3 consumers, order per producer, out-of-line
//! items, dead producers and consumers, type and codec checks (RELIABILITY.md 23-24), and
//! `Pod` items with `codec::Pod`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::msg::{mix, Rng};
use common::{arg, arg_as, finish, finish_ok, report, spawn, try_wait_until, wait_until, Names};
use serde::{Deserialize, Serialize};
use shmkit::bytemuck::{Pod, Zeroable};
use shmkit::{codec, Error, JoinableQueue, Queue};

#[test]
fn __child() {
    common::child_main(&[
        ("producer", producer),
        ("consumer", consumer),
        ("jq_worker", jq_worker),
        ("jq_taker", jq_taker),
        ("late_reader", late_reader),
        ("counted_producer", counted_producer),
        ("scribbler", scribbler),
        ("edge_producer", edge_producer),
        ("big_putter", big_putter),
        ("cleaner", cleaner),
        ("owner_of_a_queue", owner_of_a_queue),
        ("sized_producer", sized_producer),
        ("pod_producer", pod_producer),
        ("one_taker", one_taker),
        ("one_long_putter", one_long_putter),
        ("long_putter", long_putter),
        ("flooder", flooder),
        ("jq_counter", jq_counter),
        ("jq_filler", jq_filler),
        ("jq_poller", jq_poller),
    ]);
}

/// The items: strings and structs of random lengths, each derived from (producer, seq) so
/// that a consumer can tell a torn or foreign one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Item {
    Text {
        producer: u32,
        seq: u64,
        text: String,
    },
    Record {
        producer: u32,
        seq: u64,
        name: String,
        values: Vec<u32>,
    },
}

fn item(producer: u32, seq: u64) -> Item {
    let r = mix(((producer as u64) << 40) ^ seq);
    let len = item_len(r);
    if r & 1 == 0 {
        let text: String = (0..len)
            .map(|k| char::from(b'a' + ((r >> (k % 50)) % 26) as u8))
            .collect();
        Item::Text {
            producer,
            seq,
            text,
        }
    } else {
        let values = (0..len / 4)
            .map(|k| (r as u32).wrapping_mul(k as u32 + 1))
            .collect();
        Item::Record {
            producer,
            seq,
            name: format!("p{producer}-{seq}"),
            values,
        }
    }
}

/// Mostly small (one slot); one in four longer (up to 12 slots in place); one in 2,000
/// larger still (out of line in a queue of 64 slots, or in place in a larger one).
fn item_len(r: u64) -> usize {
    if r.is_multiple_of(2000) {
        300 + (r >> 20) as usize % 5000
    } else if (r >> 4).is_multiple_of(4) {
        120 + (r >> 8) as usize % 1200
    } else {
        (r >> 8) as usize % 80
    }
}

fn key(it: &Item) -> (u32, u64) {
    match it {
        Item::Text { producer, seq, .. } | Item::Record { producer, seq, .. } => (*producer, *seq),
    }
}

/// `None` is the sentinel that stops a consumer (as in the seeds' programs: producers
/// come and go, so "every producer gone" is not "no more items").
type Items = Queue<Option<Item>>;

fn producer() {
    let mut q = Items::open(&arg("name")).unwrap();
    let id: u32 = arg_as("id");
    let n: u64 = arg_as("n");
    for seq in 0..n {
        q.put(&Some(item(id, seq))).unwrap();
    }
}

fn consumer() {
    let mut q = Items::open(&arg("name")).unwrap();
    let mut last: HashMap<u32, u64> = HashMap::new();
    let (mut count, mut sum) = (0u64, 0u64);
    while let Some(it) = q.get().unwrap() {
        let (p, seq) = key(&it);
        assert_eq!(it, item(p, seq), "a torn or foreign item");
        if let Some(prev) = last.insert(p, seq) {
            assert!(seq > prev, "producer {p}: {seq} after {prev}");
        }
        count += 1;
        sum = sum.wrapping_add(mix(((p as u64) << 40) ^ seq));
    }
    report("count", count);
    report("sum", sum);
    report("lost", q.lost());
}

#[test]
fn three_producers_three_consumers_each_item_exactly_once_in_order_per_producer() {
    let names = Names::new("q-3x3");
    let name = names.name("q");
    let mut q = Items::create(&name, 1024).unwrap();
    // The parent attaches as a producer first (it puts the sentinels at the end): with a
    // producer attached throughout, no consumer meets `Disconnected` between producers.
    q.put(&Some(item(3, 0))).unwrap();
    const PER: u64 = 333_334; // 1,000,002 items in all
    let consumers: Vec<_> = (0..3)
        .map(|_| spawn("consumer", &[("name", name.clone())]))
        .collect();
    let producers: Vec<_> = (0..3u32)
        .map(|id| {
            spawn(
                "producer",
                &[
                    ("name", name.clone()),
                    ("id", id.to_string()),
                    ("n", PER.to_string()),
                ],
            )
        })
        .collect();
    for p in producers {
        finish_ok(p);
    }
    for _ in 0..3 {
        q.put(&None).unwrap();
    }
    let (mut count, mut sum) = (0u64, 0u64);
    for c in consumers {
        let o = finish_ok(c);
        count += o.get::<u64>("count");
        sum = sum.wrapping_add(o.get::<u64>("sum"));
        assert_eq!(o.get::<u64>("lost"), 0);
    }
    let want: u64 = (0..3u64)
        .flat_map(|p| (0..PER).map(move |s| mix((p << 40) ^ s)))
        .fold(mix(3 << 40), u64::wrapping_add);
    assert_eq!(count, 3 * PER + 1);
    assert_eq!(sum, want, "some item was lost or delivered twice");
}

/// Child: opens a queue that its parent created, after a delay, and reads three strings.
fn late_reader() {
    std::thread::sleep(Duration::from_millis(arg_as("delay_ms")));
    let mut q = Queue::<String>::open(&arg("name")).unwrap();
    for _ in 0..3 {
        report("got", q.get().unwrap());
    }
}

#[test]
fn a_queue_outlives_its_first_users_while_its_creator_holds_it() {
    let names = Names::new("q-late");
    let name = names.name("q");
    let q = Queue::<String>::create(&name, 8).unwrap();
    // A writer that comes and goes before the reader even opens the queue.
    {
        let mut w = Queue::<String>::open(&name).unwrap();
        for s in ["A", "B", "C"] {
            w.put(&s.to_string()).unwrap();
        }
    }
    let o = finish_ok(spawn(
        "late_reader",
        &[("name", name.clone()), ("delay_ms", "50".into())],
    ));
    assert_eq!(o.get::<String>("got"), "C"); // the last one reported
    assert_eq!(q.len(), 0);
}

#[test]
fn large_items_travel_out_of_line_and_leave_nothing_behind() {
    let names = Names::new("q-ool");
    let name = names.name("q");
    let mut q = Queue::<Vec<u64>>::create(&name, 4).unwrap();
    let mut other = Queue::<Vec<u64>>::open(&name).unwrap();
    let big: Vec<u64> = (0..200_000).collect();
    q.put(&big).unwrap();
    q.put(&vec![1, 2, 3]).unwrap();
    assert_eq!(other.get().unwrap(), big);
    assert_eq!(other.get().unwrap(), [1, 2, 3]);
    // Over the item limit: refused at put, nothing created; in place or out of line.
    q.set_max_item(100);
    assert!(matches!(q.put(&big), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        q.put(&vec![1000; 100]),
        Err(Error::InvalidArgument(_))
    ));
    // A consumer with a lower limit than its producer's: that item is an error, the next
    // one goes through.
    q.set_max_item(1 << 20);
    other.set_max_item(100);
    q.put(&vec![1000; 100]).unwrap();
    q.put(&vec![4]).unwrap();
    assert!(matches!(other.get(), Err(Error::Corrupt { .. })));
    assert_eq!(other.get().unwrap(), [4]);
    drop((q, other));
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn a_queue_that_fails_to_be_created_leaves_nothing_and_one_that_goes_leaves_others_alone() {
    let names = Names::new("q-cleanup");
    let name = names.name("q");
    assert!(Queue::<String>::create(&name, 0).is_err());
    assert_eq!(names.leftovers(), Vec::<String>::new());
    // A queue whose name starts with another's (`q.xfer`): when `q`'s creator removes
    // `q`, it removes `q`'s out-of-line items, not `q.xfer`'s items in flight.
    let q = Queue::<Vec<u64>>::create(&name, 4).unwrap();
    let other = format!("{name}.xfer");
    let mut q2 = Queue::<Vec<u64>>::create(&other, 4).unwrap();
    finish_ok(spawn("big_putter", &[("name", other.clone())]));
    drop(q);
    assert_eq!(q2.get().unwrap(), (0..10_000).collect::<Vec<u64>>());
    drop(q2);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

/// The lengths of the boundaries between the ways an item travels in a queue of 8 slots:
/// the first slot's first line, the first slot, two slots, three, four (half the queue:
/// the in-place limit), out of line.
const EDGES: [usize; 15] = [
    0, 1, 47, 48, 110, 111, 112, 126, 127, 229, 230, 231, 470, 471, 4000,
];

/// Child: puts a string of each length of `EDGES` (its bytes derived from the length),
/// twice round, into a queue of 8 slots (so that items wrap round the ring).
fn edge_producer() {
    let mut q = Queue::<String>::open(&arg("name")).unwrap();
    for _ in 0..2 {
        for n in EDGES {
            q.put(&edge_string(n)).unwrap();
        }
    }
}

fn edge_string(n: usize) -> String {
    (0..n)
        .map(|k| char::from(b'a' + ((k * 7 + n) % 26) as u8))
        .collect()
}

#[test]
fn items_of_every_length_cross_the_slot_and_out_of_line_boundaries() {
    // A string of length n encodes to a length of 1 byte (n < 128) or 2, then n bytes:
    // the edges are 48 (one line), 112 (one slot), 232 (two), 352 (three) and 472 (four,
    // the in-place limit of 8 slots) bytes encoded.
    let names = Names::new("q-edges");
    let name = names.name("q");
    let mut q = Queue::<String>::create(&name, 8).unwrap();
    assert_eq!(q.in_place_limit(), 472);
    let producer = spawn("edge_producer", &[("name", name.clone())]);
    for _ in 0..2 {
        for n in EDGES {
            assert_eq!(q.get().unwrap(), edge_string(n), "length {n}");
        }
    }
    finish_ok(producer);
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

/// Child: puts one item too large for a slot (out of line) into queue `name`, and exits.
fn big_putter() {
    let mut q = Queue::<Vec<u64>>::open(&arg("name")).unwrap();
    q.put(&(0..10_000).collect()).unwrap();
}

/// Child: `shmkit::clean` of everything under `prefix` (what `shmkit clean` runs);
/// reports how many segments it removed.
fn cleaner() {
    let removed = shmkit::clean(&arg("prefix"), shmkit::CleanMode::Remove).unwrap();
    report("removed", removed.len());
}

#[test]
fn clean_spares_the_out_of_line_items_of_a_live_queue_and_removes_those_of_a_dead_one() {
    let names = Names::new("q-cleanspare");
    let name = names.name("q");
    let big: Vec<u64> = (0..10_000).collect();
    let mut q = Queue::<Vec<u64>>::create(&name, 4).unwrap();
    // The item's segment is held by nobody between the producer's exit and our `get`.
    finish_ok(spawn("big_putter", &[("name", name.clone())]));
    let o = finish_ok(spawn("cleaner", &[("prefix", names.prefix().to_owned())]));
    assert_eq!(o.get::<usize>("removed"), 0);
    assert_eq!(q.get().unwrap(), big);
    drop(q);
    // A queue whose every process died (its creator killed after a `put`, before any
    // `get`): the queue and the item are stale, and both go.
    let dead = names.name("dead");
    let mut owner = spawn("owner_of_a_queue", &[("name", dead.clone())]);
    let out = std::io::BufReader::new(owner.stdout.take().unwrap());
    use std::io::BufRead;
    assert!(out.lines().any(|l| l.unwrap() == "REPORT put=1"));
    owner.kill().unwrap();
    owner.wait().unwrap();
    let o = finish_ok(spawn("cleaner", &[("prefix", names.prefix().to_owned())]));
    assert_eq!(o.get::<usize>("removed"), 2, "the queue and the item");
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

/// Child: creates queue `name`, puts one item out of line, says so, and waits to be
/// killed.
fn owner_of_a_queue() {
    let mut q = Queue::<Vec<u64>>::create(&arg("name"), 4).unwrap();
    q.put(&(0..10_000).collect()).unwrap();
    report("put", 1);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Child: opens queue `name`, reports its in-place limit, and puts strings of the
/// lengths in `lens` (comma-separated; bytes from `edge_string`).
fn sized_producer() {
    let mut q = Queue::<String>::open(&arg("name")).unwrap();
    report("limit", q.in_place_limit());
    for n in arg("lens").split(',').map(|n| n.parse::<usize>().unwrap()) {
        q.put(&edge_string(n)).unwrap();
    }
}

#[test]
fn items_up_to_half_the_slots_travel_in_place_and_every_opener_agrees() {
    let names = Names::new("q-sized");
    // Three slots: one in place, 112 bytes; longer items out of line, and still delivered.
    let small = names.name("small");
    let mut q = Queue::<String>::create(&small, 3).unwrap();
    assert_eq!(q.in_place_limit(), 112);
    let o = finish_ok(spawn(
        "sized_producer",
        &[("name", small.clone()), ("lens", "110,111,500".into())],
    ));
    assert_eq!(o.get::<usize>("limit"), 112);
    for n in [110, 111, 500] {
        assert_eq!(q.get().unwrap(), edge_string(n), "length {n}");
    }
    // 80 slots: 40 in place, 112 + 39 * 120 bytes; items of 4,002 and 4,207 bytes encoded
    // travel in place (no segment of their own), in 34 and 36 consecutive slots.
    let big = names.name("big");
    let mut q2 = Queue::<String>::create(&big, 80).unwrap();
    assert_eq!(q2.in_place_limit(), 4792);
    let o = finish_ok(spawn(
        "sized_producer",
        &[("name", big.clone()), ("lens", "4000,4205".into())],
    ));
    assert_eq!(o.get::<usize>("limit"), 4792);
    let items = shmkit::list()
        .unwrap()
        .into_iter()
        .filter(|i| i.name.starts_with(&format!("{big}.x")))
        .count();
    assert_eq!(items, 0, "no item went out of line");
    assert_eq!(q2.len(), 34 + 36, "slots in use");
    assert_eq!(q2.get().unwrap(), edge_string(4000));
    assert_eq!(q2.get().unwrap(), edge_string(4205));
    assert!(q2.is_empty());
    drop((q, q2));
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn another_item_type_is_a_layout_mismatch() {
    let names = Names::new("q-type");
    let name = names.name("q");
    let _q = Queue::<String>::create(&name, 4).unwrap();
    assert!(matches!(
        Queue::<u64>::open(&name),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        shmkit::mpmc::Receiver::<u64>::open(&name),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(Queue::<String>::open(&name).is_ok());
    let jname = names.name("jq");
    let _j = JoinableQueue::<String>::create(&jname, 4).unwrap();
    assert!(matches!(
        JoinableQueue::<u32>::open(&jname),
        Err(Error::LayoutMismatch { .. })
    ));
}

/// A plain-old-data item for `codec::Pod`: 32 bytes, no padding, each field derived from
/// `seq` so that a torn or reordered item shows.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[bytemuck(crate = "shmkit::bytemuck")]
#[repr(C)]
struct Reading {
    seq: u64,
    sensor: u32,
    flags: u32,
    values: [u64; 2],
}

fn reading(seq: u64) -> Reading {
    let r = mix(seq);
    Reading {
        seq,
        sensor: r as u32,
        flags: (r >> 32) as u32,
        values: [r, !seq],
    }
}

type Readings = Queue<Reading, codec::Pod>;

/// Child: puts `n` readings into queue `name`.
fn pod_producer() {
    let mut q = Readings::open(&arg("name")).unwrap();
    for seq in 0..arg_as::<u64>("n") {
        q.put(&reading(seq)).unwrap();
    }
}

#[test]
fn pod_items_cross_processes_exactly_and_in_order() {
    let names = Names::new("q-pod");
    let name = names.name("q");
    // A small ring, so that the producer laps it many times and waits on a full queue.
    let mut q = Readings::create(&name, 16).unwrap();
    let n = 20_000u64;
    let producer = spawn(
        "pod_producer",
        &[("name", name.clone()), ("n", n.to_string())],
    );
    for seq in 0..n {
        assert_eq!(q.get().unwrap(), reading(seq));
    }
    finish_ok(producer);
    assert!(matches!(q.get(), Err(Error::Disconnected)));
    assert_eq!((q.lost(), q.undecodable()), (0, 0));
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn another_codec_is_a_layout_mismatch() {
    let names = Names::new("q-codec");
    let pod = names.name("pod");
    let _p = Queue::<u64, codec::Pod>::create(&pod, 4).unwrap();
    assert!(matches!(
        Queue::<u64>::open(&pod),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(Queue::<u64, codec::Pod>::open(&pod).is_ok());
    let pc = names.name("pc");
    let _q = Queue::<u64>::create(&pc, 4).unwrap();
    assert!(matches!(
        Queue::<u64, codec::Pod>::open(&pc),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(Queue::<u64, codec::Postcard>::open(&pc).is_ok());
    let jname = names.name("jq");
    let _j = JoinableQueue::<u64, codec::Pod>::create(&jname, 4).unwrap();
    assert!(matches!(
        JoinableQueue::<u64>::open(&jname),
        Err(Error::LayoutMismatch { .. })
    ));
}

#[test]
fn producers_killed_mid_put_cost_at_most_their_slot_never_a_torn_item() {
    let names = Names::new("q-kill");
    let name = names.name("q");
    let mut q = Items::create(&name, 64).unwrap();
    q.put(&Some(item(7, 0))).unwrap(); // attached throughout: see the 3x3 test
    let mut rng = Rng::new(common::msg::seed());
    let consumer = spawn("consumer", &[("name", name.clone())]);
    // Producers killed after a random delay, one after another; a last one finishes.
    for id in 0..4u32 {
        let mut p = spawn(
            "producer",
            &[
                ("name", name.clone()),
                ("id", id.to_string()),
                ("n", "100000000".into()),
            ],
        );
        std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
        p.kill().unwrap();
        let _ = finish(p);
    }
    finish_ok(spawn(
        "producer",
        &[
            ("name", name.clone()),
            ("id", "9".into()),
            ("n", "1000".into()),
        ],
    ));
    q.put(&None).unwrap();
    let o = finish_ok(consumer);
    assert!(o.get::<u64>("count") >= 1000);
    assert!(o.get::<u64>("lost") <= 4, "{o:?}");
}

// ---------------------------------------------------------------------------------------
// JoinableQueue

#[derive(Debug, Serialize, Deserialize)]
struct Task {
    name: String,
    n: u64,
}

/// Child: takes tasks until a `None` sentinel, marking each done; reports the sum.
fn jq_worker() {
    let mut q = JoinableQueue::<Option<Task>>::open(&arg("name")).unwrap();
    let mut sum = 0;
    while let Some(t) = q.get().unwrap() {
        assert_eq!(t.name, format!("task-{}", t.n));
        sum += t.n;
        q.task_done().unwrap();
    }
    q.task_done().unwrap(); // the sentinel
    report("sum", sum);
}

#[test]
fn join_returns_when_every_task_is_done_across_processes() {
    let names = Names::new("jq-ok");
    let name = names.name("q");
    let mut q = JoinableQueue::<Option<Task>>::create(&name, 32).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| spawn("jq_worker", &[("name", name.clone())]))
        .collect();
    for n in 0..500u64 {
        q.put(&Some(Task {
            name: format!("task-{n}"),
            n,
        }))
        .unwrap();
    }
    q.join_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(q.unfinished(), 0);
    for _ in &workers {
        q.put(&None).unwrap();
    }
    let total: u64 = workers
        .into_iter()
        .map(|w| finish_ok(w).get::<u64>("sum"))
        .sum();
    assert_eq!(total, (0..500).sum::<u64>());
    q.join().unwrap();
    assert_eq!(q.lost_tasks(), 0);
}

/// Child: takes `take` items, marks none done, reports, then waits to be killed.
fn jq_taker() {
    let mut q = JoinableQueue::<Option<Task>>::open(&arg("name")).unwrap();
    for _ in 0..arg_as::<u32>("take") {
        q.get().unwrap();
    }
    report("taken", 1);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_consumer_killed_before_task_done_makes_join_an_error_not_a_hang() {
    let names = Names::new("jq-dead");
    let name = names.name("q");
    let mut q = JoinableQueue::<Option<Task>>::create(&name, 32).unwrap();
    for n in 0..5u64 {
        q.put(&Some(Task {
            name: format!("task-{n}"),
            n,
        }))
        .unwrap();
    }
    let mut taker = spawn("jq_taker", &[("name", name.clone()), ("take", "2".into())]);
    wait_until(Duration::from_secs(60), || q.queue().len() == 3);
    // The other three are done here.
    for _ in 0..3 {
        q.get().unwrap();
        q.task_done().unwrap();
    }
    taker.kill().unwrap();
    let _ = finish(taker);
    match q.join_timeout(Duration::from_secs(60)) {
        Err(Error::TasksLost { count }) => assert_eq!(count, 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.unfinished(), 0);
    assert_eq!(q.lost_tasks(), 2);
}

#[test]
fn task_done_more_often_than_put_is_an_error() {
    let names = Names::new("jq-over");
    let mut q = JoinableQueue::<u8>::create(&names.name("q"), 4).unwrap();
    q.put(&1).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
    q.join().unwrap();
}

/// Child: takes tasks until a `None` sentinel; counts each in the shared counter `count`
/// after a little work of random length, then marks it done.
fn jq_counter() {
    let mut q = JoinableQueue::<Option<Task>>::open(&arg("name")).unwrap();
    let count = shmkit::RawValue::<u64>::open(&arg("count")).unwrap();
    let mut rng = Rng::new(std::process::id() as u64);
    while let Some(t) = q.get().unwrap() {
        assert_eq!(t.name, task_name(t.n));
        for _ in 0..rng.below(2000) {
            std::hint::spin_loop();
        }
        if rng.below(64) == 0 {
            std::thread::yield_now();
        }
        // Relaxed: `task_done` publishes it (Release) to `join`.
        count
            .atomic()
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        q.task_done().unwrap();
    }
    q.task_done().unwrap(); // the sentinel
}

/// `n` `jq_counter` children on queue `name`, counting in `count`.
fn counters(n: usize, name: &str, count: &str) -> Vec<std::process::Child> {
    (0..n)
        .map(|_| {
            spawn(
                "jq_counter",
                &[("name", name.to_owned()), ("count", count.to_owned())],
            )
        })
        .collect()
}

/// A task's name: now and then longer than one slot carries (a multi-slot item).
fn task_name(n: u64) -> String {
    if n % 7 == 3 {
        format!("task-{n}-{}", "x".repeat(300))
    } else {
        format!("task-{n}")
    }
}

#[test]
fn join_returns_only_once_every_task_is_processed_round_after_round() {
    let names = Names::new("jq-rounds");
    let name = names.name("q");
    let mut q = JoinableQueue::<Option<Task>>::create(&name, 64).unwrap();
    let count = shmkit::RawValue::<u64>::create(&names.name("count"), 0).unwrap();
    let workers = counters(3, &name, &names.name("count"));
    let mut put = 0u64;
    for round in 0..40u64 {
        // Rounds of 1 to 150 tasks: shorter and longer than the queue.
        for _ in 0..1 + mix(round) % 150 {
            q.put(&Some(Task {
                name: task_name(put),
                n: put,
            }))
            .unwrap();
            put += 1;
        }
        q.join_timeout(Duration::from_secs(120)).unwrap();
        // Acquire: after `join`, every task's count is visible (its `task_done` came after).
        let done = count.atomic().load(std::sync::atomic::Ordering::Acquire);
        assert_eq!(
            done, put,
            "join returned in round {round} before every task was processed"
        );
        assert_eq!(q.unfinished(), 0);
    }
    for _ in &workers {
        q.put(&None).unwrap();
    }
    for w in workers {
        finish_ok(w);
    }
    q.join().unwrap();
    assert_eq!(q.lost_tasks(), 0);
}

/// Child: puts tasks `0..n` (blocking while the queue is full), then waits to be killed.
fn jq_filler() {
    let mut q = JoinableQueue::<Option<Task>>::open(&arg("name")).unwrap();
    for n in 0..arg_as::<u64>("n") {
        q.put(&Some(Task {
            name: task_name(n),
            n,
        }))
        .unwrap();
    }
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_producer_killed_while_it_waits_for_room_leaves_join_nothing_to_wait_for() {
    // Python counts an item when its put begins; so did this queue, and a producer
    // killed inside a `put` that waited for room left `join` waiting forever. (Task 3's
    // name, over half the 4 slots, goes out of line in one slot: the queue fills.)
    let names = Names::new("jq-filler");
    let name = names.name("q");
    let mut q = JoinableQueue::<Option<Task>>::create(&name, 4).unwrap();
    let mut filler = spawn("jq_filler", &[("name", name.clone()), ("n", "100".into())]);
    wait_until(Duration::from_secs(60), || q.queue().is_full());
    std::thread::sleep(Duration::from_millis(100)); // inside its next `put`, most likely
    filler.kill().unwrap();
    let _ = finish(filler);
    let mut got = 0;
    while let Ok(t) = q.try_get() {
        assert_eq!(t.unwrap().n, got);
        q.task_done().unwrap();
        got += 1;
    }
    assert!(got >= 1, "the queue was full");
    q.join_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!((q.unfinished(), q.lost_tasks()), (0, 0));
}

/// Puts task `n`, takes it and marks it done here: `join` then returns, with nothing lost.
fn one_more_task_joins_with_nothing_lost(q: &mut JoinableQueue<Option<Task>>, n: u64) {
    q.put(&Some(Task {
        name: task_name(n),
        n,
    }))
    .unwrap();
    assert_eq!(q.get().unwrap().unwrap().n, n);
    q.task_done().unwrap();
    q.join_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(q.lost_tasks(), 0);
}

/// Child: polls the queue with `try_get` (it stays empty) until a failpoint kills it in
/// one of those polls.
fn jq_poller() {
    let mut q = JoinableQueue::<Option<Task>>::open(&arg("name")).unwrap();
    loop {
        assert!(matches!(q.try_get(), Err(Error::WouldBlock)));
    }
}

#[cfg(feature = "failpoints")]
#[test]
fn a_consumer_killed_in_a_poll_of_an_empty_queue_costs_no_task() {
    // A consumer counts an item from right before the CAS that claims it, not while it
    // polls an empty queue: a killed idle worker must not make every later join fail.
    let names = Names::new("jq-poll");
    let name = names.name("q");
    let mut q = JoinableQueue::<Option<Task>>::create(&name, 16).unwrap();
    q.put(&None).unwrap(); // a producer attached throughout: the pollers see no disconnect
    assert!(q.get().unwrap().is_none());
    q.task_done().unwrap();
    for at in [1, 7, 50] {
        let o = finish(common::spawn_with_env(
            "jq_poller",
            &[("name", name.clone())],
            &[("SHMKIT_FAILPOINT", &format!("mpmc.recv.empty@{at}"))],
        ));
        assert_eq!(o.signal, Some(libc::SIGKILL), "@{at}: {o:?}");
    }
    one_more_task_joins_with_nothing_lost(&mut q, 1);
}

#[test]
fn consumers_killed_while_they_wait_on_an_empty_queue_cost_no_task() {
    // A consumer counts an item from right before its claim, not while it polls or
    // sleeps: killing idle workers after `join` (a pool shrinking) must not make later
    // joins fail.
    let names = Names::new("jq-idle");
    let name = names.name("q");
    let mut q = JoinableQueue::<Option<Task>>::create(&name, 16).unwrap();
    let count = shmkit::RawValue::<u64>::create(&names.name("count"), 0).unwrap();
    let mut workers = counters(2, &name, &names.name("count"));
    for n in 0..100 {
        q.put(&Some(Task {
            name: task_name(n),
            n,
        }))
        .unwrap();
    }
    q.join_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        count.atomic().load(std::sync::atomic::Ordering::Acquire),
        100
    );
    // Waiting in `get` (polling, or asleep): killed wherever they are.
    for w in &mut workers {
        w.kill().unwrap();
    }
    for w in workers {
        finish(w);
    }
    one_more_task_joins_with_nothing_lost(&mut q, 100);
}

#[test]
fn a_joinable_queue_opened_as_a_plain_queue_is_a_layout_mismatch() {
    // A plain handle would take items without counting them, and `join` would return
    // while they are processed.
    let names = Names::new("jq-plain");
    let name = names.name("q");
    let _q = JoinableQueue::<String>::create(&name, 4).unwrap();
    assert!(matches!(
        Queue::<String>::open(&name),
        Err(Error::LayoutMismatch { .. })
    ));
    let _p = Queue::<String>::create(&names.name("p"), 4).unwrap();
    assert!(matches!(
        JoinableQueue::<String>::open_or_create(&names.name("p"), 4),
        Err(Error::LayoutMismatch { .. })
    ));
}

#[test]
fn forged_task_counts_are_errors_never_a_panic_or_an_endless_join() {
    // Everything in `NAME.jq` is another process's to write: counts at their largest,
    // a count on a free registration, a registration of a process that does not exist.
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
    let names = Names::new("jq-forged");
    let name = names.name("q");
    let mut q = JoinableQueue::<u8>::create(&name, 4).unwrap();
    q.put(&1).unwrap();
    assert_eq!(q.get().unwrap(), 1); // this handle is consumer 0
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/shmkit.{name}.jq"))
        .unwrap();
    let map = memmap2::MmapOptions::new().map_raw(&file).unwrap();
    // The segment header (128 bytes), the lines of `lost` and of `join`'s signal, then a
    // line per consumer: its token (u32) at 0, its count (u64) at 8.
    let consumer = |i: usize| 128 + 2 * 128 + i * 128;
    assert!(consumer(5) <= map.len());
    // SAFETY: in bounds (checked above) and aligned (a page-aligned mapping, offsets of
    // 8); the segment is only accessed through atomics.
    let u64_at = |off: usize| unsafe { &*(map.as_mut_ptr().add(off) as *const AtomicU64) };
    // SAFETY: as for `u64_at`.
    let u32_at = |off: usize| unsafe { &*(map.as_mut_ptr().add(off) as *const AtomicU32) };
    assert_ne!(u32_at(consumer(0)).load(SeqCst), 0, "the layout changed");
    u64_at(consumer(0) + 8).store(u64::MAX, SeqCst);
    u64_at(consumer(1) + 8).store(12_345, SeqCst); // free: ignored
                                                   // Nobody's tokens, with counts that add up past `u64::MAX` (with ours).
    for (i, count) in [(2, 1 << 62), (3, 1 << 62), (4, 1)] {
        u32_at(consumer(i)).store(u32::MAX - i as u32, SeqCst);
        u64_at(consumer(i) + 8).store(count, SeqCst);
    }
    assert_eq!(q.unfinished(), u64::MAX); // saturated
    let _ = format!("{q:?}");
    // This handle "holds" items: its join would wait for itself.
    assert!(matches!(q.join(), Err(Error::InvalidArgument(_))));
    q.task_done().unwrap();
    u64_at(consumer(0) + 8).store(0, SeqCst);
    assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
    // The forged registration is reaped as a dead consumer's: its "items" are lost.
    match q.join_timeout(Duration::from_secs(60)) {
        Err(Error::TasksLost { count }) => assert_eq!(count, (1 << 63) + 1),
        other => panic!("{other:?}"),
    }
    for i in 2..5 {
        assert_eq!(u32_at(consumer(i)).load(SeqCst), 0, "reaped");
    }
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn join_on_a_handle_that_holds_unfinished_items_is_an_error_not_a_hang() {
    let names = Names::new("jq-self");
    let mut q = JoinableQueue::<u8>::create(&names.name("q"), 4).unwrap();
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    assert_eq!(q.get().unwrap(), 1);
    // Only this handle can mark its item done: Python's join would wait forever.
    assert!(matches!(q.join(), Err(Error::InvalidArgument(_))));
    q.task_done().unwrap();
    assert!(matches!(
        q.join_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert_eq!(q.unfinished(), 1);
    assert_eq!(q.get().unwrap(), 2);
    q.task_done().unwrap();
    q.join().unwrap();
}

#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_at_each_step_of_a_put_leaves_join_nothing_to_wait_for() {
    // The third put (task 2) takes one slot, the fourth (task 3) several: a dead
    // producer's claim of a long item leaves continuations for `join` to step over too.
    assert!(task_name(3).len() > 200 && task_name(2).len() < 100);
    for (point, at, lost) in [
        ("queue.put.claimed", 3, 1),
        ("queue.put.half_written", 3, 1),
        ("queue.put.committed", 3, 0),
        ("queue.put.claimed", 4, 1),
        ("queue.put.half_written", 4, 1),
        ("queue.put.committed", 4, 0),
    ] {
        let names = Names::new("jq-fp");
        let name = names.name("q");
        let mut q = JoinableQueue::<Option<Task>>::create(&name, 64).unwrap();
        let o = finish(common::spawn_with_env(
            "jq_filler",
            &[("name", name.clone()), ("n", "10".into())],
            &[("SHMKIT_FAILPOINT", &format!("{point}@{at}"))],
        ));
        assert_eq!(o.signal, Some(libc::SIGKILL), "{point}@{at}: {o:?}");
        let delivered = at - lost;
        for n in 0..delivered {
            assert_eq!(q.get().unwrap().unwrap().n, n, "{point}@{at}");
            q.task_done().unwrap();
        }
        // Nobody waits at the dead producer's claim (if any): `join` steps over it, also
        // when called with no timeout at all, in a loop.
        if at == 3 {
            q.join_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("{point}@{at}: {e}"));
        } else {
            let until = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                match q.join_timeout(Duration::ZERO) {
                    Ok(()) => break,
                    Err(Error::Timeout) if std::time::Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("{point}@{at}: {e}"),
                }
            }
        }
        assert_eq!(q.queue().lost(), lost, "{point}@{at}");
        let next = q.try_get();
        assert!(
            matches!(next, Err(Error::WouldBlock | Error::Disconnected)),
            "{point}@{at}: {next:?}"
        );
        assert_eq!(q.unfinished(), 0, "{point}@{at}");
    }
}

/// Child: puts items `0..n` of producer `id` (a failpoint may kill it on the way).
fn counted_producer() {
    producer();
}

#[cfg(feature = "failpoints")]
#[test]
fn a_producer_killed_at_each_step_of_a_put_costs_that_item_alone() {
    // The put killed is the `at`-th: of a short item (one slot), then of a long one
    // (several slots: its continuations are stepped over after its skipped first slot).
    let long = |seq: u64| item_len(mix((1 << 40) ^ seq)) >= 200;
    let short_at = (40..).find(|&s| !long(s)).unwrap();
    let long_at = (40..).find(|&s| long(s)).unwrap();
    let cases = [short_at, long_at].into_iter().flat_map(|seq| {
        [
            ("queue.put.claimed", seq, 1),
            ("queue.put.half_written", seq, 1),
            ("queue.put.committed", seq + 1, 0),
        ]
        .map(|(point, delivered, lost)| (point, seq + 1, delivered, lost))
    });
    for (point, at, delivered, lost) in cases {
        let names = Names::new("q-fp");
        let name = names.name("q");
        // Room for every item the producer puts before it is killed.
        let mut q = Items::create(&name, 4096).unwrap();
        q.put(&Some(item(8, 0))).unwrap(); // a producer attached throughout
        let p = common::spawn_with_env(
            "counted_producer",
            &[
                ("name", name.clone()),
                ("id", "1".into()),
                ("n", "100".into()),
            ],
            &[("SHMKIT_FAILPOINT", &format!("{point}@{at}"))],
        );
        let o = finish(p);
        assert_eq!(o.signal, Some(libc::SIGKILL), "{point}: {o:?}");
        q.put(&None).unwrap();
        let (mut got, mut last) = (0, None);
        assert_eq!(q.get().unwrap(), Some(item(8, 0)));
        while let Some(it) = q.get().unwrap() {
            let (p, seq) = key(&it);
            assert_eq!(it, item(p, seq), "{point}: a torn item");
            assert!(
                last.is_none_or(|l| seq == l + 1),
                "{point}: {seq} after {last:?}"
            );
            last = Some(seq);
            got += 1;
        }
        assert_eq!(got, delivered, "{point}@{at}");
        assert_eq!(q.lost(), lost, "{point}@{at}");
    }
}

/// Runs child `role` on queue `name` with the failpoint `point`, which must kill it.
#[cfg(feature = "failpoints")]
fn killed_at(role: &str, name: &str, point: &str) {
    let o = finish(common::spawn_with_env(
        role,
        &[("name", name.to_owned())],
        &[("SHMKIT_FAILPOINT", point)],
    ));
    assert_eq!(o.signal, Some(libc::SIGKILL), "{role} at {point}: {o:?}");
}

/// Child: takes one item from queue `name` (a failpoint kills it while it holds it).
fn one_taker() {
    let mut q = Queue::<String>::open(&arg("name")).unwrap();
    let _ = q.get();
}

#[cfg(feature = "failpoints")]
#[test]
fn a_consumer_killed_holding_a_long_item_gives_back_all_its_slots() {
    let names = Names::new("q-holdkill");
    let name = names.name("q");
    let mut q = Queue::<String>::create(&name, 8).unwrap();
    // A short item in slot 0, taken here, so that the long one takes slots 1 to 4.
    q.put(&"x".to_string()).unwrap();
    assert_eq!(q.get().unwrap(), "x");
    q.put(&edge_string(400)).unwrap(); // 402 bytes encoded: 4 slots
    killed_at("one_taker", &name, "mpmc.recv.claimed@1");
    // Items of 4 slots keep going round the 8: the second needs the dead consumer's
    // slots, which a blocked `put` frees, all four.
    for n in 401..409 {
        q.put(&edge_string(n)).unwrap();
        assert_eq!(q.get().unwrap(), edge_string(n), "length {n}");
    }
    assert_eq!(q.lost(), 1, "the item the consumer held");
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

/// Child: puts one string of 400 characters (4 slots) into queue `name` (a failpoint
/// kills it after its claim).
fn one_long_putter() {
    let mut q = Queue::<String>::open(&arg("name")).unwrap();
    let _ = q.put(&edge_string(400));
}

#[cfg(feature = "failpoints")]
#[test]
fn short_timeouts_in_a_loop_still_step_over_a_dead_producers_claim() {
    let names = Names::new("q-shortwait");
    let name = names.name("q");
    let mut q = Queue::<String>::create(&name, 16).unwrap();
    killed_at("one_long_putter", &name, "queue.put.claimed@1");
    q.put(&"after".to_string()).unwrap();
    // Each wait is shorter than a sleep slice, so it never reaches the full check on its
    // own; the item behind the dead claim must come all the same.
    let got = (0..50_000)
        .find_map(|_| match q.get_timeout(Duration::from_micros(50)) {
            Err(Error::Timeout) => None,
            r => Some(r),
        })
        .expect("the item behind the dead claim");
    assert_eq!(got.unwrap(), "after");
    assert_eq!(q.lost(), 1);
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Turns: a long item waiting for room is not kept waiting by short ones

/// Whether a sender of queue `name` has taken the turn (as `shmkit inspect` shows it).
fn turn_taken(name: &str) -> bool {
    let report = shmkit::inspect(name).unwrap();
    report.fields.iter().any(|(k, _)| k.starts_with("turn"))
}

/// A long item waiting for room, put by a child as `how` says (see `long_putter`), is not
/// overtaken by a short one.
fn a_long_item_is_not_overtaken(how: &str) {
    let names = Names::new("q-turn");
    let (mut q, child) = queue_and_a_waiting_long_put_by(&names, 4, 4, 150, how);
    assert_eq!(q.get().unwrap(), "0");
    // One slot is free, the long item needs two: without the turn a short item would take
    // it, and under a steady stream of short items every slot freed after it.
    for _ in 0..10 {
        assert!(matches!(q.try_put(&"late".into()), Err(Error::WouldBlock)));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(q.get().unwrap(), "1");
    // Two free: the long item goes in, and its sender ends its turn.
    assert_eq!(finish_ok(child).values["put"], "ok");
    assert!(!turn_taken(&names.name("q")));
    assert_eq!(q.get().unwrap(), "2");
    q.put(&"late".to_string()).unwrap();
    for want in ["3".to_string(), edge_string(150), "late".into()] {
        assert_eq!(q.get().unwrap(), want);
    }
    assert_eq!(q.lost(), 0);
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn a_long_item_waiting_for_room_is_not_overtaken_by_short_ones() {
    a_long_item_is_not_overtaken("put");
}

#[test]
fn a_long_item_put_with_short_timeouts_in_a_loop_keeps_its_turn_between_them() {
    // Each call takes the turn if it has none: ended at each time-out, the turn would be
    // gone between two calls, and a short item could take the free slot then.
    a_long_item_is_not_overtaken("timeouts");
}

#[cfg(feature = "tokio")]
#[test]
fn a_long_item_put_by_an_async_put_takes_the_turn_too() {
    a_long_item_is_not_overtaken("async");
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_long_put_dropped_while_it_waits_ends_its_turn() {
    let names = Names::new("q-turndrop");
    let name = names.name("q");
    let give_up = shmkit::Event::create(&names.name("give-up")).unwrap();
    let bye = shmkit::Event::create(&names.name("bye")).unwrap();
    let (mut q, child) = queue_and_a_waiting_long_put_by(&names, 4, 4, 150, "async-drop");
    give_up.set();
    // The child dropped its send but lives on, holding the queue: nothing but the drop
    // ends its turn (a turn past its time stays in the word until somebody claims, unless
    // its taker, still waiting, finds it so: this parent is quicker than that).
    if !try_wait_until(Duration::from_secs(30), || !turn_taken(&name)) {
        bye.set();
        finish(child);
        panic!("the dropped async put kept its turn");
    }
    assert_eq!(q.get().unwrap(), "0");
    q.put(&"late".to_string()).unwrap();
    bye.set();
    assert_eq!(finish_ok(child).values["put"], "dropped");
    for want in ["1", "2", "3", "late"] {
        assert_eq!(q.get().unwrap(), want);
    }
    assert!(matches!(q.try_get(), Err(Error::WouldBlock)));
    drop((q, give_up, bye));
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn the_turn_of_a_long_put_killed_while_it_waits_passes_on() {
    let names = Names::new("q-turnkill");
    let (mut q, mut child) = queue_and_a_waiting_long_put(&names, 4, 4, 150);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(q.get().unwrap(), "0");
    // The dead sender's turn must not keep the free slot from us: a blocked put's recovery
    // ends it.
    q.put_timeout(&"after".to_string(), Duration::from_secs(30))
        .unwrap();
    assert!(!turn_taken(&names.name("q")));
    for want in ["1", "2", "3", "after"] {
        assert_eq!(q.get().unwrap(), want);
    }
    assert_eq!(q.lost(), 0);
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn a_turn_that_ran_out_between_two_timed_puts_is_taken_again_at_once() {
    // A producer that puts a long item with short timeouts, working between the calls, may
    // find its turn past its time and cleared by another producer when it comes back: it
    // takes the turn again at once, as one that never had it, rather than resting as one
    // whose turn ran out while it waited.
    let names = Names::new("q-turnaway");
    let name = names.name("q");
    let mut short = Queue::<String>::create(&name, 4).unwrap();
    for i in 0..4 {
        short.put(&i.to_string()).unwrap();
    }
    let mut long = Queue::<String>::open(&name).unwrap();
    let mut consumer = Queue::<String>::open(&name).unwrap();
    let item = edge_string(150); // two slots
    let once = |q: &mut Queue<String>| q.put_timeout(&item, Duration::from_millis(1));
    assert!(matches!(once(&mut long), Err(Error::Timeout)));
    assert!(turn_taken(&name));
    std::thread::sleep(Duration::from_millis(250)); // the other work: past the turn's time
    assert_eq!(consumer.get().unwrap(), "0");
    short.put(&"4".into()).unwrap(); // clears the turn past its time, takes the free slot
    assert!(!turn_taken(&name));
    assert!(matches!(once(&mut long), Err(Error::Timeout)));
    assert!(turn_taken(&name));
    assert_eq!(consumer.get().unwrap(), "1");
    assert!(matches!(
        short.try_put(&"late".into()),
        Err(Error::WouldBlock)
    ));
    assert_eq!(consumer.get().unwrap(), "2");
    long.put_timeout(&item, Duration::from_secs(30)).unwrap();
    for want in ["3".to_string(), "4".into(), item.clone()] {
        assert_eq!(consumer.get().unwrap(), want);
    }
    drop((short, long, consumer));
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

/// Child: puts one string of `len` characters into queue `name`, waiting for room as `how`
/// says, and reports how the put ended (`ok`, or the error): `put` (a blocking put),
/// `timeouts` (`put_timeout` of 1 ms in a loop, sleeping 5 ms between), `async` (`Async::send`), `async-drop`
/// (`Async::send` given up when event `NAME.give-up` is set, reported as `dropped`; then it
/// waits for event `NAME.bye`, holding the queue).
fn long_putter() {
    let name = arg("name");
    let mut q = Queue::<String>::open(&name).unwrap();
    let item = edge_string(arg_as("len"));
    let r = match arg("how").as_str() {
        "put" => q.put(&item),
        "timeouts" => loop {
            match q.put_timeout(&item, Duration::from_millis(1)) {
                // Other work between the calls.
                Err(Error::Timeout) => std::thread::sleep(Duration::from_millis(5)),
                r => break r,
            }
        },
        #[cfg(feature = "tokio")]
        "async" => {
            let mut q = shmkit::aio::Async::new(q).unwrap();
            common::runtime().block_on(q.send(&item))
        }
        #[cfg(feature = "tokio")]
        "async-drop" => {
            let base = name.strip_suffix(".q").unwrap();
            let give_up = shmkit::Event::open(&format!("{base}.give-up")).unwrap();
            let bye = shmkit::Event::open(&format!("{base}.bye")).unwrap();
            let mut q = shmkit::aio::Async::new(q).unwrap();
            let r = common::runtime().block_on(async {
                tokio::select! {
                    r = q.send(&item) => r.map(|()| "ok"),
                    r = give_up.wait_async() => r.map(|()| "dropped"),
                }
            });
            bye.wait().unwrap();
            report("put", r.map_or_else(|e| format!("{e:?}"), str::to_string));
            return;
        }
        other => panic!("long_putter: no way {other}"),
    };
    report("put", r.map_or_else(|e| format!("{e:?}"), |()| "ok".into()));
}

/// A queue of `cap` slots with `used` short items ("0", "1", …) in it, and a child blocked
/// putting a string of `len` characters, which has taken the turn.
fn queue_and_a_waiting_long_put(
    names: &Names,
    cap: usize,
    used: usize,
    len: usize,
) -> (Queue<String>, std::process::Child) {
    queue_and_a_waiting_long_put_by(names, cap, used, len, "put")
}

/// `queue_and_a_waiting_long_put`, the child waiting as `how` says (see `long_putter`).
fn queue_and_a_waiting_long_put_by(
    names: &Names,
    cap: usize,
    used: usize,
    len: usize,
    how: &str,
) -> (Queue<String>, std::process::Child) {
    let name = names.name("q");
    let mut q = Queue::<String>::create(&name, cap).unwrap();
    for i in 0..used {
        q.put(&i.to_string()).unwrap();
    }
    assert!(!turn_taken(&name));
    let mut child = spawn(
        "long_putter",
        &[
            ("name", name.clone()),
            ("len", len.to_string()),
            ("how", how.into()),
        ],
    );
    if !try_wait_until(Duration::from_secs(30), || turn_taken(&name)) {
        // Not left behind, waiting for ever.
        let _ = child.kill();
        let _ = child.wait();
        panic!("the long put ({how}) did not take the turn");
    }
    (q, child)
}

/// Sends `signal` to `child`.
fn signal(child: &std::process::Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

#[test]
fn a_turn_the_queue_cannot_drain_for_stalls_the_other_producers_only_for_a_while() {
    // A worker that must put before it can get again (it feeds its own queue) would wait
    // for ever behind a turn that needs the queue to drain: the turn runs out, and its
    // taker lets the others on.
    let names = Names::new("q-turnwait");
    // 6 of 8 slots used, and an item of 4 slots (402 bytes encoded) waiting.
    let (mut q, child) = queue_and_a_waiting_long_put(&names, 8, 6, 400);
    q.put_timeout(&"worker".to_string(), Duration::from_secs(30))
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..8 {
        got.push(q.get().unwrap());
    }
    let mut want: Vec<String> = (0..6).map(|i| i.to_string()).collect();
    want.extend(["worker".to_string(), edge_string(400)]);
    assert_eq!(got, want);
    assert_eq!(finish_ok(child).values["put"], "ok");
    assert_eq!(q.lost(), 0);
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

/// Child: puts `n` short items `"f{id}-{i}"` into queue `name`, as fast as it can.
fn flooder() {
    let mut q = Queue::<String>::open(&arg("name")).unwrap();
    let id: u32 = arg_as("id");
    for i in 0..arg_as::<u32>("n") {
        q.put(&format!("f{id}-{i}")).unwrap();
    }
}

#[test]
fn a_turn_stays_while_a_slow_consumer_drains_the_queue_for_it() {
    // A consumer that takes 120 ms an item frees the long item's 4 slots in some 400 ms,
    // twice a turn's time: the turn must stay while the queue drains (it runs out only
    // after a time with no progress), or the producers of short items, waiting behind it,
    // would take each slot freed after it ran out, to the end.
    let names = Names::new("q-turnslow");
    let (mut q, long) = queue_and_a_waiting_long_put(&names, 8, 8, 400);
    let flooders: Vec<_> = (0..2)
        .map(|id| {
            spawn(
                "flooder",
                &[
                    ("name", names.name("q")),
                    ("id", id.to_string()),
                    ("n", "6".into()),
                ],
            )
        })
        .collect();
    let mut got = Vec::new();
    while got.len() < 8 + 12 + 1 {
        got.push(q.get().unwrap());
        std::thread::sleep(Duration::from_millis(120));
    }
    let at = got.iter().position(|s| *s == edge_string(400)).unwrap();
    // Right after the 8 items that were there, and whatever short items took a slot
    // before the turn was taken (it is, before the flooders start).
    assert!(at <= 8 + 2, "the long item came {at}th of {}", got.len());
    assert_eq!(finish_ok(long).values["put"], "ok");
    for f in flooders {
        finish_ok(f);
    }
    assert_eq!(q.lost(), 0);
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn a_stopped_producers_turn_is_honoured_only_for_its_time() {
    let names = Names::new("q-turnstop");
    let (mut q, child) = queue_and_a_waiting_long_put(&names, 4, 4, 150);
    // The turn's taker cannot end its turn while it is stopped; the others wait out its
    // time, and go on.
    signal(&child, libc::SIGSTOP);
    assert_eq!(q.get().unwrap(), "0");
    q.put_timeout(&"late".to_string(), Duration::from_secs(30))
        .unwrap();
    signal(&child, libc::SIGCONT);
    for want in ["1".to_string(), "2".into(), "3".into(), "late".into()] {
        assert_eq!(q.get().unwrap(), want);
    }
    assert_eq!(q.get().unwrap(), edge_string(150));
    assert_eq!(finish_ok(child).values["put"], "ok");
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn a_short_put_that_fits_goes_in_behind_a_turn_when_every_consumer_is_gone() {
    let names = Names::new("q-turngone");
    // 7 of 8 slots used, and an item of 3 slots (252 bytes encoded) waiting.
    let (mut q, child) = queue_and_a_waiting_long_put(&names, 8, 7, 250);
    let mut consumer = Queue::<String>::open(&names.name("q")).unwrap();
    assert_eq!(consumer.get().unwrap(), "0"); // two free: not enough for the long item
    signal(&child, libc::SIGSTOP); // its turn stays, fresh
    drop(consumer); // every consumer is gone
                    // Python's `put` does not care whether anybody reads: nor does ours, if it fits.
    q.put_timeout(&"kept".to_string(), Duration::from_secs(30))
        .unwrap();
    signal(&child, libc::SIGCONT);
    // The long put finds every consumer gone (or, if this process took the consumer's
    // part again already, room later): it is told so, or goes in.
    let o = finish_ok(child);
    assert!(
        o.values["put"] == "Disconnected" || o.values["put"] == "ok",
        "{o:?}"
    );
    for want in ["1", "2", "3", "4", "5", "6", "kept"] {
        assert_eq!(q.get().unwrap(), want);
    }
    if o.values["put"] == "ok" {
        assert_eq!(q.get().unwrap(), edge_string(250));
    }
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// A hostile process (RELIABILITY.md 24)

/// Child: scribbles random bytes over the item bytes of the queue's slots (the lengths,
/// flags and payloads; never the stamps that the mpmc hostile tests cover) until killed.
fn scribbler() {
    use shmkit::__layout::{mpmc, segment, slot};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/shm/shmkit.{}", arg("name")))
        .unwrap();
    let map = memmap2::MmapOptions::new().map_raw(&file).unwrap();
    let (base, len) = (map.as_mut_ptr(), map.len());
    let stride = slot::size::<[u32; 30]>(); // a 120-byte item, 4-aligned, as the queue's
    let first = segment::SIZE + mpmc::SIZE;
    let slots = (len - first) / stride;
    let mut rng = Rng::new(arg_as("seed"));
    report("started", 1);
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    for i in 0u64.. {
        // About 200,000 bytes a second: enough that many items are hit, few enough that
        // many are not (both outcomes are checked).
        if i % 200 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = first + rng.below(slots as u64) as usize * stride;
        // The item follows the 8-byte stamp.
        let at = s + 8 + rng.below((stride - 8) as u64) as usize;
        // SAFETY: in bounds of the mapping (`at < s + stride <= len`); a byte written
        // volatile: the other process reads these bytes only by copying them.
        unsafe { base.add(at).write_volatile(rng.next() as u8) };
    }
}

#[test]
fn a_hostile_process_scribbling_over_queued_items_gets_errors_never_a_panic() {
    assert_eq!(
        shmkit::__layout::slot::STAMP,
        0,
        "the scribbler skips the stamp"
    );
    let names = Names::new("q-hostile");
    let name = names.name("q");
    let mut q = Queue::<(String, Vec<u32>)>::create(&name, 256).unwrap();
    /// Kills the scribbler however the test ends (it scribbles until killed).
    struct Scribbler(std::process::Child);
    impl Drop for Scribbler {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Scribbler(
        common::command(
            "scribbler",
            &[
                ("name", name.clone()),
                ("seed", common::msg::seed().to_string()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    let out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    use std::io::BufRead;
    assert!(out.lines().any(|l| l.unwrap() == "REPORT started=1"));
    // A short item (one slot) and a longer one (eight slots).
    let items = [
        ("abc".repeat(20), (0..10).collect::<Vec<u32>>()),
        ("abc".repeat(200), (0..100).collect::<Vec<u32>>()),
    ];
    let (mut ok, mut errors, mut codec) = (0u64, 0u64, 0u64);
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for k in 0..64 {
            q.put(&items[k % 2]).unwrap();
        }
        for _ in 0..64 {
            match q.get_timeout(Duration::from_secs(10)) {
                Ok(_) => ok += 1,
                Err(Error::Codec { .. }) => {
                    errors += 1;
                    codec += 1;
                }
                Err(Error::Corrupt { .. }) => errors += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    drop(child);
    // Every call returned (an item, or an error for that item); the scribbling showed.
    assert!(ok > 0 && errors > 0, "ok {ok}, errors {errors}");
    assert_eq!(
        q.undecodable(),
        codec,
        "every item that did not decode is counted"
    );
}
