//! [`SharedList<T>`]: a fixed-capacity list of serde values in one segment.
//!
//! # Table
//! `capacity + 1` slots and an index map (`u32` per index) from list positions to slots;
//! the map and the spare slot (the one no index maps to, kept in the head) always form a
//! permutation of the slots.
//!
//! # Writing, and what a writer's death leaves
//! Every operation holds the table's robust lock, and every change is committed by one
//! store:
//!
//! | operation | written first | committed by |
//! |---|---|---|
//! | `push` | the slot the next position maps to | the length |
//! | `set(i, v)` | the spare slot | the map entry `i` (then the old slot becomes the spare) |
//! | `pop`, `clear` | nothing | the length |
//!
//! A writer that dies before the commit leaves the operation undone, after it done; what
//! it left half-written is in no position of the list. Until somebody calls
//! [`SharedList::recover`] (which recomputes the spare slot from the map), every operation
//! reports [`Error::OwnerDied`]. Every value read is checked against its slot's checksum
//! first ([`Error::Corrupt`] otherwise).

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::slots::{decode, encode, fingerprint, Design, Locked, Params, Table, TableHead};
use super::Recovery;
use crate::error::{Error, Result};
use crate::object::{constructors, At};
use crate::os::failpoint::failpoint;
use crate::primitive::{AtomicU32, Ordering};
use crate::segment::Kind;

/// The list's table design.
pub(crate) enum ListTable {}

impl Design for ListTable {
    const KIND: Kind = Kind::List;

    fn slots(capacity: usize) -> usize {
        capacity + 1
    }

    fn slots_at(capacity: usize) -> usize {
        (capacity * 4).next_multiple_of(8)
    }

    fn fill(capacity: usize, data: &mut [u64]) {
        let map: &mut [u32] = bytemuck::cast_slice_mut(data);
        for (i, m) in map[..capacity].iter_mut().enumerate() {
            *m = i as u32;
        }
    }

    fn init_head(capacity: usize, head: &TableHead) {
        // Relaxed: published with the segment (Release of the ready state).
        head.pending_new.store(capacity as u64, Ordering::Relaxed);
    }
}

/// A fixed-capacity list of `T` in shared memory: Python's `Manager().list()` without a
/// server process.
///
/// Values are any serde type, stored encoded (postcard) in place: `push`, `get` and `set`
/// copy in and out under a robust process-shared lock. The list holds at most `capacity`
/// values, each at most `max_entry_bytes` encoded (256 by default,
/// [`SharedList::create_with`] sets another): a full list or a value too large is an
/// error, never a silent drop or truncation. The segment records a fingerprint of `T` and
/// the codec: opening a `SharedList<String>` as a `SharedList<u64>` is
/// [`Error::LayoutMismatch`].
///
/// # When a writer dies
/// Every operation holds one robust lock, and every change is written where no position
/// of the list looks, checksummed, then committed by one store: `push` writes the next
/// free slot and commits with the length; `set` writes the spare slot and commits by
/// pointing the position at it; `pop` and `clear` are one store of the length. A process
/// killed at any step leaves the operation done (if it got past the commit) or not done,
/// never half. Until somebody calls [`SharedList::recover`], every operation anywhere is
/// [`Error::OwnerDied`]; `recover` recomputes the spare slot and says whether the dead
/// writer's operation was done ([`Recovery`]). Every value is checked against its
/// checksum before it is decoded ([`Error::Corrupt`] otherwise).
///
/// ```
/// use shmkit::SharedList;
/// # let name = shmkit::__private::test_name("doc-list");
/// let l = SharedList::<String>::create(&name, 100)?;
/// // In another process: let l = SharedList::<String>::open(&name)?;
/// l.push(&"a".to_string())?;
/// l.push(&"b".to_string())?;
/// l.set(0, &"A".to_string())?;
/// assert_eq!(l.to_vec()?, ["A", "b"]);
/// assert_eq!(l.pop()?.as_deref(), Some("b"));
/// assert_eq!(l.len(), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct SharedList<T> {
    table: Table<ListTable>,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for SharedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.table.debug(f, "SharedList")
    }
}

impl<T: Serialize + DeserializeOwned> SharedList<T> {
    constructors!("list", capacity: usize, open: Params::OPEN);

    /// Creates the list `name` for `capacity` values of at most `max_entry_bytes` each
    /// (encoded); fails with [`Error::AlreadyExists`] if the name exists.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-list-create-with");
    /// let l = shmkit::SharedList::<Vec<u8>>::create_with(&name, 4, 8)?;
    /// l.push(&vec![1, 2, 3])?;
    /// assert!(matches!(l.push(&vec![0; 100]), Err(shmkit::Error::InvalidArgument(_))));
    /// assert_eq!(l.len(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(name: &str, capacity: usize, max_entry_bytes: usize) -> Result<Self> {
        super::create_with(name, capacity, max_entry_bytes, Self::build)
    }

    fn build(at: At<'_>, params: Params) -> Result<Self> {
        let tag = fingerprint(&[type_name::<T>()]);
        Ok(SharedList {
            table: Table::new(at, params, tag)?,
            _t: PhantomData,
        })
    }

    super::table_accessors!("list", "values", "value (encoded)");

    /// The map entry of position `i` (`i < capacity`).
    fn map_entry<'g>(g: &Locked<'g, ListTable>, i: usize) -> &'g AtomicU32 {
        assert!(i < g.shape().capacity, "position checked by the caller");
        // SAFETY: the map is `capacity` u32s at the start of the data area (validated on
        // open: the body is exactly the map, padded to 8, and the slots), 4-aligned;
        // atomics, so a shared reference is sound whatever peers do.
        unsafe { &*(g.data_at(i * 4) as *const AtomicU32) }
    }

    /// The slot position `i` maps to, checked.
    fn slot_of(g: &Locked<'_, ListTable>, i: usize) -> Result<usize> {
        // Relaxed: under the lock.
        let s = Self::map_entry(g, i).load(Ordering::Relaxed) as usize;
        if s < g.shape().slots {
            Ok(s)
        } else {
            Err(Error::corrupt(format!(
                "list position {i} maps to slot {s}"
            )))
        }
    }

    /// The spare slot, checked.
    fn spare(g: &Locked<'_, ListTable>) -> Result<usize> {
        // Relaxed: under the lock.
        let s = g.head().pending_new.load(Ordering::Relaxed);
        usize::try_from(s)
            .ok()
            .filter(|&s| s < g.shape().slots)
            .ok_or_else(|| Error::corrupt(format!("list: spare slot {s} out of range")))
    }

    fn encode_value(&self, v: &T) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(16);
        encode(v, &mut bytes)?;
        if bytes.len() > self.max_entry_bytes() {
            return Err(Error::InvalidArgument(format!(
                "the value encodes to {} bytes, more than the {} bytes a slot of this list \
                 holds (create it with a larger `max_entry_bytes`)",
                bytes.len(),
                self.max_entry_bytes()
            )));
        }
        Ok(bytes)
    }

    fn value_at(g: &Locked<'_, ListTable>, slot: usize, buf: &mut Vec<u8>) -> Result<T> {
        let l = g.read_entry(slot, buf)?;
        decode(&buf[l.klen..])
    }

    /// Appends `v`. A full list is [`Error::Overflow`], a value larger than
    /// [`SharedList::max_entry_bytes`] [`Error::InvalidArgument`]; the list is unchanged.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-list-push");
    /// let l = shmkit::SharedList::<u64>::create(&name, 2)?;
    /// l.push(&1)?;
    /// l.push(&2)?;
    /// assert!(matches!(l.push(&3), Err(shmkit::Error::Overflow { limit: 2 })));
    /// assert_eq!(l.get(1)?, 2);
    /// assert!(matches!(l.get(2), Err(shmkit::Error::OutOfBounds { index: 2, len: 2 })));
    /// assert_eq!(l.iter()?.sum::<u64>(), 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn push(&self, v: &T) -> Result<()> {
        let bytes = self.encode_value(v)?;
        let g = self.table.lock()?;
        let n = g.stored_len()?;
        if n == g.shape().capacity {
            return Err(Error::Overflow { limit: n as u64 });
        }
        let s = Self::slot_of(&g, n)?;
        if s == Self::spare(&g)? {
            return Err(Error::corrupt("list: a position maps to the spare slot"));
        }
        g.write_entry(s, 0, 0, &bytes);
        // Relaxed: under the lock; this store is the commit.
        g.head().len.store(n as u64 + 1, Ordering::Relaxed);
        Ok(())
    }

    /// The value at position `i` (a copy); [`Error::OutOfBounds`] past the end.
    pub fn get(&self, i: usize) -> Result<T> {
        let mut buf = Vec::new();
        let g = self.table.lock()?;
        let n = g.stored_len()?;
        if i >= n {
            return Err(Error::OutOfBounds { index: i, len: n });
        }
        let s = Self::slot_of(&g, i)?;
        Self::value_at(&g, s, &mut buf)
    }

    /// Replaces the value at position `i`; [`Error::OutOfBounds`] past the end.
    pub fn set(&self, i: usize, v: &T) -> Result<()> {
        let bytes = self.encode_value(v)?;
        let g = self.table.lock()?;
        let n = g.stored_len()?;
        if i >= n {
            return Err(Error::OutOfBounds { index: i, len: n });
        }
        let old = Self::slot_of(&g, i)?;
        let spare = Self::spare(&g)?;
        if old == spare {
            return Err(Error::corrupt("list: a position maps to the spare slot"));
        }
        g.write_entry(spare, 0, 0, &bytes);
        // Relaxed (both): under the lock; the map store is the commit.
        Self::map_entry(&g, i).store(spare as u32, Ordering::Relaxed);
        failpoint!("list.set.committed");
        g.head().pending_new.store(old as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Removes and returns the last value, `None` if the list is empty.
    pub fn pop(&self) -> Result<Option<T>> {
        let mut buf = Vec::new();
        let g = self.table.lock()?;
        let n = g.stored_len()?;
        if n == 0 {
            return Ok(None);
        }
        let s = Self::slot_of(&g, n - 1)?;
        let v = Self::value_at(&g, s, &mut buf)?;
        // Relaxed: under the lock; the commit.
        g.head().len.store(n as u64 - 1, Ordering::Relaxed);
        Ok(Some(v))
    }

    /// Every value, copied under the lock: a consistent snapshot, in order.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let mut buf = Vec::new();
        let g = self.table.lock()?;
        let n = g.stored_len()?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let s = Self::slot_of(&g, i)?;
            out.push(Self::value_at(&g, s, &mut buf)?);
        }
        Ok(out)
    }

    /// An iterator over a snapshot ([`SharedList::to_vec`]).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        self.to_vec().map(Vec::into_iter)
    }

    /// Removes every value.
    pub fn clear(&self) -> Result<()> {
        let g = self.table.lock()?;
        // Relaxed: under the lock.
        g.head().len.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Repairs what a writer that died holding the lock left (the spare slot, recomputed
    /// from the map; see [When a writer dies](SharedList#when-a-writer-dies)) and marks the
    /// list consistent, so that the other calls work again. Without a dead writer it does
    /// nothing. [`Error::Corrupt`] if the map is not a permutation (a forged segment): the
    /// list stays unrepaired.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-list-recover");
    /// let l = shmkit::SharedList::<u64>::create(&name, 4)?;
    /// assert!(!l.recover()?.owner_died); // nothing to repair
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn recover(&self) -> Result<Recovery> {
        let (g, how) = self.table.lock_any()?;
        if how == crate::sync::raw_mutex::Acquired::Clean {
            return Ok(Recovery::default());
        }
        g.stored_len()?;
        let slots = g.shape().slots;
        let mut seen = vec![false; slots];
        for i in 0..g.shape().capacity {
            let s = Self::slot_of(&g, i)?;
            if std::mem::replace(&mut seen[s], true) {
                return Err(Error::corrupt(format!("list: slot {s} is mapped twice")));
            }
        }
        let spare = seen
            .iter()
            .position(|&s| !s)
            .ok_or_else(|| Error::corrupt("list: every slot is mapped, none is spare"))?;
        // Relaxed: under the lock.
        let completed = g.head().pending_new.load(Ordering::Relaxed) != spare as u64;
        g.head().pending_new.store(spare as u64, Ordering::Relaxed);
        g.mark_consistent();
        Ok(Recovery {
            owner_died: true,
            completed,
            dropped: 0,
        })
    }
}
