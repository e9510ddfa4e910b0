//! The app user: the account files, who `INITD_USER` names, how
//! `HOST_UID`/`HOST_GID` renumber it, the chown that goes with that, and
//! the privilege drop itself.

pub(crate) mod accounts;
pub(crate) mod chown;
pub(crate) mod drop;
pub(crate) mod renumber;
pub(crate) mod resolve;

#[cfg(test)]
mod props;

// The names the rest of the pipeline uses, whichever file they live in.
pub(crate) use accounts::{AppUser, Db, UserError};
pub(crate) use drop::drop_privileges;
pub(crate) use renumber::{Remap, apply_remap, check_host_ids, host_ids};
pub(crate) use resolve::{DropDecision, current_ids, is_root, plan_drop, resolve, user_env};
