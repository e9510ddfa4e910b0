//! Networking without glibc or an async runtime: wait-for targets and their
//! probes, socket I/O bounded by a deadline, and the DNS resolver.

pub(crate) mod dns;
pub(crate) mod netio;
pub(crate) mod waitfor;
