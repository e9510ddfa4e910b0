//! Reading one secret file as root without trusting it: only a regular file
//! (links followed, but not out of the secrets directory), never blocking
//! on a FIFO or a device, capped in size, and valid UTF-8 with no NUL.

use std::fmt;
use std::fs::{FileType, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

use crate::fsafe::PathError;

use super::{MAX_SECRET_BYTES, wipe};

/// What kind of non-regular file a secret path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl FileKind {
    fn of(ft: FileType) -> FileKind {
        if ft.is_dir() {
            FileKind::Directory
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else if ft.is_char_device() {
            FileKind::CharDevice
        } else if ft.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Other
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Other => "a special file",
        })
    }
}

/// Why a secret file could not be used. Never carries any of its content.
#[derive(Debug)]
pub enum Problem {
    Io(io::Error),
    NotRegular(FileKind),
    /// A symbolic link out of the secret's directory: `target` is where it
    /// leads, `dir` the directory it had to stay in.
    Escapes {
        target: PathBuf,
        dir: PathBuf,
    },
    /// A directory or link on the way that someone other than root owns
    /// (or anyone may write to): it could lead anywhere.
    Untrusted(Box<PathError>),
    TooLarge,
    /// Fits the read cap, but `NAME=value` is longer than the kernel lets
    /// one environment string be (MAX_ARG_STRLEN): exec would fail E2BIG.
    TooLargeForEnv,
    NulByte,
    NotUtf8,
}

impl Problem {
    pub(super) fn explain(&self, path: &Path, var: &str) -> String {
        let path = path.display();
        match self {
            Problem::Io(e) => format!(
                "cannot read {path} ({}); mount the secret there or unset {var}",
                crate::fsafe::io_reason(e)
            ),
            Problem::NotRegular(kind) => {
                format!("{path} is {kind}, not a regular file; point {var} at the secret file itself")
            }
            Problem::Escapes { target, dir } => format!(
                "{path} is a symbolic link to {}, outside {}; initd follows links only within \
                 the secret's directory (as Kubernetes makes them); mount the secret file itself \
                 there",
                target.display(),
                dir.display()
            ),
            Problem::Untrusted(why) => format!(
                "refusing {path}: {why}; initd reads secrets as root only through directories and \
                 links that root owns (as Docker and Kubernetes mount them); mount the secret there, \
                 or, if {var} is an app setting rather than a Docker secret, leave it out of INITD_SECRETS \
                 and point it outside the secrets directories"
            ),
            Problem::TooLarge => format!(
                "{path} is larger than 1 MiB, too big for an environment variable; \
                 let the app read the file itself (from outside the secrets directories, \
                 with {var} not in INITD_SECRETS)"
            ),
            Problem::TooLargeForEnv => format!(
                "{path} is larger than the 128 KiB one environment variable can hold; \
                 let the app read the file itself (from outside the secrets directories, \
                 with {var} not in INITD_SECRETS)"
            ),
            Problem::NulByte => format!(
                "{path} contains a NUL byte, which an environment variable cannot hold; \
                 fix the secret file"
            ),
            Problem::NotUtf8 => format!(
                "{path} is not valid UTF-8 text; base64-encode binary secrets \
                 or let the app read the file itself"
            ),
        }
    }
}

/// Source of secret bytes, so tests can run without special files.
pub trait SecretReader {
    /// Returns at most `MAX_SECRET_BYTES + 1` bytes: enough to tell that a
    /// file is too large without ever reading a huge one.
    fn read(&self, path: &Path) -> Result<Vec<u8>, Problem>;
}

/// Reads real files, refusing anything but regular files.
pub struct FsReader;

/// How many times a secret whose file changes between the check and the open
/// is looked at again before initd gives up.
const ATTEMPTS: usize = 3;

impl SecretReader for FsReader {
    fn read(&self, path: &Path) -> Result<Vec<u8>, Problem> {
        let trusted = crate::fsafe::trusted_owners();
        for _ in 0..ATTEMPTS {
            let found = check_target(path, &trusted)?;
            let checked = nix::sys::stat::fstatat(
                &found.dir,
                found.name.as_os_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errno_problem)?;
            let fd = nix::fcntl::openat(
                &found.dir,
                found.name.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(errno_problem)?;
            let file = std::fs::File::from(fd);
            // Trust only the descriptor, and only if it is the file that
            // was checked (Kubernetes swaps `..data` when a secret changes).
            let meta = file.metadata().map_err(Problem::Io)?;
            require_regular(&meta)?;
            if (meta.dev(), meta.ino()) == (checked.st_dev, checked.st_ino) {
                return read_capped(file, meta.len());
            }
        }
        Err(Problem::Io(io::Error::other(
            "it kept changing while it was read",
        )))
    }
}

fn errno_problem(e: nix::errno::Errno) -> Problem {
    Problem::Io(io::Error::from_raw_os_error(e as i32))
}

fn path_problem(e: PathError) -> Problem {
    match e {
        PathError::Io { errno, .. } => errno_problem(errno),
        PathError::NotDir { .. } => errno_problem(nix::errno::Errno::ENOTDIR),
        other => Problem::Untrusted(Box::new(other)),
    }
}

/// Resolves `path` through links and directories only root (or initd's own
/// user) owns, refuses a target outside the directory holding `path` or one
/// that is not a regular file, and returns where the target is. Nothing is
/// opened: a FIFO would block and a device would see an open.
fn check_target(path: &Path, trusted: &[u32]) -> Result<crate::fsafe::Found, Problem> {
    let found = crate::fsafe::resolve_trusted(path, trusted).map_err(path_problem)?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dir = if dir == Path::new("/") || dir.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        crate::fsafe::resolve_trusted(dir, trusted)
            .map_err(path_problem)?
            .real
    };
    if !found.real.starts_with(&dir) {
        return Err(Problem::Escapes {
            target: found.real,
            dir,
        });
    }
    let st = nix::sys::stat::fstatat(
        &found.dir,
        found.name.as_os_str(),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(errno_problem)?;
    if crate::fsafe::kind(&st) != nix::sys::stat::SFlag::S_IFREG {
        let meta_kind = match crate::fsafe::kind(&st) {
            k if k == nix::sys::stat::SFlag::S_IFDIR => FileKind::Directory,
            k if k == nix::sys::stat::SFlag::S_IFIFO => FileKind::Fifo,
            k if k == nix::sys::stat::SFlag::S_IFSOCK => FileKind::Socket,
            k if k == nix::sys::stat::SFlag::S_IFCHR => FileKind::CharDevice,
            k if k == nix::sys::stat::SFlag::S_IFBLK => FileKind::BlockDevice,
            _ => FileKind::Other,
        };
        return Err(Problem::NotRegular(meta_kind));
    }
    Ok(found)
}

fn require_regular(meta: &Metadata) -> Result<(), Problem> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(Problem::NotRegular(FileKind::of(meta.file_type())))
    }
}

fn read_capped(reader: impl Read, size_hint: u64) -> Result<Vec<u8>, Problem> {
    let cap = MAX_SECRET_BYTES + 1;
    // Exact capacity means no reallocation, so no stray copies of the secret.
    let hint = usize::try_from(size_hint).unwrap_or(cap).min(cap);
    let mut buf = Vec::with_capacity(hint);
    match reader.take(cap as u64).read_to_end(&mut buf) {
        Ok(_) => Ok(buf),
        Err(e) => {
            wipe(buf);
            Err(Problem::Io(e))
        }
    }
}

/// Turns raw file bytes into the variable's value: size, NUL and UTF-8
/// checks, then exactly one trailing newline (`\n` or `\r\n`) removed.
pub fn decode(mut bytes: Vec<u8>) -> Result<String, Problem> {
    let problem = if bytes.len() > MAX_SECRET_BYTES {
        Some(Problem::TooLarge)
    } else if bytes.contains(&0) {
        Some(Problem::NulByte)
    } else {
        None
    };
    if let Some(problem) = problem {
        wipe(bytes);
        return Err(problem);
    }
    let strip = if bytes.ends_with(b"\r\n") {
        2
    } else {
        usize::from(bytes.ends_with(b"\n"))
    };
    bytes.truncate(bytes.len() - strip);
    String::from_utf8(bytes).map_err(|e| {
        wipe(e.into_bytes());
        Problem::NotUtf8
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TempDir;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn exactly_one_trailing_newline_is_removed() {
        for (raw, want) in [
            ("v", "v"),
            ("v\n", "v"),
            ("v\r\n", "v"),
            ("v\n\n", "v\n"),
            ("v\r\n\r\n", "v\r\n"),
            ("v\r", "v\r"),
            ("\n", ""),
            ("", ""),
            ("a\nb\n", "a\nb"),
        ] {
            assert_eq!(decode(raw.as_bytes().to_vec()).unwrap(), want, "{raw:?}");
        }
    }

    fn read_err(path: &Path) -> Problem {
        FsReader.read(path).unwrap_err()
    }

    #[test]
    fn directory_is_refused() {
        let dir = TempDir::new("secrets");
        assert!(matches!(
            read_err(&dir.0),
            Problem::NotRegular(FileKind::Directory)
        ));
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = TempDir::new("secrets");
        let path = dir.0.join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // No writer exists: a blocking open would hang this test forever.
        assert!(matches!(read_err(&path), Problem::NotRegular(FileKind::Fifo)));
    }

    #[test]
    fn device_is_refused() {
        assert!(matches!(
            read_err(Path::new("/dev/null")),
            Problem::NotRegular(FileKind::CharDevice)
        ));
    }

    #[test]
    fn socket_is_refused() {
        let dir = TempDir::new("secrets");
        let path = dir.0.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(matches!(read_err(&path), Problem::NotRegular(FileKind::Socket)));
    }

    #[test]
    fn symlink_chain_to_regular_file_is_accepted() {
        // The Kubernetes layout: key -> ..data/key, ..data -> ..2024_01_01/.
        let dir = TempDir::new("secrets");
        fs::create_dir(dir.0.join("..2024")).unwrap();
        dir.file("..2024/db", b"k8s-secret\n");
        symlink("..2024", dir.0.join("..data")).unwrap();
        symlink("..data/db", dir.0.join("db")).unwrap();
        assert_eq!(FsReader.read(&dir.0.join("db")).unwrap(), b"k8s-secret\n");
    }

    #[test]
    fn symlinks_within_the_secret_directory_are_followed() {
        let dir = TempDir::new("secrets");
        fs::create_dir_all(dir.0.join("vol/sub")).unwrap();
        dir.file("vol/sub/key", b"inside\n");
        // Absolute, and through a link to a subdirectory.
        symlink(dir.0.join("vol/sub/key"), dir.0.join("vol/abs")).unwrap();
        symlink("sub", dir.0.join("vol/link-to-sub")).unwrap();
        assert_eq!(FsReader.read(&dir.0.join("vol/abs")).unwrap(), b"inside\n");
        assert_eq!(
            FsReader.read(&dir.0.join("vol/link-to-sub/key")).unwrap(),
            b"inside\n"
        );
        // The secret's directory may itself be reached through a link.
        symlink("vol", dir.0.join("vol-link")).unwrap();
        assert_eq!(FsReader.read(&dir.0.join("vol-link/abs")).unwrap(), b"inside\n");
    }

    #[test]
    fn symlink_to_directory_is_refused() {
        let dir = TempDir::new("secrets");
        fs::create_dir(dir.0.join("d")).unwrap();
        symlink("d", dir.0.join("link")).unwrap();
        assert!(matches!(
            read_err(&dir.0.join("link")),
            Problem::NotRegular(FileKind::Directory)
        ));
    }

    #[test]
    fn dangling_symlink_is_refused() {
        let dir = TempDir::new("secrets");
        symlink("missing", dir.0.join("link")).unwrap();
        assert!(matches!(read_err(&dir.0.join("link")), Problem::Io(_)));
    }

    #[test]
    fn nul_byte_is_refused() {
        assert!(matches!(decode(b"ab\0cd".to_vec()), Err(Problem::NulByte)));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert!(matches!(decode(vec![b'a', 0xff, b'b']), Err(Problem::NotUtf8)));
    }

    #[test]
    fn size_limit_is_exact() {
        assert!(decode(vec![b'a'; MAX_SECRET_BYTES]).is_ok());
        assert!(matches!(
            decode(vec![b'a'; MAX_SECRET_BYTES + 1]),
            Err(Problem::TooLarge)
        ));
    }
}
