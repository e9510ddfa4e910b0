//! `initd dev`: the development loop, asset watchers and their prefixed
//! output, and source watching (inotify, polling where inotify is blind,
//! the filter of which files count).

pub(crate) mod devloop;
pub mod filter;
pub mod poller;
pub(crate) mod prefix;
pub(crate) mod reload;
pub mod watchplan;
