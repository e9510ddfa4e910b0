//! The entrypoint pipeline behind `initd run`, `initd exec` and
//! `initd config`: the plan, the app user, secrets, migrations and the lock
//! around them, the gunicorn command and the CPU count that sizes it.

pub(crate) mod cpus;
pub mod entrypoint;
pub mod gunicorn;
pub(crate) mod handover;
pub mod migrate_lock;
pub(crate) mod role;
pub(crate) mod secrets;
pub mod show;
pub(crate) mod user;
pub(crate) mod wsgi;
