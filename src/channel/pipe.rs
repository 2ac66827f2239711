//! [`Pipe`]: Python's `multiprocessing.Pipe`, over two frame rings (the user-facing
//! contract is on the type).
//!
//! The two directions are two frame channels named `NAME.c2o` (creator to opener) and
//! `NAME.o2c`; the creator holds the sender of `c2o` and the receiver of `o2c`, the opener
//! the other two ends. The ring names never reach the user: every error names the pipe.
//!
//! Creating makes `c2o` first, with `O_EXCL`, then `o2c`: whoever creates `c2o` is the
//! creator, which is how `open_or_create` decides among racing processes. A process that
//! finds `o2c` therefore also finds `c2o` (unless the pipe is one-way, or its creator is
//! closing it: the creator's end unlinks `o2c` first, then `c2o`).
//!
//! A [`PipeHolder`] ([`Pipe::hold`]) makes the two rings as the creator does, through frame
//! [`Holder`]s, and attaches no end: the *first* end (the creator's two: `c2o`'s sender,
//! `o2c`'s receiver) is then opened with [`Pipe::open_first`], the second (the opener's)
//! with [`Pipe::open`], each claiming `c2o` first, as `open` always did.
//!
//! What lives here touches no shared memory itself: it only opens and holds the rings.

use std::time::{Duration, Instant};

use super::frames::{Frame, Holder, Receiver, Sender};
use crate::error::{Error, Result};
use crate::os::failpoint::failpoint;
use crate::segment::MAX_NAME_LEN;

/// One end of a pipe: Python's `multiprocessing.Pipe`, between processes.
///
/// `Pipe::create(name, capacity)` in one process and `Pipe::open(name)` in another give the
/// two ends of a connection: what one end sends, the other receives, in both directions
/// (or in one, with [`Pipe::create_one_way`]: the creator only receives, the opener only
/// sends, like `Pipe(duplex=False)`). When either process may come first, both call
/// [`Pipe::open_or_create`]: one becomes the creator, the other the opener. A parent that
/// takes neither end holds the pipe ([`Pipe::hold`], a [`PipeHolder`]) and hands its name
/// to two children, which open its ends with [`Pipe::open_first`] and [`Pipe::open`]. Messages are
/// byte frames, received as copies (`recv`, `try_recv`, `recv_timeout`: `Vec<u8>`) or in
/// place (`recv_ref`, `try_recv_ref`, `recv_ref_timeout`: a
/// [`Frame`](crate::frames::Frame), for cooperating peers), as in
/// [`frames`](crate::frames). `recv` returns [`Error::Disconnected`] once the other end is
/// gone and everything it sent has been received; `poll(timeout)` says whether a message
/// is ready. The creator's end removes the pipe's name when it drops (an end already open
/// keeps working).
///
/// ```
/// use shmkit::Pipe;
/// # let name = shmkit::__private::test_name("doc-pipe");
/// let mut parent = Pipe::create(&name, 1 << 16)?;
/// let mut child = Pipe::open(&name)?; // in the child process
/// parent.send(b"ping")?;
/// assert_eq!(child.recv()?, b"ping");
/// child.send(b"pong")?;
/// assert!(parent.poll(std::time::Duration::from_secs(1))?);
/// assert_eq!(&*parent.recv_ref()?, b"pong"); // in place
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Pipe {
    // Declared (so dropped) before `tx`: the creator unlinks `o2c` before `c2o`, so that an
    // opener never finds `o2c` without `c2o` and takes a closing duplex pipe for one-way.
    rx: Option<Receiver>,
    tx: Option<Sender>,
    creator: bool,
}

/// The ring names' suffix: `.c2o` or `.o2c`.
const SUFFIX_LEN: usize = 4;

/// How long [`Pipe::open_or_create`] waits for a racing creator to make its second ring.
const CREATING: Duration = Duration::from_secs(5);

/// The ring names of pipe `name`: `(c2o, o2c)`; [`Error::InvalidName`] if the suffix makes
/// them too long (the rest of the rules is checked on the rings, and reported as the
/// pipe's by [`about_pipe`]).
fn names(name: &str) -> Result<(String, String)> {
    if name.len() + SUFFIX_LEN > MAX_NAME_LEN {
        return Err(Error::InvalidName {
            name: name.to_owned(),
            reason: "a pipe's name must be at most 196 bytes long (its rings add 4)",
        });
    }
    Ok((format!("{name}.c2o"), format!("{name}.o2c")))
}

/// The two ends of a pipe: the first is the creator's (`c2o`'s sender, `o2c`'s receiver),
/// the second the opener's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    First,
    Second,
}

/// An error about one of the rings of pipe `name`, told about the pipe: the name the user
/// gave, never a ring's.
fn about_pipe(e: Error, name: &str) -> Error {
    about_end(e, name, End::Second)
}

/// [`about_pipe`], for an error while taking end `end`.
fn about_end(e: Error, name: &str, end: End) -> Error {
    let name = name.to_owned();
    match e {
        Error::NotFound { .. } => Error::NotFound { name },
        Error::AlreadyExists { .. } => Error::AlreadyExists { name },
        Error::LayoutMismatch { what, .. } => Error::LayoutMismatch { name, what },
        Error::PermissionDenied { reason, .. } => Error::PermissionDenied { name, reason },
        Error::InvalidName { reason, .. } => Error::InvalidName { name, reason },
        Error::Busy { .. } => Error::Busy {
            what: match end {
                End::First => format!("the first (creator's) end of pipe `{name}`"),
                End::Second => format!("the opener's end of pipe `{name}`"),
            },
        },
        e => e,
    }
}

/// Which ring [`Pipe::create_rings`] failed on.
#[derive(Debug, PartialEq, Eq)]
enum Failed {
    /// The first, `c2o`: nothing was created.
    C2o,
    /// The second, `o2c`: `c2o` was created and removed again.
    O2c,
}

impl Pipe {
    /// Creates a duplex pipe whose rings hold `capacity` bytes each, and returns the
    /// creator's end. [`Error::AlreadyExists`] if a pipe of this name exists.
    pub fn create(name: &str, capacity: usize) -> Result<Pipe> {
        Self::create_rings(name, capacity).map_err(|(_, e)| about_pipe(e, name))
    }

    /// [`Pipe::create`], saying which ring failed; errors name the rings.
    fn create_rings(name: &str, capacity: usize) -> std::result::Result<Pipe, (Failed, Error)> {
        let (c2o, o2c) = names(name).map_err(|e| (Failed::C2o, e))?;
        let tx = Sender::create(&c2o, capacity).map_err(|e| (Failed::C2o, e))?;
        failpoint!("pipe.between_rings");
        // On failure `tx` drops here and removes `c2o` again.
        let rx = Receiver::create(&o2c, capacity).map_err(|e| (Failed::O2c, e))?;
        Ok(Pipe {
            rx: Some(rx),
            tx: Some(tx),
            creator: true,
        })
    }

    /// Creates a one-way pipe: the creator's end only receives, the opener's only sends.
    pub fn create_one_way(name: &str, capacity: usize) -> Result<Pipe> {
        let (_, o2c) = names(name)?;
        Ok(Pipe {
            rx: Some(Receiver::create(&o2c, capacity).map_err(|e| about_pipe(e, name))?),
            tx: None,
            creator: true,
        })
    }

    /// Opens the other end of the pipe `name` (duplex or one-way, as it was created).
    /// [`Error::NotFound`] if there is no such pipe; [`Error::Busy`] if a live process
    /// holds the opener's end already.
    ///
    /// On a pipe held by a [`PipeHolder`] this is its second end; [`Pipe::open_first`]
    /// opens the other.
    pub fn open(name: &str) -> Result<Pipe> {
        Self::open_rings(name, End::Second).map_err(|e| about_end(e, name, End::Second))
    }

    /// Opens the first end of the pipe `name`: the one [`Pipe::create`] returns (`conn1` of
    /// Python's `conn1, conn2 = Pipe()`; on a one-way pipe, the end that receives), for a
    /// pipe held by a [`PipeHolder`], whose children open its two ends: this one and
    /// [`Pipe::open`]'s. [`Error::NotFound`] if there is no such pipe; [`Error::Busy`] if a
    /// live process holds this end already (the creator's end of a pipe made with
    /// `create` or `open_or_create`, say).
    ///
    /// ```
    /// use shmkit::Pipe;
    /// # let name = shmkit::__private::test_name("doc-pipe-first");
    /// let held = Pipe::hold(&name, 1 << 12)?; // the parent
    /// let mut a = Pipe::open_first(&name)?; // one child
    /// let mut b = Pipe::open(&name)?; // the other
    /// a.send(b"ping")?;
    /// assert_eq!(b.recv()?, b"ping");
    /// assert!(matches!(Pipe::open_first(&name), Err(shmkit::Error::Busy { .. })));
    /// # drop(held);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_first(name: &str) -> Result<Pipe> {
        Self::open_rings(name, End::First).map_err(|e| about_end(e, name, End::First))
    }

    /// [`Pipe::open`] (`End::Second`) or [`Pipe::open_first`]; errors name the rings.
    fn open_rings(name: &str, end: End) -> Result<Pipe> {
        let (c2o, o2c) = names(name)?;
        // `c2o` first, as `open_or_create` does: of competing openers of one end, the one
        // that claims its `c2o` side wins, and the others give up before they hold
        // anything. A missing `c2o` is a one-way pipe, or one not created yet; a duplex
        // pipe's `o2c` exists only after its `c2o`, so if `c2o` was missing, look again
        // once `o2c` is found (it may have been created in between).
        fn found<E>(r: Result<E>) -> Result<Option<E>> {
            match r {
                Ok(e) => Ok(Some(e)),
                Err(Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        }
        /// `c2o`'s side (perhaps missing), then `o2c`'s, then `c2o`'s once more if it
        /// was missing.
        fn both<A, B>(
            c2o: impl Fn() -> Result<A>,
            o2c: impl FnOnce() -> Result<B>,
        ) -> Result<(Option<A>, B)> {
            let first = found(c2o())?;
            let other = o2c()?;
            let first = match first {
                Some(a) => Some(a),
                None => found(c2o())?,
            };
            Ok((first, other))
        }
        let (rx, tx) = match end {
            End::Second => {
                let (rx, tx) = both(|| Receiver::open(&c2o), || Sender::open(&o2c))?;
                (rx, Some(tx))
            }
            End::First => {
                let (tx, rx) = both(|| Sender::open(&c2o), || Receiver::open(&o2c))?;
                (Some(rx), tx)
            }
        };
        Ok(Pipe {
            rx,
            tx,
            creator: false,
        })
    }

    /// Creates a duplex pipe whose rings hold `capacity` bytes each, and holds it without
    /// taking either end: the pipe is an object of its own, for a parent that hands its
    /// name to two children, which open its ends ([`Pipe::open_first`] and [`Pipe::open`])
    /// whenever they come; Python's `a, b = Pipe()` given to two processes.
    /// [`Error::AlreadyExists`] if a pipe of this name exists.
    ///
    /// ```
    /// use shmkit::Pipe;
    /// # let name = shmkit::__private::test_name("doc-pipe-hold");
    /// let held = Pipe::hold(&name, 1 << 16)?; // the parent takes no end
    /// let mut b = Pipe::open(&name)?; // a child
    /// let mut a = Pipe::open_first(&name)?; // another, later
    /// b.send(b"hello")?;
    /// assert_eq!(a.recv()?, b"hello");
    /// drop(held); // the name goes; the ends keep working
    /// assert!(matches!(Pipe::open(&name), Err(shmkit::Error::NotFound { .. })));
    /// a.send(b"still here")?;
    /// assert_eq!(b.recv()?, b"still here");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn hold(name: &str, capacity: usize) -> Result<PipeHolder> {
        let (c2o, o2c) = names(name)?;
        let held = || -> Result<PipeHolder> {
            let c2o = Holder::create(&c2o, capacity)?;
            // On failure `c2o` drops here and removes its ring again.
            let o2c = Holder::create(&o2c, capacity)?;
            Ok(PipeHolder {
                o2c,
                c2o: Some(c2o),
                name: name.to_owned(),
            })
        };
        held().map_err(|e| about_pipe(e, name))
    }

    /// [`Pipe::hold`] for a one-way pipe: the first end ([`Pipe::open_first`]) only
    /// receives, the second ([`Pipe::open`]) only sends, like Python's
    /// `r, w = Pipe(duplex=False)`.
    ///
    /// ```
    /// use shmkit::Pipe;
    /// # let name = shmkit::__private::test_name("doc-pipe-hold-1w");
    /// let held = Pipe::hold_one_way(&name, 1 << 12)?;
    /// let mut w = Pipe::open(&name)?;
    /// let mut r = Pipe::open_first(&name)?;
    /// w.send(b"one way")?;
    /// assert_eq!(r.recv()?, b"one way");
    /// assert!(r.send(b"back").is_err()); // the receiving end does not send
    /// assert!(held.is_one_way());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn hold_one_way(name: &str, capacity: usize) -> Result<PipeHolder> {
        let (_, o2c) = names(name)?;
        Ok(PipeHolder {
            o2c: Holder::create(&o2c, capacity).map_err(|e| about_pipe(e, name))?,
            c2o: None,
            name: name.to_owned(),
        })
    }

    /// Opens the duplex pipe `name`, or creates it with rings of `capacity` bytes. Any
    /// number of processes may race: exactly one creates the pipe and gets the creator's
    /// end ([`Pipe::is_creator`]), one other gets the opener's end, and any further caller
    /// gets [`Error::Busy`] while those two live. An existing pipe is opened whatever its
    /// capacity; an existing one-way pipe is [`Error::AlreadyExists`].
    ///
    /// The opener waits (at most a few seconds) for a racing creator to finish making the
    /// pipe: [`Error::Disconnected`] if that creator died or closed meanwhile (a dead
    /// creator's half-made pipe stays until removed, e.g. by [`clean`](crate::clean)), and
    /// [`Error::Timeout`] if it never finished.
    ///
    /// ```
    /// use shmkit::Pipe;
    /// # let name = shmkit::__private::test_name("doc-pipe-ooc");
    /// // Both processes run the same line; neither needs to come first.
    /// let mut a = Pipe::open_or_create(&name, 1 << 12)?;
    /// let mut b = Pipe::open_or_create(&name, 1 << 12)?; // in the other process
    /// assert!(a.is_creator() && !b.is_creator());
    /// b.send(b"hi")?;
    /// assert_eq!(a.recv()?, b"hi");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_or_create(name: &str, capacity: usize) -> Result<Pipe> {
        Self::open_or_create_rings(name, capacity).map_err(|e| about_pipe(e, name))
    }

    /// [`Pipe::open_or_create`]; errors name the rings.
    fn open_or_create_rings(name: &str, capacity: usize) -> Result<Pipe> {
        let (c2o, o2c) = names(name)?;
        let deadline = Instant::now() + CREATING;
        loop {
            // `c2o` is created exclusively: of racing callers, exactly one gets past this
            // (and creates `o2c` too, or fails and removes `c2o` again).
            match Self::create_rings(name, capacity) {
                Ok(pipe) => return Ok(pipe),
                Err((Failed::C2o, Error::AlreadyExists { .. })) => {}
                Err((_, e)) => return Err(e),
            }
            // Another process created `c2o`: take the opener's end, `c2o`'s receiver first
            // (claiming it decides among the openers: the losers get `Busy`), then `o2c`'s
            // sender once the creator has made it.
            let rx = match Receiver::open(&c2o) {
                Ok(rx) => rx,
                // The creator removed it again (its `o2c` failed, or it closed): retry,
                // bounded by the deadline (a name that keeps vanishing ends it).
                Err(Error::NotFound { .. }) if Instant::now() < deadline => continue,
                Err(Error::NotFound { .. }) => return Err(Error::Timeout),
                Err(e) => return Err(e),
            };
            loop {
                match Sender::open(&o2c) {
                    Ok(tx) => {
                        return Ok(Pipe {
                            rx: Some(rx),
                            tx: Some(tx),
                            creator: false,
                        })
                    }
                    Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                // The creator claimed `c2o`'s sender before it made `o2c`: gone now means
                // it died (or closed) before finishing; it will never come.
                if rx.is_disconnected() {
                    return Err(Error::Disconnected);
                }
                if Instant::now() >= deadline {
                    return Err(Error::Timeout);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Whether this end created the pipe (rather than opening it): the creator's end
    /// removes the pipe's name when it drops.
    pub fn is_creator(&self) -> bool {
        self.creator
    }

    /// The sending side ([`Error::InvalidArgument`] at the receiving end of a one-way pipe).
    pub(crate) fn sender(&mut self) -> Result<&mut Sender> {
        self.tx.as_mut().ok_or_else(|| {
            Error::InvalidArgument("this end of a one-way pipe only receives".into())
        })
    }

    /// The receiving side ([`Error::InvalidArgument`] at the sending end of a one-way pipe).
    pub(crate) fn receiver(&mut self) -> Result<&mut Receiver> {
        self.rx
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("this end of a one-way pipe only sends".into()))
    }

    /// Sends a copy of `bytes` to the other end, blocking while its ring is full.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.sender()?.send(bytes)
    }

    /// Sends, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.sender()?.send_timeout(bytes, timeout)
    }

    /// Sends if there is room now; never blocks ([`Error::WouldBlock`] if the ring is
    /// full).
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<()> {
        self.sender()?.try_send(bytes)
    }

    /// Every signal this end may sleep on (for `aio`, which removes its doorbell from
    /// them).
    pub(crate) fn attached_signals(&self) -> impl Iterator<Item = &crate::channel::Signal> {
        let rx = self.rx.iter().map(|r| r.wait_signal());
        rx.chain(self.tx.iter().map(|t| t.wait_signal()))
    }

    /// Receives the next message as an owned copy, blocking while there is none.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.receiver()?.recv()
    }

    /// Receives a copy if a message is ready; never blocks ([`Error::WouldBlock`] if none).
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        self.receiver()?.try_recv()
    }

    /// Receives a copy, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.receiver()?.recv_timeout(timeout)
    }

    /// Receives the next message in place (for a cooperating peer; see
    /// [`frames::Receiver::recv_ref`](crate::frames::Receiver::recv_ref)).
    pub fn recv_ref(&mut self) -> Result<Frame<'_>> {
        self.receiver()?.recv_ref()
    }

    /// Receives in place if a message is ready; never blocks.
    pub fn try_recv_ref(&mut self) -> Result<Frame<'_>> {
        self.receiver()?.try_recv_ref()
    }

    /// Receives in place, waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<Frame<'_>> {
        self.receiver()?.recv_ref_timeout(timeout)
    }

    /// Whether a message is ready, waiting at most `timeout` for one (`Duration::ZERO`
    /// asks without waiting). `Ok(false)` also when the other end is gone and nothing is
    /// left: the next `recv` says `Disconnected`.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool> {
        let rx = self.receiver()?;
        let r = if timeout.is_zero() {
            rx.peek(None)
        } else {
            rx.peek(Some(timeout))
        };
        match r {
            Ok(()) => Ok(true),
            Err(Error::WouldBlock | Error::Timeout | Error::Disconnected) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A pipe held without either end: see [`Pipe::hold`]. It keeps the pipe's two rings (and
/// so its name) for as long as it lives, and removes the name when it drops (ends already
/// open keep working).
///
/// ```
/// use shmkit::Pipe;
/// # let name = shmkit::__private::test_name("doc-pipe-holder");
/// let held = Pipe::hold(&name, 1 << 12)?;
/// assert_eq!((held.name(), held.capacity()), (name.as_str(), 1 << 12));
/// assert!(!held.is_one_way());
/// println!("{held:?}");
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct PipeHolder {
    // Declared (so dropped) before `c2o`: `o2c` is unlinked first, as the creator's end
    // does (see `Pipe`).
    o2c: Holder,
    c2o: Option<Holder>,
    name: String,
}

impl PipeHolder {
    /// The pipe's name.
    ///
    /// ```
    /// use shmkit::Pipe;
    /// # let name = shmkit::__private::test_name("doc-pipe-holder-name");
    /// assert_eq!(Pipe::hold(&name, 1 << 12)?.name(), name);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size of each ring in bytes.
    ///
    /// ```
    /// use shmkit::Pipe;
    /// # let name = shmkit::__private::test_name("doc-pipe-holder-cap");
    /// assert_eq!(Pipe::hold_one_way(&name, 1 << 12)?.capacity(), 1 << 12);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn capacity(&self) -> usize {
        self.o2c.capacity()
    }

    /// Whether the pipe is one-way ([`Pipe::hold_one_way`]).
    ///
    /// ```
    /// use shmkit::Pipe;
    /// # let name = shmkit::__private::test_name("doc-pipe-holder-1w");
    /// assert!(Pipe::hold_one_way(&name, 1 << 12)?.is_one_way());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_one_way(&self) -> bool {
        self.c2o.is_none()
    }
}

impl std::fmt::Debug for PipeHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeHolder")
            .field("name", &self.name)
            .field("capacity", &self.capacity())
            .field("one_way", &self.is_one_way())
            .finish()
    }
}
