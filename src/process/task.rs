//! Functions a worker process can run: the [`Task`] trait, the [`task!`](crate::task)
//! macro that defines one and registers it at compile time, and the registry a worker
//! looks tasks up in.
//!
//! A task is known across processes by its fingerprint: FNV-1a over its registered name,
//! the type names of its argument and result and the codec's id. A parent sends the
//! fingerprint with every call; a worker whose binary has no task with that fingerprint
//! (another build, another signature) refuses the call with [`Error::Worker`], so
//! mismatched programs get an error, never garbage.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{Codec, Postcard};
use crate::error::Error;

/// A function that runs in a worker process: defined and registered with
/// [`task!`](crate::task), passed by value (a unit struct) to
/// [`Process::spawn`](super::Process::spawn) and the [`Pool`](super::Pool) methods.
///
/// Implement it only through the macro: the worker finds tasks in the registry the macro
/// fills.
pub trait Task: Copy + Send + Sync + 'static {
    /// The argument: the function's parameter, or a tuple of its parameters.
    type Arg: Serialize + DeserializeOwned + Send + 'static;
    /// What the function returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The registered name: the function's path (`module::name`).
    const NAME: &'static str;

    /// Runs the function in this process.
    fn run(arg: Self::Arg) -> Self::Output;

    /// The fingerprint that names this task across processes (computed once: the macro
    /// caches it).
    fn fingerprint() -> u64 {
        fingerprint(
            Self::NAME,
            std::any::type_name::<Self::Arg>(),
            std::any::type_name::<Self::Output>(),
        )
    }
}

/// The fingerprint of `T`, computed (`compute`) on the first call only; the cache is
/// `cell`, a static of the task's own.
#[doc(hidden)]
pub fn cached_fingerprint(cell: &std::sync::OnceLock<u64>, compute: fn() -> u64) -> u64 {
    *cell.get_or_init(compute)
}

/// The fingerprint of a task: its name and its argument and result types, with the codec.
#[doc(hidden)]
pub fn fingerprint(name: &str, arg: &str, out: &str) -> u64 {
    crate::codec::fingerprint(crate::codec::POSTCARD_ID, &[name, arg, out])
}

/// How one call went in the worker, as it travels back: the encoded result, or why not.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The encoded result.
    Ok,
    /// The function panicked (the message).
    Panicked(String),
    /// The argument could not be decoded or the result encoded (the message).
    Codec(String),
}

/// A task's function, type-erased: the encoded argument in, the encoded result appended.
pub(crate) type Erased = fn(&[u8], &mut Vec<u8>) -> Outcome;

/// A registered task, as the worker sees it: type-erased.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    fingerprint: fn() -> u64,
    run: Erased,
}

impl Registration {
    /// The registration of task `T` (what [`task!`](crate::task) submits).
    pub const fn of<T: Task>() -> Registration {
        Registration {
            fingerprint: T::fingerprint,
            run: run_erased::<T>,
        }
    }
}

inventory::collect!(Registration);

/// Decodes the argument, runs `T` catching a panic, and appends the encoded result to
/// `out` (which the caller truncates on anything but `Outcome::Ok`).
fn run_erased<T: Task>(arg: &[u8], out: &mut Vec<u8>) -> Outcome {
    let arg = match <Postcard as Codec<T::Arg>>::decode(arg) {
        Ok(a) => a,
        Err(e) => return Outcome::Codec(format!("the argument: {e}")),
    };
    // AssertUnwindSafe: after a panic nothing of the call is used again (the argument was
    // moved in; the message is all that leaves).
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| T::run(arg))) {
        Ok(v) => match Postcard::encode(&v, out) {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Codec(format!("the result: {e}")),
        },
        Err(payload) => Outcome::Panicked(panic_message(payload.as_ref())),
    }
}

/// The message of a panic payload (`&str` or `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// What this binary can run, by fingerprint (built once, on the first lookup).
fn registry() -> &'static HashMap<u64, &'static Registration> {
    static REGISTRY: OnceLock<HashMap<u64, &'static Registration>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        inventory::iter::<Registration>
            .into_iter()
            .map(|r| ((r.fingerprint)(), r))
            .collect()
    })
}

/// Why a worker refuses a call whose fingerprint it does not know.
pub(crate) const NOT_REGISTERED: &str = "no task of this name and signature (argument and \
    result types) is registered in the worker's binary: define it with `shmkit::task!`, and \
    run parent and worker from the same build";

/// The function to run for fingerprint `fp`, if this binary registers one.
pub(crate) fn lookup(fp: u64) -> Option<Erased> {
    registry().get(&fp).map(|r| r.run)
}

/// The error for a worker `pid` that cannot run `task`.
pub(crate) fn worker_error(pid: u32, task: &str, reason: impl Into<String>) -> Error {
    Error::Worker {
        pid,
        task: task.to_owned(),
        reason: reason.into(),
    }
}

/// Defines a function that worker processes can run, and registers it.
///
/// The function keeps its signature: one parameter becomes the task's argument type,
/// several become a tuple, none `()`; parameters and result are any serde types. The
/// macro defines a unit struct of the function's name that implements [`Task`]; pass it to
/// [`Process::spawn`](crate::process::Process::spawn) or a
/// [`Pool`](crate::process::Pool), or call it here with `name.call(args...)`.
///
/// ```
/// shmkit::task! {
///     /// Squares its argument.
///     pub fn square(x: u64) -> u64 {
///         x * x
///     }
/// }
/// shmkit::task! {
///     fn greet(name: String, times: usize) -> String {
///         format!("hello {}", name).repeat(times)
///     }
/// }
/// assert_eq!(square.call(7), 49); // in this process
/// use shmkit::process::Task;
/// assert!(<greet as Task>::NAME.ends_with("::greet"));
/// ```
///
/// Generic, `async` and `unsafe` functions cannot be tasks, and parameters are plain
/// names (no patterns). The unit struct lives in the value namespace, like a function:
/// a task named `tag` cannot also be a parameter's name in the same module (the
/// parameter would be read as a pattern matching the struct).
#[macro_export]
macro_rules! task {
    // No parameter.
    ($(#[$m:meta])* $vis:vis fn $name:ident () $(-> $ret:ty)? $body:block) => {
        $crate::__task_impl!($(#[$m])* $vis $name, (), [], $body, $($ret)?);
    };
    // One parameter: the argument is its type.
    ($(#[$m:meta])* $vis:vis fn $name:ident ($a:ident : $t:ty $(,)?) $(-> $ret:ty)? $body:block) => {
        $crate::__task_impl!($(#[$m])* $vis $name, $t, [$a: $t], $body, $($ret)?);
    };
    // Several: a tuple.
    ($(#[$m:meta])* $vis:vis fn $name:ident ($($a:ident : $t:ty),+ $(,)?) $(-> $ret:ty)? $body:block) => {
        $crate::__task_impl!($(#[$m])* $vis $name, ($($t,)+), [$($a: $t),+], $body, $($ret)?);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __task_impl {
    ($(#[$m:meta])* $vis:vis $name:ident, $arg:ty, [$($a:ident: $t:ty),*], $body:block, $($ret:ty)?) => {
        $(#[$m])*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;

        impl $name {
            /// Calls the function in this process.
            #[allow(dead_code, clippy::unused_unit)]
            $vis fn call(self, $($a: $t),*) -> $crate::__task_ret!($($ret)?) $body
        }

        impl $crate::process::Task for $name {
            type Arg = $arg;
            type Output = $crate::__task_ret!($($ret)?);
            const NAME: &'static str = concat!(module_path!(), "::", stringify!($name));

            #[allow(clippy::unused_unit)]
            fn run(arg: Self::Arg) -> Self::Output {
                $crate::__task_call!($name, arg, [$($a),*])
            }

            fn fingerprint() -> u64 {
                static FP: ::std::sync::OnceLock<u64> = ::std::sync::OnceLock::new();
                $crate::process::__cached_fingerprint(&FP, || {
                    $crate::process::__fingerprint(
                        <Self as $crate::process::Task>::NAME,
                        ::std::any::type_name::<Self::Arg>(),
                        ::std::any::type_name::<Self::Output>(),
                    )
                })
            }
        }

        $crate::__private::inventory::submit! {
            $crate::process::Registration::of::<$name>()
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __task_ret {
    () => {
        ()
    };
    ($t:ty) => {
        $t
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __task_call {
    ($name:ident, $arg:ident, []) => {{
        let () = $arg;
        $name.call()
    }};
    ($name:ident, $arg:ident, [$a:ident]) => {
        $name.call($arg)
    };
    ($name:ident, $arg:ident, [$($a:ident),+]) => {{
        let ($($a,)+) = $arg;
        $name.call($($a),+)
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::task! {
        fn twice(x: u32) -> u32 { 2 * x }
    }

    #[test]
    fn a_fingerprint_names_the_task_its_types_and_the_codec() {
        let fp = <twice as Task>::fingerprint();
        assert_eq!(fp, fingerprint(<twice as Task>::NAME, "u32", "u32"));
        // Another signature or another name: another fingerprint, which this binary
        // does not know (a worker refuses such a call with `Error::Worker`).
        assert_ne!(fp, fingerprint(<twice as Task>::NAME, "u64", "u32"));
        assert_ne!(fp, fingerprint("other::twice", "u32", "u32"));
        assert!(lookup(fp).is_some());
        assert!(lookup(fingerprint(<twice as Task>::NAME, "u64", "u32")).is_none());
        assert_eq!(twice.call(21), 42);
    }
}
