//! Networking without glibc or an async runtime: wait-for targets, the one
//! TCP/HTTP probe client (the wait's and the health checks'), socket I/O
//! bounded by a deadline, and the DNS resolver.

pub(crate) mod dns;
pub(crate) mod netio;
pub(crate) mod netprobe;
pub(crate) mod waitfor;
