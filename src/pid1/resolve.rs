//! Finding the command before anything starts, so a typo fails at once with
//! the shell's conventional codes (127 not found, 126 not executable) and a
//! message that shows the PATH that was searched.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::pid1::exit;

#[derive(Debug, Error)]
pub enum ResolveError {
    #[error("command not found: {name} (PATH={path})")]
    NotFound { name: String, path: String },
    #[error("command is not executable: {} (add the execute bit: chmod +x)", .path.display())]
    NotExecutable { path: PathBuf },
    #[error("command is a directory, not a program: {}", .path.display())]
    Directory { path: PathBuf },
}

impl ResolveError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ResolveError::NotFound { .. } => exit::NOT_FOUND,
            _ => exit::NOT_EXECUTABLE,
        }
    }
}

/// Resolves `name` the way execvp would, but up front.
pub fn resolve(name: &OsStr, path_var: Option<&OsStr>, cwd: &Path) -> Result<PathBuf, ResolveError> {
    let path_var = path_var.map(OsString::from).unwrap_or_default();
    let found = which::WhichConfig::new_with_sys(NoNss)
        .binary_name(name.to_os_string())
        .custom_path_list(path_var.clone())
        .custom_cwd(cwd.to_path_buf())
        .first_result();
    if let Ok(found) = found {
        return Ok(found);
    }
    // which only reports executables; tell "there but not executable" apart
    // from "not there" the way a shell does.
    let candidates: Vec<PathBuf> = if name.as_bytes().contains(&b'/') {
        vec![cwd.join(name)]
    } else {
        std::env::split_paths(&path_var)
            .map(|dir| cwd.join(dir).join(name))
            .collect()
    };
    for candidate in candidates {
        if candidate.is_dir() && name.as_bytes().contains(&b'/') {
            return Err(ResolveError::Directory { path: candidate });
        }
        if candidate.is_file() {
            return Err(ResolveError::NotExecutable { path: candidate });
        }
    }
    Err(ResolveError::NotFound {
        name: name.to_string_lossy().into_owned(),
        path: path_var.to_string_lossy().into_owned(),
    })
}

/// `which`'s view of the system, but for one thing: `~` in PATH expands to
/// `$HOME` only. The stock one falls back to getpwuid_r when HOME is unset,
/// and glibc's NSS does not work in a static binary.
#[derive(Clone, Copy)]
struct NoNss;

impl which::sys::Sys for NoNss {
    type ReadDirEntry = std::fs::DirEntry;
    type Metadata = std::fs::Metadata;

    fn is_windows(&self) -> bool {
        false
    }
    fn current_dir(&self) -> std::io::Result<PathBuf> {
        std::env::current_dir()
    }
    fn home_dir(&self) -> Option<PathBuf> {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    }
    fn env_split_paths(&self, paths: &OsStr) -> Vec<PathBuf> {
        std::env::split_paths(paths).collect()
    }
    fn env_path(&self) -> Option<OsString> {
        std::env::var_os("PATH")
    }
    fn env_path_ext(&self) -> Option<OsString> {
        None
    }
    fn metadata(&self, path: &Path) -> std::io::Result<Self::Metadata> {
        std::fs::metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> std::io::Result<Self::Metadata> {
        std::fs::symlink_metadata(path)
    }
    fn read_dir(
        &self,
        path: &Path,
    ) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<Self::ReadDirEntry>>>> {
        Ok(Box::new(std::fs::read_dir(path)?))
    }
    fn is_valid_executable(&self, path: &Path) -> std::io::Result<bool> {
        nix::unistd::access(path, nix::unistd::AccessFlags::X_OK)
            .map(|()| true)
            .map_err(std::io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("initd-resolve-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn finds_executables_on_path_and_by_path() {
        let dir = scratch("found");
        let prog = dir.join("prog");
        fs::write(&prog, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.as_os_str();
        assert_eq!(
            resolve(OsStr::new("prog"), Some(path), Path::new("/")).unwrap(),
            prog
        );
        assert_eq!(resolve(prog.as_os_str(), None, Path::new("/")).unwrap(), prog);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn not_found_names_the_command_and_path() {
        let err = resolve(
            OsStr::new("no-such-prog"),
            Some(OsStr::new("/nope:/also")),
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "command not found: no-such-prog (PATH=/nope:/also)"
        );
        assert_eq!(err.exit_code(), 127);
    }

    #[test]
    fn present_but_not_executable_is_126() {
        let dir = scratch("noexec");
        let prog = dir.join("script");
        fs::write(&prog, "echo hi\n").unwrap();
        fs::set_permissions(&prog, fs::Permissions::from_mode(0o644)).unwrap();
        let err = resolve(OsStr::new("script"), Some(dir.as_os_str()), Path::new("/")).unwrap_err();
        assert!(matches!(err, ResolveError::NotExecutable { .. }), "{err}");
        assert_eq!(err.exit_code(), 126);
        let err = resolve(dir.as_os_str(), None, Path::new("/")).unwrap_err();
        assert!(matches!(err, ResolveError::Directory { .. }), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
