//! [`SharedDict<K, V>`]: a fixed-capacity hash map of serde keys and values in one segment.
//!
//! # Table
//! Open addressing with linear probing over `capacity + capacity / 4 + 1` slots (a load
//! of at most 80 %), keyed by a seeded SipHash of the key's *encoded* bytes (the seed is
//! chosen by the creator and stored in the head; every process hashes alike); a probe
//! starts at the high bits of `hash * slots`. Keys are
//! equal when their encodings are. A removed entry leaves a tombstone (`TOMB`), turned
//! back into `EMPTY` when the slot after it is empty, so chains stay short. A probe visits
//! at most every slot once.
//!
//! # Locks
//! The slots are cut into lock stripes (at most 64, of at least 64 slots; see `stripes`):
//! an operation holds the stripes its probe passes through, so operations on keys in
//! different stripes run side by side; `snapshot`, `clear` and `recover` hold them all.
//! The capacity is shared out among the stripes as counts of free places.
//!
//! # Writing, and what a writer's death leaves
//! An operation writes only in the stripes it holds. An entry is written into a free slot
//! (lengths, hash, bytes, then the checksum) while the slot's state still says free, and
//! committed by one store of its state (`FULL`). A *new* key needs nothing more. A
//! *replaced* value is written into another free slot of the key's chain: the home
//! stripe records `(old, new)` (`pending_*`), the new slot is committed, the old one
//! becomes a tombstone, and the record is cleared. So a writer that dies at any step
//! leaves:
//!
//! | died | after `recover` |
//! |---|---|
//! | before the commit | the operation did not happen (the half-written slot is still free) |
//! | after committing a replacement, before retiring the old slot | the operation happened (the record says which slot to retire) |
//! | after the commit | the operation happened |
//!
//! The next operation in a stripe the writer held reports [`Error::OwnerDied`], and from
//! then on every operation does, until somebody calls [`SharedDict::recover`]. Recovery
//! also drops any slot whose checksum does not match (a forged or damaged entry) and
//! recounts the length (and so the free places). No reader ever decodes a torn entry:
//! every entry read is checked against its checksum first ([`Error::Corrupt`] otherwise).

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::slots::{
    decode, encode, fingerprint, key_hash, Design, Locked, Params, Table, EMPTY, FULL, TOMB,
};
use super::stripes::{self, Step, Stop, STRIPE_BYTES};
use super::Recovery;
use crate::error::{Error, Result};
use crate::object::{constructors, At};
use crate::os::failpoint::failpoint;
use crate::primitive::Ordering;
use crate::segment::Kind;

/// The dict's table design.
pub(crate) enum DictTable {}

impl Design for DictTable {
    const KIND: Kind = Kind::Dict;

    fn slots(capacity: usize) -> usize {
        capacity + capacity / 4 + 1
    }

    fn slots_at(capacity: usize) -> usize {
        stripes::stripes_for(Self::slots(capacity)) * STRIPE_BYTES
    }

    fn fill(capacity: usize, data: &mut [u64]) {
        stripes::fill(capacity, stripes::stripes_for(Self::slots(capacity)), data);
    }

    fn stripes(slots: usize) -> usize {
        stripes::stripes_for(slots)
    }
}

/// A fixed-capacity map from `K` to `V` in shared memory: Python's `Manager().dict()`
/// without a server process, and with atomic read-modify-write ([`SharedDict::update`]).
///
/// Keys and values are any serde types, stored encoded (postcard) in place: `insert` and
/// `get` copy in and out under robust process-shared locks, one per stripe of the table;
/// no process serves the others.
/// The dict holds at most `capacity` entries, each at most `max_entry_bytes` encoded (key
/// and value together; 256 by default, [`SharedDict::create_with`] sets another): a full
/// dict or an entry too large is an error, never a silent drop or truncation.
///
/// The segment records a fingerprint of `K`, `V`, the codec and the table's probe: opening
/// a `SharedDict<String, u64>` as a `SharedDict<u64, u64>` is [`Error::LayoutMismatch`],
/// and so is opening a dict made by a build that probes the table otherwise.
///
/// # Cost
/// One lock (one more for each stripe the key's probe runs into, which is rare), one copy
/// in or out, no system call unless the lock is contended. The table is cut into up to 64
/// stripes of at least 64 slots, each with its own lock and its own share of the
/// capacity, so that processes working on different keys rarely meet (two processes
/// inserting distinct keys at once: millions of sets a second, a hundred times and more
/// what a `Manager().dict()` proxy does; see `benches/collections.rs`). `len` adds up the
/// stripes' counts; `snapshot`, `iter` and `clear` take every stripe's lock. The table has
/// room for a quarter more slots than the capacity; a lookup walks from the key's home
/// slot to the next never-used one, so after very many removals (which leave tombstones
/// where a chain passes) the lookup of an absent key may visit every slot: `clear` starts
/// afresh.
///
/// # When a writer dies
/// Every operation holds the robust locks of the stripes it works in. An entry is written
/// into a free slot, with a checksum, while the slot still reads as free, and committed by
/// one store of the slot's state; a replaced value goes to another slot, and the old slot
/// is retired after the commit (a record in the key's stripe says which). A process
/// killed at any step of an operation leaves it done or not done, never half:
///
/// | killed | the operation, after `recover` |
/// |---|---|
/// | before the commit (mid-bytes, before or after the checksum) | not done: the key keeps its old value, or stays absent |
/// | after the commit, before the old slot is retired | done |
///
/// The next operation that meets a stripe the dead writer held is [`Error::OwnerDied`],
/// and from then on every operation anywhere (reads too), until somebody calls
/// [`SharedDict::recover`]: the dict may be part of a larger invariant of yours, so the
/// death is reported, not hidden. (An operation in other stripes that runs before anyone
/// met the death succeeds: it touches nothing the writer left; a new key may find one
/// place of the capacity missing, the one the writer took.) `recover` finishes or undoes
/// the dead writer's operation, drops any entry whose checksum does not match (forged
/// bytes; a death alone never leaves one), recounts the entries (and the free places) and
/// says what it did ([`Recovery`]). No call ever decodes a torn entry: every entry is
/// checked against its checksum before it is decoded ([`Error::Corrupt`] otherwise).
///
/// ```
/// use shmkit::SharedDict;
/// # let name = shmkit::__private::test_name("doc-dict");
/// let d = SharedDict::<String, u64>::create(&name, 100)?;
/// // In another process: let d = SharedDict::<String, u64>::open(&name)?;
/// d.insert(&"apples".to_string(), &3)?;
/// d.update(&"apples".to_string(), |n| Some(n.unwrap_or(0) + 1))?; // atomic
/// assert_eq!(d.get(&"apples".to_string())?, Some(4));
/// assert_eq!(d.len(), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SharedDict<K, V> {
    table: Table<DictTable>,
    _kv: PhantomData<fn() -> (K, V)>,
}

impl<K, V> fmt::Debug for SharedDict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.table.debug(f, "SharedDict")
    }
}

/// Where a key is, or would go.
struct Probe {
    /// The slot holding the key.
    found: Option<usize>,
    /// The first free slot of the key's chain (before `found`, if found).
    free: Option<usize>,
}

/// A key, encoded and hashed, in a buffer that the value's encoding follows when there
/// is one.
struct Key {
    buf: Spare,
    klen: usize,
    hash: u64,
    /// Where its probe starts.
    home: usize,
}

impl Key {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.klen]
    }
}

impl<K, V> SharedDict<K, V>
where
    K: Serialize + DeserializeOwned + Eq,
    V: Serialize + DeserializeOwned,
{
    constructors!("dict", capacity: usize, open: Params::OPEN);

    /// Creates the dict `name` for `capacity` entries of at most `max_entry_bytes` each
    /// (the key's and the value's encodings together); fails with
    /// [`Error::AlreadyExists`] if the name exists.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-dict-create-with");
    /// let d = shmkit::SharedDict::<u64, String>::create_with(&name, 10, 16)?;
    /// d.insert(&1, &"short".to_string())?;
    /// let long = "x".repeat(100);
    /// assert!(matches!(d.insert(&2, &long), Err(shmkit::Error::InvalidArgument(_))));
    /// assert_eq!(d.max_entry_bytes(), 16);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(name: &str, capacity: usize, max_entry_bytes: usize) -> Result<Self> {
        super::create_with(name, capacity, max_entry_bytes, Self::build)
    }

    fn build(at: At<'_>, params: Params) -> Result<Self> {
        // "probe 2": where a probe starts (`home`) changed from `hash % slots` to a
        // multiply-shift; "stripes 1": the locks and counts moved into lock stripes. A
        // dict made by a build that works otherwise is refused (`LayoutMismatch`), never
        // searched in the wrong places or locked with the wrong lock.
        let tag = fingerprint(&[type_name::<K>(), type_name::<V>(), "probe 2", "stripes 1"]);
        Ok(SharedDict {
            table: Table::new(at, params, tag)?,
            _kv: PhantomData,
        })
    }

    super::table_accessors!("dict", "entries", "entry (encoded key and value together)");

    fn key(&self, k: &K) -> Result<Key> {
        let mut buf = Spare::take(Spare::ENCODED);
        encode(k, &mut buf)?;
        let hash = key_hash(self.table.shape().seed, &buf);
        let home = home(hash, self.table.shape().slots);
        // Every caller takes the lock next and looks at the key's home slot first.
        self.table.prefetch_slot(home);
        Ok(Key {
            klen: buf.len(),
            buf,
            hash,
            home,
        })
    }

    /// Where `k`'s probe starts, and that slot's lock stripe (for tests, through
    /// `__private::dict_home`).
    pub(crate) fn home_of(&self, k: &K) -> Result<(usize, usize)> {
        let key = self.key(k)?;
        Ok((key.home, self.table.stripe_of(key.home)))
    }

    /// Locks `key`'s home stripe and finds its slot, or where it would go (`write`: also
    /// where a replacement of its value would go), taking the stripes the probe enters.
    fn find<'t>(
        table: &'t Table<DictTable>,
        key: &Key,
        buf: &mut Vec<u8>,
        write: bool,
    ) -> Result<(Locked<'t, DictTable>, Probe)> {
        let mut g = table.lock_home(key.home)?;
        // Each restart holds one stripe more than the one before: at most `stripes` turns.
        loop {
            match Self::probe(&mut g, key, buf, write) {
                Ok(p) => return Ok((g, p)),
                Err(Stop::Restart) => {}
                Err(Stop::Fail(e)) => return Err(e),
            }
        }
    }

    /// Finds `key`'s slot, or where it would go; with `write`, a found key's `free` is
    /// where its replacement goes. Visits each slot at most once (twice with `write`).
    fn probe(
        g: &mut Locked<'_, DictTable>,
        key: &Key,
        buf: &mut Vec<u8>,
        write: bool,
    ) -> Step<Probe> {
        let n = g.shape().slots;
        let mut i = key.home;
        let mut free = None;
        for _ in 0..n {
            g.reach(i)?;
            let s = g.slot(i);
            // Relaxed (state, hash): we hold the lock, whose Acquire made the last holder's
            // writes visible.
            match s.state.load(Ordering::Relaxed) {
                EMPTY => {
                    free.get_or_insert(i);
                    return Ok(Probe { found: None, free });
                }
                TOMB => {
                    free.get_or_insert(i);
                }
                FULL => {
                    if s.hash.load(Ordering::Relaxed) == key.hash {
                        let l = g.lens(i)?;
                        if l.klen == key.klen {
                            g.read_bytes(i, l.klen, buf);
                            if buf.as_slice() == key.bytes() {
                                if write && free.is_none() {
                                    free = Some(Self::free_after(g, i)?);
                                }
                                return Ok(Probe {
                                    found: Some(i),
                                    free,
                                });
                            }
                        }
                    }
                }
                other => return Err(bad_state(i, other).into()),
            }
            i = next(i, n);
        }
        Ok(Probe { found: None, free })
    }

    /// The first free slot after `from` in probe order (a replacement's new place when
    /// none precedes the old one).
    fn free_after(g: &mut Locked<'_, DictTable>, from: usize) -> Step<usize> {
        let n = g.shape().slots;
        let mut i = next(from, n);
        for _ in 1..n {
            g.reach(i)?;
            // Relaxed: under the lock.
            match g.slot(i).state.load(Ordering::Relaxed) {
                EMPTY | TOMB => return Ok(i),
                FULL => {}
                other => return Err(bad_state(i, other).into()),
            }
            i = next(i, n);
        }
        Err(Error::corrupt("dict: every slot is in use, more than the capacity allows").into())
    }

    /// Locks and finds `key` for a write (see `find`), and reads the value it has now, if
    /// any.
    fn find_value<'t>(
        table: &'t Table<DictTable>,
        key: &Key,
        buf: &mut Vec<u8>,
    ) -> Result<(Locked<'t, DictTable>, Probe, Option<V>)> {
        let (g, p) = Self::find(table, key, buf, true)?;
        let old = p.found.map(|i| Self::value_at(&g, i, buf)).transpose()?;
        Ok((g, p, old))
    }

    /// Reads and decodes the value in slot `i`.
    fn value_at(g: &Locked<'_, DictTable>, i: usize, buf: &mut Vec<u8>) -> Result<V> {
        let l = g.read_entry(i, buf)?;
        decode(&buf[l.klen..])
    }

    /// Stores the entry in `key`'s buffer (the key's bytes, then the value's) where `p`
    /// (a probe for a write) says: a new slot for a new key, or a move for an existing one.
    fn put(g: &Locked<'_, DictTable>, key: &Key, p: &Probe) -> Result<()> {
        let entry = &key.buf[..];
        if entry.len() > g.shape().max_entry() {
            return Err(too_large(entry.len(), g.shape().max_entry()));
        }
        let klen = key.klen;
        let no_slot = || Error::corrupt("dict: no free slot although the dict is not full");
        match p.found {
            None => {
                g.take_place()?;
                let Some(j) = p.free else {
                    g.give_place();
                    return Err(no_slot());
                };
                g.write_entry(j, klen, key.hash, entry);
                // Relaxed: under the lock; this store is the commit.
                g.slot(j).state.store(FULL, Ordering::Relaxed);
                failpoint!("dict.committed");
            }
            Some(i) => {
                let j = p.free.ok_or_else(no_slot)?;
                let head = g.home_stripe();
                g.write_entry(j, klen, key.hash, entry);
                // Relaxed (all): under the lock. The record first, so that a death after
                // the commit is finished by `recover` (see the type's docs).
                head.pending_old.store(i as u64 + 1, Ordering::Relaxed);
                head.pending_new.store(j as u64 + 1, Ordering::Relaxed);
                g.slot(j).state.store(FULL, Ordering::Relaxed);
                failpoint!("dict.moved");
                retire(g, i);
                head.pending_new.store(0, Ordering::Relaxed);
                head.pending_old.store(0, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Inserts `v` under `k`; the value it replaces, if any. A full dict (a new key when
    /// `capacity` entries are there) is [`Error::Overflow`]; an entry whose encoding is
    /// larger than [`SharedDict::max_entry_bytes`] is [`Error::InvalidArgument`]. Either
    /// way the dict is unchanged.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-dict-insert");
    /// let d = shmkit::SharedDict::<u32, String>::create(&name, 2)?;
    /// assert_eq!(d.insert(&1, &"a".into())?, None);
    /// assert_eq!(d.insert(&1, &"b".into())?, Some("a".into()));
    /// assert_eq!(d.insert(&2, &"c".into())?, None);
    /// assert!(matches!(d.insert(&3, &"d".into()), Err(shmkit::Error::Overflow { limit: 2 })));
    /// assert_eq!(d.remove(&1)?, Some("b".into()));
    /// assert!(!d.contains_key(&1)?);
    /// assert_eq!(d.get(&2)?.as_deref(), Some("c"));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn insert(&self, k: &K, v: &V) -> Result<Option<V>> {
        let mut key = self.key(k)?;
        encode(v, &mut key.buf)?;
        let max = self.max_entry_bytes();
        if key.buf.len() > max {
            return Err(too_large(key.buf.len(), max));
        }
        let mut buf = Spare::take(Spare::READ);
        let (g, p, old) = Self::find_value(&self.table, &key, &mut buf)?;
        Self::put(&g, &key, &p)?;
        Ok(old)
    }

    /// The value under `k`, if any (a copy, decoded).
    pub fn get(&self, k: &K) -> Result<Option<V>> {
        let key = self.key(k)?;
        let mut buf = Spare::take(Spare::READ);
        let (g, p) = Self::find(&self.table, &key, &mut buf, false)?;
        match p.found {
            Some(i) => Self::value_at(&g, i, &mut buf).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `k` has a value.
    pub fn contains_key(&self, k: &K) -> Result<bool> {
        let key = self.key(k)?;
        let mut buf = Spare::take(Spare::READ);
        let (_g, p) = Self::find(&self.table, &key, &mut buf, false)?;
        Ok(p.found.is_some())
    }

    /// Removes `k`; its value, if it had one.
    pub fn remove(&self, k: &K) -> Result<Option<V>> {
        let key = self.key(k)?;
        let mut buf = Spare::take(Spare::READ);
        let (g, p) = Self::find(&self.table, &key, &mut buf, false)?;
        let Some(i) = p.found else {
            return Ok(None);
        };
        let old = Self::value_at(&g, i, &mut buf)?;
        retire(&g, i);
        g.give_place();
        Ok(Some(old))
    }

    /// Reads, modifies and writes the value under `k` atomically: `f` gets the current
    /// value (`None` if there is none) and returns the new one (`None` removes the key),
    /// all under the lock, so that no other process's update comes in between (the fix for
    /// Manager's lost updates, `d[k] = d[k] + 1` from two processes). Returns the new
    /// value.
    ///
    /// `f` runs with the key's lock held: keep it short, and do not call this dict from it
    /// (that may wait for ever, for this lock or with another process for each other's,
    /// or until the timeout set with [`SharedDict::set_timeout`]). If `f` panics, nothing
    /// is written. Errors as for [`SharedDict::insert`].
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-dict-update");
    /// let d = shmkit::SharedDict::<String, Vec<u32>>::create(&name, 10)?;
    /// let k = "ids".to_string();
    /// for i in 0..3 {
    ///     // A nested mutation that Manager().dict() would lose: d[k].append(i).
    ///     d.update(&k, |v| {
    ///         let mut v = v.unwrap_or_default();
    ///         v.push(i);
    ///         Some(v)
    ///     })?;
    /// }
    /// assert_eq!(d.get(&k)?, Some(vec![0, 1, 2]));
    /// assert_eq!(d.update(&k, |_| None)?, None); // removes
    /// assert!(d.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn update(&self, k: &K, f: impl FnOnce(Option<V>) -> Option<V>) -> Result<Option<V>> {
        let mut key = self.key(k)?;
        let mut buf = Spare::take(Spare::READ);
        let (g, p, old) = Self::find_value(&self.table, &key, &mut buf)?;
        let new = f(old);
        match (&new, p.found) {
            (Some(v), _) => {
                encode(v, &mut key.buf)?;
                Self::put(&g, &key, &p)?;
            }
            (None, Some(i)) => {
                retire(&g, i);
                g.give_place();
            }
            (None, None) => {}
        }
        Ok(new)
    }

    /// Every entry, copied under the lock: a consistent snapshot (no operation of another
    /// process is half in it). In slot order, which is no particular order.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-dict-snapshot");
    /// let d = shmkit::SharedDict::<u64, u64>::create(&name, 10)?;
    /// for k in 0..3 {
    ///     d.insert(&k, &(k * 10))?;
    /// }
    /// let mut all = d.snapshot()?;
    /// all.sort();
    /// assert_eq!(all, [(0, 0), (1, 10), (2, 20)]);
    /// assert_eq!(d.iter()?.map(|(_, v)| v).sum::<u64>(), 30);
    /// d.clear()?;
    /// assert!(d.snapshot()?.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn snapshot(&self) -> Result<Vec<(K, V)>> {
        let mut buf = Spare::take(Spare::READ);
        let g = self.lock_all()?;
        let mut out = Vec::with_capacity(self.len());
        for i in 0..g.shape().slots {
            // Relaxed: under the lock.
            match g.slot(i).state.load(Ordering::Relaxed) {
                EMPTY | TOMB => {}
                FULL => {
                    let l = g.read_entry(i, &mut buf)?;
                    let (kb, vb) = buf.split_at(l.klen);
                    out.push((decode(kb)?, decode(vb)?));
                }
                other => return Err(bad_state(i, other)),
            }
        }
        Ok(out)
    }

    /// An iterator over a [`snapshot`](SharedDict::snapshot).
    pub fn iter(&self) -> Result<std::vec::IntoIter<(K, V)>> {
        self.snapshot().map(Vec::into_iter)
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        let g = self.lock_all()?;
        clear(&g);
        Ok(())
    }

    /// Locks every stripe (for the calls that see the whole table); a dead holder's
    /// unrepaired state is [`Error::OwnerDied`].
    fn lock_all(&self) -> Result<Locked<'_, DictTable>> {
        match self.table.lock_all()? {
            (g, crate::sync::raw_mutex::Acquired::Clean) => Ok(g),
            (_, crate::sync::raw_mutex::Acquired::OwnerDied) => Err(Error::OwnerDied),
        }
    }

    /// Repairs what a writer that died holding the lock left: finishes or undoes its
    /// operation (see [When a writer dies](SharedDict#when-a-writer-dies)), drops entries
    /// that fail their checksum, recounts the length, and marks the dict consistent, so
    /// that the other calls work again. Without a dead writer it does nothing. Each step is
    /// idempotent: a process that dies while recovering leaves the work to the next one.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-dict-recover");
    /// let d = shmkit::SharedDict::<u64, u64>::create(&name, 10)?;
    /// // After an operation fails with Error::OwnerDied (a writer died in it):
    /// let r = d.recover()?;
    /// assert!(!r.owner_died); // nothing to repair here
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recover(&self) -> Result<Recovery> {
        let (g, how) = self.table.lock_all()?;
        if how == crate::sync::raw_mutex::Acquired::Clean {
            return Ok(Recovery::default());
        }
        let r = repair(&g)?;
        g.mark_stripes_consistent();
        Ok(r)
    }
}

/// A buffer of one dict operation, borrowed from this thread's two spares (the key and
/// value encoded; bytes read from slots) and given back when the operation ends: a thread
/// that keeps using dicts allocates nothing per call. A nested call (a dict used from
/// [`SharedDict::update`]'s closure) finds the spare taken and starts with an empty
/// buffer. A buffer grown past [`Spare::KEEP`] is freed rather than kept.
struct Spare {
    buf: Vec<u8>,
    which: usize,
}

thread_local! {
    static SPARES: [std::cell::Cell<Vec<u8>>; 2] =
        const { [std::cell::Cell::new(Vec::new()), std::cell::Cell::new(Vec::new())] };
}

impl Spare {
    const ENCODED: usize = 0;
    const READ: usize = 1;
    /// The largest buffer a thread keeps between calls.
    const KEEP: usize = 4096;

    fn take(which: usize) -> Spare {
        // `try_with`: during the thread's exit the spares may be gone; start afresh then.
        let buf = SPARES.try_with(|s| s[which].take()).unwrap_or_default();
        Spare { buf, which }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        if self.buf.capacity() <= Spare::KEEP {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let _ = SPARES.try_with(|s| s[self.which].set(buf));
        }
    }
}

impl std::ops::Deref for Spare {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl std::ops::DerefMut for Spare {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// The slot where a key of hash `hash` starts its probe, among `n`: the high bits of
/// `hash * n` (a multiplication where `hash % n` would divide).
fn home(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

fn next(i: usize, n: usize) -> usize {
    if i + 1 == n {
        0
    } else {
        i + 1
    }
}

fn bad_state(i: usize, state: u32) -> Error {
    Error::corrupt(format!("dict slot {i}: unknown state {state}"))
}

fn too_large(len: usize, max: usize) -> Error {
    Error::InvalidArgument(format!(
        "the entry encodes to {len} bytes, more than the {max} bytes a slot of this dict holds \
         (create it with a larger `max_entry_bytes`)"
    ))
}

/// Makes slot `i` a tombstone, and turns the tombstones before an empty slot back into
/// empty slots (no chain passes through them), as far as the stripes we hold go. Each
/// store leaves a valid table.
fn retire(g: &Locked<'_, DictTable>, i: usize) {
    let n = g.shape().slots;
    // Relaxed (all): under the lock.
    g.slot(i).state.store(TOMB, Ordering::Relaxed);
    if !g.holds(next(i, n)) || g.slot(next(i, n)).state.load(Ordering::Relaxed) != EMPTY {
        return;
    }
    let mut k = i;
    for _ in 0..n {
        if !g.holds(k) {
            break;
        }
        let s = &g.slot(k).state;
        if s.load(Ordering::Relaxed) != TOMB {
            break;
        }
        s.store(EMPTY, Ordering::Relaxed);
        k = if k == 0 { n - 1 } else { k - 1 };
    }
}

/// Empties the table (we hold every stripe): every entry a tombstone first (each store
/// removes one entry and breaks no chain), then every slot empty, and every place free.
fn clear(g: &Locked<'_, DictTable>) {
    let n = g.shape().slots;
    // Relaxed (all): under the lock.
    for i in 0..n {
        let s = &g.slot(i).state;
        if s.load(Ordering::Relaxed) != EMPTY {
            s.store(TOMB, Ordering::Relaxed);
        }
    }
    g.reset_places(0);
    for i in 0..n {
        g.slot(i).state.store(EMPTY, Ordering::Relaxed);
    }
}

/// The repair after a writer's death (we hold the lock; see the module docs). Each step is
/// idempotent, so a recoverer that dies too leaves a state the next one repairs.
fn repair(g: &Locked<'_, DictTable>) -> Result<Recovery> {
    let mut r = Recovery {
        owner_died: true,
        ..Recovery::default()
    };
    let n = g.shape().slots;
    let mut buf = Spare::take(Spare::READ);
    for stripe in 0..g.shape().stripes {
        let rec = g.table().stripe(stripe);
        // Relaxed (all): under the lock (every stripe's).
        let (old, new) = (
            rec.pending_old.load(Ordering::Relaxed),
            rec.pending_new.load(Ordering::Relaxed),
        );
        if new == 0 {
            continue;
        }
        let slot = |v: u64| {
            usize::try_from(v - 1)
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(|| Error::corrupt(format!("dict: pending slot {v} out of range")))
        };
        let new = slot(new)?;
        let old = if old == 0 { None } else { Some(slot(old)?) };
        let committed =
            g.slot(new).state.load(Ordering::Relaxed) == FULL && g.is_intact(new, &mut buf);
        if committed {
            if let Some(old) = old.filter(|&o| o != new) {
                g.slot(old).state.store(TOMB, Ordering::Relaxed);
            }
            r.completed = true;
        }
        failpoint!("dict.recovering");
        rec.pending_new.store(0, Ordering::Relaxed);
        rec.pending_old.store(0, Ordering::Relaxed);
    }
    let mut live = 0usize;
    for i in 0..n {
        let s = &g.slot(i).state;
        match s.load(Ordering::Relaxed) {
            EMPTY | TOMB => {}
            FULL if g.is_intact(i, &mut buf) => live += 1,
            _ => {
                s.store(TOMB, Ordering::Relaxed);
                r.dropped += 1;
            }
        }
    }
    g.reset_places(live);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_starts_inside_the_table_whatever_the_hash() {
        for n in [1, 2, 3, 1_000, 1 << 30] {
            for h in [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                assert!(home(h, n) < n, "hash {h:#x}, {n} slots");
            }
        }
        // The high bits decide: hashes spread over the whole table.
        assert_eq!(home(u64::MAX, 10), 9);
        assert_eq!(home(1 << 63, 10), 5);
    }

    #[test]
    fn spares_are_reused_nested_calls_get_their_own_and_large_ones_are_freed() {
        let mut a = Spare::take(Spare::READ);
        a.extend_from_slice(&[1; 100]);
        let nested = Spare::take(Spare::READ); // taken while `a` holds the spare
        assert_eq!(nested.capacity(), 0);
        drop(nested);
        let cap = a.capacity();
        drop(a);
        let again = Spare::take(Spare::READ);
        assert!(again.is_empty() && again.capacity() == cap); // `a`'s buffer, cleared
        drop(again);
        let mut big = Spare::take(Spare::ENCODED);
        big.resize(Spare::KEEP + 1, 0);
        drop(big);
        assert_eq!(Spare::take(Spare::ENCODED).capacity(), 0); // not kept
    }
}
