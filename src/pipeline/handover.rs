//! What the entrypoint initd does to the file system as root before it
//! hands the container to the app user: renumber the user to
//! `HOST_UID`/`HOST_GID` together with its home's chown, then chown the
//! `INITD_CHOWN` paths. Plain functions, so the caller decides whether this
//! initd is the one that may do it (a second initd started by `docker exec`
//! must not).

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::pipeline::user::chown::{self, ChownError, ChownReport};
use crate::pipeline::user::{self, AppUser, UserError};

/// Renumbers `user` if asked (see [`renumber`]), then chowns `paths` to it.
/// Returns the user as it is afterwards.
pub fn prepare_files(
    user: &AppUser,
    host_uid: Option<u32>,
    host_gid: Option<u32>,
    paths: &[PathBuf],
) -> Result<AppUser, UserError> {
    let user = if host_uid.is_some() || host_gid.is_some() {
        renumber(Path::new("/"), user, host_uid, host_gid)?
    } else {
        user.clone()
    };
    for path in paths {
        chown_path(path, &user).map_err(|source| UserError::ChownPath { source })?;
    }
    Ok(user)
}

/// Gives `user` the host's ids in `root/etc/passwd` and `root/etc/group`,
/// and its home's files (those of the old ids) the new ones, as one unit:
/// the account files are replaced only once the home is done, so a start
/// that cannot finish leaves the next one the same work to do.
pub fn renumber(
    root: &Path,
    user: &AppUser,
    host_uid: Option<u32>,
    host_gid: Option<u32>,
) -> Result<AppUser, UserError> {
    let home = user.home.clone();
    let remap = user::apply_remap(root, &user.name, host_uid, host_gid, |remap| {
        chown_home(&home, remap).map_err(|source| UserError::Home {
            user: user.name.clone(),
            source,
        })
    })?;
    if !remap.changed() {
        debug!(
            "user {} already has uid {} gid {}",
            user.name, remap.new_uid, remap.new_gid
        );
        return Ok(user.clone());
    }
    info!(
        "user {} is now uid {} gid {} (was {}:{}), to match HOST_UID/HOST_GID",
        user.name, remap.new_uid, remap.new_gid, remap.old_uid, remap.old_gid
    );
    let db = user::Db::load(root)?;
    user::resolve(&user.name, &db, false)
}

fn chown_home(home: &Path, remap: &user::Remap) -> Result<(), ChownError> {
    // `/` (an empty home field) is the whole file system, not a home.
    if home == Path::new("/") {
        debug!("the app user's home is /: not chowned");
        return Ok(());
    }
    // The home's path comes from /etc/passwd, and an image may link it
    // (`/home/app -> /data/app`): links root owns are followed to find the
    // directory (the app cannot plant one where root alone writes), then
    // the walk from there follows none.
    let real = match crate::fsafe::resolve_trusted(home, &crate::fsafe::trusted_owners()) {
        Ok(found) => found.real,
        Err(e) if e.is_not_found() => home.to_path_buf(),
        Err(source) => {
            return Err(ChownError::Resolve {
                path: home.to_path_buf(),
                source,
            });
        }
    };
    let old = Some((remap.old_uid, remap.old_gid));
    match chown::chown_tree(&real, remap.new_uid, remap.new_gid, old) {
        Ok(report) => {
            report_skips("HOST_UID/HOST_GID", home, &report);
            debug!(changed = report.changed, home = %home.display(), "chowned the home directory");
            Ok(())
        }
        Err(ChownError::Missing { .. }) => {
            warn!(
                "HOST_UID/HOST_GID: the home directory {} does not exist; nothing to chown",
                home.display()
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn chown_path(path: &Path, user: &AppUser) -> Result<(), ChownError> {
    match chown::chown_tree(path, user.uid, user.gid, None) {
        Ok(report) => {
            report_skips("INITD_CHOWN", path, &report);
            debug!(changed = report.changed, path = %path.display(), "chowned");
            Ok(())
        }
        Err(ChownError::Missing { .. }) => {
            warn!("INITD_CHOWN: {} does not exist; nothing to chown", path.display());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// One warning per kind of entry the walk left alone.
fn report_skips(setting: &str, path: &Path, report: &ChownReport) {
    if report.read_only > 0 {
        warn!("{setting}: skipped read-only parts of {}", path.display());
    }
    if report.hard_links > 0 {
        warn!(
            "{setting}: left {} file{} under {} alone: more than one hard link, so the other name \
             may be outside; chown them in the Dockerfile if they are the app's",
            report.hard_links,
            if report.hard_links == 1 { "" } else { "s" },
            path.display()
        );
    }
}
