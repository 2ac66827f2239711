//! Channels as objects of their own: the `Holder` of each channel kind ([`spsc`](crate::spsc),
//! [`mpmc`](crate::mpmc), [`frames`](crate::frames)).
//!
//! A holder creates (or opens) a channel's segment and attaches no endpoint: it keeps the
//! channel, and its name, in place for as long as it lives, so that the processes it hands
//! the name to find the channel whenever they come, and open its ends with the endpoints'
//! own `open`. A holder that created the channel removes the name when it drops, as a
//! creating endpoint does; ends already open keep working. Since a holder is no endpoint,
//! the ends see each other exactly as when one of them created the channel: a peer that
//! never attached is awaited, not gone.
//!
//! [`holder!`] gives each kind's `Holder` its constructors (from the object model's
//! `constructors!`, over the ring's own `Ring::new`), its accessors and its `Debug`; what
//! lives here touches no shared memory beyond the counters `len` reads.

/// The API of a channel kind's `Holder` (a struct with one field, `ring: ring::Ring..`),
/// with its generic parameters in brackets:
/// `holder!([T: Pod] Holder<T>, "spsc", "::<u64>", open: 1, capacity: |r| .., len: |r| ..)`.
/// `$module` and `$tf` (the turbofish of the examples' element type) write the examples;
/// `open` is the capacity `open` passes (never used); `capacity` and `len` read the ring.
macro_rules! holder {
    (
        [$($gen:tt)*] $ty:ty, $module:literal, $tf:literal, open: $open:expr,
        capacity: |$c:ident| $cap:expr, len: |$l:ident| $len:expr
    ) => {
        impl<$($gen)*> $ty {
            crate::object::constructors!(
                @named "channel",
                capacity: usize,
                open: $open,
                concat!(
                    " No endpoint is attached: open them with the endpoints' own `open` (in \
                     any process, for as long as this holder lives).\n\n```\nuse shmkit::",
                    $module, ";\n# let name = shmkit::__private::test_name(\"doc-holder\");\n",
                    "let held = ", $module, "::Holder", $tf, "::open_or_create(&name, 64)?;\n",
                    "assert!(held.is_creator());\n",
                    "let again = ", $module, "::Holder", $tf, "::open(&name)?; // holds it too\n",
                    "assert!(!again.is_creator());\n",
                    "let mut rx = ", $module, "::Receiver", $tf, "::open(&name)?; // usually in a child\n",
                    "assert!(!rx.is_disconnected()); // a sender that never came is not gone\n",
                    "drop(held); // removes the name\n",
                    "assert!(matches!(", $module, "::Holder", $tf, "::open(&name), Err(shmkit::Error::NotFound { .. })));\n",
                    "# Ok::<(), shmkit::Error>(())\n```"
                )
            );

            /// Creates and/or opens the channel at `at`, attaching no endpoint (for
            /// objects built on the channel, which give `at` their own fingerprint).
            pub(crate) fn build(at: crate::object::At<'_>, capacity: usize) -> crate::Result<Self> {
                Ok(Self {
                    ring: ring::Ring::new(at, capacity)?,
                })
            }

            #[doc = concat!(
                "The channel's name.\n\n```\nuse shmkit::", $module, ";\n",
                "# let name = shmkit::__private::test_name(\"doc-holder-name\");\n",
                "let held = ", $module, "::Holder", $tf, "::create(&name, 64)?;\n",
                "assert_eq!(held.name(), name);\n# Ok::<(), shmkit::Error>(())\n```"
            )]
            pub fn name(&self) -> &str {
                // Holders are always named (there is no anonymous constructor).
                self.ring.seg.name().unwrap_or_default()
            }

            #[doc = concat!(
                "The capacity, as the channel's endpoints count it.\n\n```\nuse shmkit::",
                $module, ";\n# let name = shmkit::__private::test_name(\"doc-holder-cap\");\n",
                "let held = ", $module, "::Holder", $tf, "::create(&name, 64)?;\n",
                "assert_eq!(held.capacity(), 64);\n",
                "assert_eq!(", $module, "::Holder", $tf, "::open(&name)?.capacity(), 64);\n",
                "# Ok::<(), shmkit::Error>(())\n```"
            )]
            pub fn capacity(&self) -> usize {
                let $c = &self.ring;
                $cap
            }

            #[doc = concat!(
                "What is published and not yet received, as the endpoints' `len` counts it (a \
                 snapshot).\n\n```\nuse shmkit::", $module, ";\n",
                "# let name = shmkit::__private::test_name(\"doc-holder-len\");\n",
                "let held = ", $module, "::Holder", $tf, "::create(&name, 64)?;\n",
                "assert_eq!(held.len(), 0);\n",
                "assert!(held.is_empty());\n# Ok::<(), shmkit::Error>(())\n```"
            )]
            pub fn len(&self) -> usize {
                let $l = &self.ring;
                $len
            }

            #[doc = concat!(
                "Whether nothing is waiting (a snapshot).\n\n```\nuse shmkit::", $module, ";\n",
                "# let name = shmkit::__private::test_name(\"doc-holder-empty\");\n",
                "let held = ", $module, "::Holder", $tf, "::create(&name, 64)?;\n",
                "assert!(held.is_empty());\n# Ok::<(), shmkit::Error>(())\n```"
            )]
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            #[doc = concat!(
                "The segment the channel lives in (to keep its name after this holder drops: \
                 `set_keep(true)`).\n\n```\nuse shmkit::", $module, ";\n",
                "# let name = shmkit::__private::test_name(\"doc-holder-seg\");\n",
                "let held = ", $module, "::Holder", $tf, "::create(&name, 64)?;\n",
                "assert_eq!(held.segment().name(), Some(name.as_str()));\n",
                "# Ok::<(), shmkit::Error>(())\n```"
            )]
            pub fn segment(&self) -> &crate::Segment {
                &self.ring.seg
            }
        }

        impl<$($gen)*> std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(concat!($module, "::Holder"))
                    .field("segment", &self.ring.seg)
                    .field("capacity", &self.capacity())
                    .field("len", &self.len())
                    .finish()
            }
        }
    };
}
pub(crate) use holder;
