//! Health: what a check tests and how the answer is reached, command probes,
//! the control socket and its protocol, and the `initd check` client.

pub mod check;
pub(crate) mod cmdprobe;
pub(crate) mod control;
pub(crate) mod control_loop;
pub(crate) mod probe;
pub(crate) mod protocol;
