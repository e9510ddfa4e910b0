//! Docker secrets: `NAME_FILE=/run/secrets/x` (or `FILE__NAME=/run/secrets/x`)
//! becomes `NAME=<content of the file>` in the app's environment.
//!
//! Which variables count as secrets:
//! - the name ends in `_FILE` (the docker-library convention) or starts with
//!   `FILE__` (the linuxserver.io convention), and what remains is not empty;
//! - the value is an absolute path. Docker, Compose and Kubernetes always
//!   mount secrets at absolute paths, while relative values (`ENV_FILE=.env`,
//!   `HISTFILE`-style `~/...`) are settings that some program resolves itself;
//! - the name is not a well-known setting that merely *points at* a file
//!   ([`NOT_SECRETS`]), not initd's own (`INITD_*`), and not listed by the
//!   caller in `keep`.
//!
//! initd reads secrets as root and hands them to the unprivileged app, so
//! nothing the app controls may steer where a secret path leads. A path is
//! resolved one component at a time (see [`crate::fsafe::resolve_trusted`]):
//! every directory on the way and every symbolic link must be owned by root
//! (or by initd's own user, when it is not root) and no directory may be
//! writable by everyone without the sticky bit. Docker's `/run/secrets` and
//! Kubernetes' secret volumes (`/etc/secret/db -> ..data/db`,
//! `..data -> ..2024_01_01/`, all root's) pass; a link or directory the app
//! planted does not, so a root-only file (`/etc/shadow`, another process's
//! environment) cannot become a variable the app can read. Links are
//! followed only within the secret's directory (the one that holds the path
//! named), as Kubernetes makes them; one that leads out is refused too. The final target must be a regular file:
//! anything else (directory, FIFO, device, socket) is refused before it is
//! opened (a FIFO would block, a device would see an open), and once more
//! with `fstat` after the open; the opened file must also be the one that
//! was checked, or the check is done again (Kubernetes swaps `..data` when a
//! secret is updated).

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{FileType, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use thiserror::Error;

use crate::fsafe::PathError;

/// Secrets are credentials, not payloads; a bigger file is almost certainly
/// the wrong path, and the kernel caps one env string at 128 KiB anyway.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// Linux's MAX_ARG_STRLEN: the longest single `NAME=value` string (with its
/// NUL) that execve accepts.
pub const MAX_ENV_STRING: usize = 32 * 4096;

/// Shorter values are not redacted: masking every "abc" or "1" in the logs
/// would garble them without protecting anything worth protecting.
pub const MIN_REDACT_LEN: usize = 4;

const SUFFIX: &str = "_FILE";
const PREFIX: &str = "FILE__";
const OWN_PREFIX: &str = "INITD_";

/// Variables that end in `_FILE` and hold an absolute path but are real
/// settings of a program that opens the file itself. Replacing them with the
/// file's content would break that program (and remove the variable it reads).
pub const NOT_SECRETS: &[&str] = &[
    // TLS trust stores read by OpenSSL / Python's ssl module.
    "SSL_CERT_FILE",
    "NIX_SSL_CERT_FILE",
    // Tool configuration files.
    "PIP_CONFIG_FILE",
    "UV_CONFIG_FILE",
    "NEW_RELIC_CONFIG_FILE",
    "OTEL_CONFIG_FILE",
    "OTEL_EXPERIMENTAL_CONFIG_FILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    // Cloud workload-identity tokens: the platform rotates the file and the
    // SDK re-reads it, so inlining would freeze a token that soon expires.
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AZURE_FEDERATED_TOKEN_FILE",
    // Key files that tools read themselves.
    "ANSIBLE_VAULT_PASSWORD_FILE",
    "SOPS_AGE_KEY_FILE",
    // dotenv files loaded by the runner (Click's automatic env vars).
    "UV_ENV_FILE",
    "FLASK_ENV_FILE",
    "UVICORN_ENV_FILE",
    // Files the app writes (coverage data, logs, pid files) or parses itself;
    // their would-be targets (`ENV`, `LOG`, `PID`...) are never credentials.
    "COVERAGE_FILE",
    "ENV_FILE",
    "CONFIG_FILE",
    "LOG_FILE",
    "PID_FILE",
];

/// A secret's content. It has no `Display` and its `Debug` prints `***`, so
/// it cannot end up in a log line by accident; memory is wiped on drop.
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        wipe(std::mem::take(&mut self.0).into_bytes());
    }
}

/// Best effort only: copies made by the allocator or by `execve` survive.
fn wipe(mut bytes: Vec<u8>) {
    bytes.fill(0);
    // Keeps the optimizer from dropping the fill as a dead store.
    std::hint::black_box(&bytes);
}

/// One resolved secret. `var` is the `*_FILE` variable it came from.
#[derive(Debug)]
pub struct Secret {
    pub name: String,
    pub var: String,
    pub path: PathBuf,
    pub value: SecretValue,
}

#[cfg(test)]
impl Secret {
    /// `NAME` read from `NAME_FILE`, for other modules' tests.
    pub(crate) fn for_test(name: &str, value: &str) -> Secret {
        Secret {
            name: name.to_string(),
            var: format!("{name}{SUFFIX}"),
            path: PathBuf::from("/run/secrets").join(name.to_ascii_lowercase()),
            value: SecretValue(value.to_string()),
        }
    }
}

/// The child's full environment after resolution, in the input order: each
/// `*_FILE` entry is replaced in place by `NAME=<content>`.
pub struct Resolved {
    pub env: Vec<(OsString, OsString)>,
    pub secrets: Vec<Secret>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let is_secret = |k: &OsStr| self.secrets.iter().any(|s| OsStr::new(&s.name) == k);
        let env = self.env.iter().map(|(k, v)| {
            let shown: &OsStr = if is_secret(k) { "***".as_ref() } else { v };
            (k, shown)
        });
        f.debug_struct("Resolved")
            .field("env", &DebugMap(env))
            .field("secrets", &self.secrets)
            .finish()
    }
}

struct DebugMap<I>(I);

impl<'a, I> fmt::Debug for DebugMap<I>
where
    I: Iterator<Item = (&'a OsString, &'a OsStr)> + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.clone()).finish()
    }
}

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
    fn explain(&self, path: &Path, var: &str) -> String {
        let path = path.display();
        match self {
            Problem::Io(e) => format!(
                "cannot read {path} ({}); mount the secret, unset {var}, or if it is not a \
                 Docker secret add {var} to INITD_NOT_SECRETS",
                describe_io(e)
            ),
            Problem::NotRegular(kind) => format!(
                "{path} is {kind}, not a regular file; point {var} at the secret file itself, \
                 or if {var} is an app setting rather than a Docker secret, \
                 add {var} to INITD_NOT_SECRETS"
            ),
            Problem::Escapes { target, dir } => format!(
                "{path} is a symbolic link to {}, outside {}; initd follows links only within \
                 the secret's directory (as Kubernetes makes them); mount the secret file itself \
                 there, or if {var} is an app setting rather than a Docker secret, add {var} to \
                 INITD_NOT_SECRETS",
                target.display(),
                dir.display()
            ),
            Problem::Untrusted(why) => format!(
                "refusing {path}: {why}; initd reads secrets as root only through directories and \
                 links that root owns (as Docker and Kubernetes mount them); mount the secret there, \
                 or if {var} is an app setting rather than a Docker secret, add {var} to INITD_NOT_SECRETS"
            ),
            Problem::TooLarge => format!(
                "{path} is larger than 1 MiB, too big for an environment variable; \
                 let the app read the file itself and add {var} to INITD_NOT_SECRETS"
            ),
            Problem::TooLargeForEnv => format!(
                "{path} is larger than the 128 KiB one environment variable can hold; \
                 let the app read the file itself and add {var} to INITD_NOT_SECRETS"
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

/// `No such file or directory` reads better than Rust's `... (os error 2)`.
fn describe_io(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

#[derive(Debug, Error)]
pub enum SecretError {
    #[error("secret {name}: both {name} and {var} are set; unset one of them")]
    Conflict { name: String, var: String },
    #[error("secret {name}: both {first} and {second} are set; keep only one")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
    #[error("secret {name}: {}", .problem.explain(.path, .var))]
    Unusable {
        name: String,
        var: String,
        path: PathBuf,
        problem: Problem,
    },
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

/// The variable a `*_FILE` name feeds, by naming convention alone.
fn target_name(var: &str) -> Option<&str> {
    let target = match var.strip_prefix(PREFIX) {
        Some(rest) => rest,
        None => var.strip_suffix(SUFFIX)?,
    };
    (!target.is_empty()).then_some(target)
}

fn is_excluded(var: &str, target: &str, keep: &[String]) -> bool {
    NOT_SECRETS.contains(&var)
        || keep.iter().any(|k| k == var)
        // initd reads its own settings from its own environment, never from
        // files; resolving them here would be a confusing second path.
        || var.starts_with(OWN_PREFIX)
        || target.starts_with(OWN_PREFIX)
}

/// `(var, target)` if this entry is a secret reference to resolve.
fn candidate<'a>(var: &'a OsStr, value: &OsStr, keep: &[String]) -> Option<(&'a str, &'a str)> {
    let var = var.to_str()?;
    let target = target_name(var)?;
    let absolute = value.as_bytes().starts_with(b"/");
    (absolute && !is_excluded(var, target, keep)).then_some((var, target))
}

/// A secret to load: `index` is the position of its `*_FILE` entry.
#[derive(Debug, PartialEq, Eq)]
struct Planned {
    index: usize,
    var: String,
    target: String,
    path: PathBuf,
}

/// Finds the secret references and rejects ambiguous setups, touching no file.
fn plan(env: &[(OsString, OsString)], keep: &[String]) -> Result<Vec<Planned>, SecretError> {
    let mut planned: Vec<Planned> = Vec::new();
    for (index, (key, value)) in env.iter().enumerate() {
        let Some((var, target)) = candidate(key, value, keep) else {
            continue;
        };
        if let Some(other) = planned.iter().find(|p| p.target == target) {
            return Err(SecretError::Duplicate {
                name: target.to_owned(),
                first: other.var.clone(),
                second: var.to_owned(),
            });
        }
        planned.push(Planned {
            index,
            var: var.to_owned(),
            target: target.to_owned(),
            path: PathBuf::from(value),
        });
    }
    for p in &planned {
        // Empty counts as unset, like docker-library's `file_env`: images
        // often declare `ENV DB_PASSWORD=""` as documentation.
        let set = env
            .iter()
            .any(|(k, v)| k.as_os_str() == OsStr::new(&p.target) && !v.is_empty());
        if set {
            return Err(SecretError::Conflict {
                name: p.target.clone(),
                var: p.var.clone(),
            });
        }
    }
    Ok(planned)
}

fn load(p: &Planned, reader: &(impl SecretReader + ?Sized)) -> Result<Secret, SecretError> {
    let unusable = |problem| SecretError::Unusable {
        name: p.target.clone(),
        var: p.var.clone(),
        path: p.path.clone(),
        problem,
    };
    let value = decode(reader.read(&p.path).map_err(unusable)?).map_err(unusable)?;
    if p.target.len() + 1 + value.len() + 1 > MAX_ENV_STRING {
        return Err(unusable(Problem::TooLargeForEnv));
    }
    Ok(Secret {
        name: p.target.clone(),
        var: p.var.clone(),
        path: p.path.clone(),
        value: SecretValue(value),
    })
}

/// Replaces each `*_FILE` entry in place and drops the empty `NAME` entries
/// the secrets supersede.
fn rebuild(
    env: Vec<(OsString, OsString)>,
    planned: &[Planned],
    secrets: &[Secret],
) -> Vec<(OsString, OsString)> {
    let superseded = |k: &OsStr| planned.iter().any(|p| OsStr::new(&p.target) == k);
    env.into_iter()
        .enumerate()
        .filter_map(
            |(index, (k, v))| match planned.iter().position(|p| p.index == index) {
                Some(i) => Some((
                    OsString::from(&secrets[i].name),
                    OsString::from(secrets[i].value.expose()),
                )),
                None if superseded(&k) => None,
                None => Some((k, v)),
            },
        )
        .collect()
}

/// Resolves secrets from real files. `keep` lists extra `*_FILE` variable
/// names to leave untouched.
pub fn resolve(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    keep: &[String],
) -> Result<Resolved, SecretError> {
    resolve_with(env, keep, &FsReader)
}

/// [`resolve`] with the file access supplied by the caller.
pub fn resolve_with(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    keep: &[String],
    reader: &(impl SecretReader + ?Sized),
) -> Result<Resolved, SecretError> {
    let env: Vec<_> = env.into_iter().collect();
    let planned = plan(&env, keep)?;
    let secrets = planned
        .iter()
        .map(|p| load(p, reader))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Resolved {
        env: rebuild(env, &planned, &secrets),
        secrets,
    })
}

/// Masks secret values in text; build it once and use it on every log line.
pub struct Redactor {
    // Longest first, so a secret that contains another is masked whole.
    needles: Vec<SecretValue>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} needles)", self.needles.len())
    }
}

impl Redactor {
    pub fn new(secrets: &[Secret]) -> Redactor {
        let mut needles: Vec<SecretValue> = secrets
            .iter()
            .flat_map(|s| needles_of(s.value.expose()))
            .collect();
        needles.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        needles.dedup_by(|a, b| a.0 == b.0);
        Redactor { needles }
    }

    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.expose()) {
                out = Cow::Owned(out.replace(needle.expose(), "***"));
            }
        }
        out
    }
}

/// Every form in which a value can reach a line initd prints: the whole
/// value; each line of a multi-line one (a PEM key or a JSON credential
/// leaks one line at a time into logs); the value as command-line words
/// quoted anew (a `GUNICORN_ARGUMENTS` secret is logged inside the
/// server's command line); and each of those escaped the way `{:?}` quotes
/// a value in an error message and the JSON log format escapes a message,
/// alone and one inside the other.
fn needles_of(value: &str) -> Vec<SecretValue> {
    let mut forms = vec![SecretValue(value.to_owned())];
    if value.contains('\n') {
        forms.extend(value.lines().map(|l| SecretValue(l.trim().to_owned())));
    }
    if let Ok(words) = crate::cmdline::split(value) {
        forms.push(SecretValue(crate::cmdline::join(&words)));
        words.into_iter().for_each(|w| wipe(w.into_bytes()));
    }
    forms.retain(|f| f.0.len() >= MIN_REDACT_LEN);
    let mut all = Vec::with_capacity(forms.len() * 4);
    for form in forms {
        let debug = SecretValue(debug_escaped(form.expose()));
        all.push(SecretValue(json_escaped(debug.expose())));
        all.push(SecretValue(json_escaped(form.expose())));
        all.push(debug);
        all.push(form);
    }
    all
}

/// `text` as `{:?}` prints it, without the quotes around it.
fn debug_escaped(text: &str) -> String {
    let quoted = format!("{text:?}");
    quoted[1..quoted.len() - 1].to_owned()
}

/// `text` as a JSON string's content (serde_json's escapes).
fn json_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Replaces every secret value (at least [`MIN_REDACT_LEN`] bytes) with `***`.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    Redactor::new(secrets).redact(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A temp dir removed on drop (tempfile is not a dependency).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "initd-secrets-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let dir = std::env::temp_dir().join(name);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str, content: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// In-memory files for the pure tests.
    struct Fake(HashMap<PathBuf, Vec<u8>>);

    impl Fake {
        fn new(files: &[(&str, &str)]) -> Fake {
            Fake(
                files
                    .iter()
                    .map(|(p, c)| (PathBuf::from(p), c.as_bytes().to_vec()))
                    .collect(),
            )
        }
    }

    impl SecretReader for Fake {
        fn read(&self, path: &Path) -> Result<Vec<u8>, Problem> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| Problem::Io(io::Error::from_raw_os_error(libc::ENOENT)))
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn run(pairs: &[(&str, &str)], files: &[(&str, &str)]) -> Result<Resolved, SecretError> {
        resolve_with(env(pairs), &[], &Fake::new(files))
    }

    fn get<'a>(r: &'a Resolved, name: &str) -> Option<&'a str> {
        r.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    fn names(r: &Resolved) -> Vec<&str> {
        r.env.iter().map(|(k, _)| k.to_str().unwrap()).collect()
    }

    #[test]
    fn suffix_spelling_is_resolved_in_place() {
        let r = run(
            &[("A", "1"), ("DB_PASSWORD_FILE", "/run/secrets/db"), ("Z", "2")],
            &[("/run/secrets/db", "hunter22\n")],
        )
        .unwrap();
        assert_eq!(names(&r), ["A", "DB_PASSWORD", "Z"]);
        assert_eq!(get(&r, "DB_PASSWORD"), Some("hunter22"));
        assert_eq!(r.secrets.len(), 1);
        assert_eq!(r.secrets[0].var, "DB_PASSWORD_FILE");
        assert_eq!(r.secrets[0].path, Path::new("/run/secrets/db"));
    }

    #[test]
    fn a_secret_too_long_for_one_environment_string_is_refused() {
        // "BIG=" + value + NUL must fit MAX_ARG_STRLEN, or exec fails E2BIG.
        let fits = "a".repeat(MAX_ENV_STRING - "BIG=".len() - 1);
        let too_long = format!("{fits}a");
        assert!(run(&[("BIG_FILE", "/s/big")], &[("/s/big", &fits)]).is_ok());
        let err = run(&[("BIG_FILE", "/s/big")], &[("/s/big", &too_long)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret BIG: /s/big is larger than the 128 KiB one environment variable can hold; \
             let the app read the file itself and add BIG_FILE to INITD_NOT_SECRETS"
        );
    }

    #[test]
    fn prefix_spelling_is_resolved() {
        let r = run(&[("FILE__API_KEY", "/s/k")], &[("/s/k", "abcd")]).unwrap();
        assert_eq!(names(&r), ["API_KEY"]);
        assert_eq!(get(&r, "API_KEY"), Some("abcd"));
    }

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

    #[test]
    fn target_names_follow_both_conventions() {
        assert_eq!(target_name("DB_FILE"), Some("DB"));
        assert_eq!(target_name("FILE__DB"), Some("DB"));
        assert_eq!(target_name("_FILE"), None);
        assert_eq!(target_name("FILE__"), None);
        assert_eq!(target_name("PROFILE"), None);
        assert_eq!(target_name("DB_FILE_PATH"), None);
        assert_eq!(target_name("COVERAGE_RCFILE"), None);
        // The prefix wins when both apply.
        assert_eq!(target_name("FILE__X_FILE"), Some("X_FILE"));
    }

    #[test]
    fn only_absolute_paths_are_secrets() {
        let r = run(
            &[
                ("ENVX_FILE", ".env"),
                ("HOME_FILE", "~/x"),
                ("EMPTY_FILE", ""),
                ("CMD_FILE", "gunicorn.conf.py"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(names(&r), ["ENVX_FILE", "HOME_FILE", "EMPTY_FILE", "CMD_FILE"]);
        assert!(r.secrets.is_empty());
    }

    #[test]
    fn well_known_settings_are_left_alone() {
        let pairs: Vec<(&str, &str)> = NOT_SECRETS.iter().map(|n| (*n, "/etc/x")).collect();
        let r = run(&pairs, &[]).unwrap();
        assert_eq!(names(&r), NOT_SECRETS);
        assert!(r.secrets.is_empty());
        // And names that merely look similar are not *_FILE at all.
        let r = run(
            &[
                ("REQUESTS_CA_BUNDLE", "/x"),
                ("PYTHONSTARTUP", "/x"),
                ("KUBECONFIG", "/x"),
                ("HISTFILE", "/x"),
                ("COVERAGE_RCFILE", "/x"),
            ],
            &[],
        )
        .unwrap();
        assert!(r.secrets.is_empty());
    }

    #[test]
    fn non_utf8_entries_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let odd = (
            OsString::from_vec(b"N\xff_FILE".to_vec()),
            OsString::from_vec(b"/x\xff".to_vec()),
        );
        let r = resolve_with(vec![odd.clone()], &[], &Fake::new(&[])).unwrap();
        assert_eq!(r.env, [odd]);
    }

    #[test]
    fn initd_settings_are_left_alone() {
        let r = run(
            &[("INITD_CONFIG_FILE", "/etc/initd.toml"), ("FILE__INITD_X", "/a")],
            &[],
        )
        .unwrap();
        assert_eq!(names(&r), ["INITD_CONFIG_FILE", "FILE__INITD_X"]);
    }

    #[test]
    fn keep_leaves_extra_names_alone() {
        let keep = vec!["APP_LOG_FILE".to_owned()];
        let r = resolve_with(
            env(&[("APP_LOG_FILE", "/var/log/app.log"), ("TOKEN_FILE", "/t")]),
            &keep,
            &Fake::new(&[("/t", "tok1")]),
        )
        .unwrap();
        assert_eq!(names(&r), ["APP_LOG_FILE", "TOKEN"]);
    }

    #[test]
    fn name_and_name_file_together_is_an_error() {
        let err = run(
            &[("DB_PASSWORD", "topsecret"), ("DB_PASSWORD_FILE", "/s/db")],
            &[("/s/db", "x")],
        )
        .unwrap_err();
        assert!(matches!(err, SecretError::Conflict { .. }));
        let msg = err.to_string();
        assert_eq!(
            msg,
            "secret DB_PASSWORD: both DB_PASSWORD and DB_PASSWORD_FILE are set; unset one of them"
        );
        assert!(!msg.contains("topsecret"));
    }

    #[test]
    fn empty_name_is_superseded_by_the_file() {
        let r = run(
            &[("DB_PASSWORD", ""), ("X", "1"), ("DB_PASSWORD_FILE", "/s/db")],
            &[("/s/db", "pw12")],
        )
        .unwrap();
        assert_eq!(names(&r), ["X", "DB_PASSWORD"]);
        assert_eq!(get(&r, "DB_PASSWORD"), Some("pw12"));
    }

    #[test]
    fn both_spellings_for_one_name_is_an_error() {
        let err = run(
            &[("DB_FILE", "/a"), ("FILE__DB", "/b")],
            &[("/a", "1"), ("/b", "2")],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret DB: both DB_FILE and FILE__DB are set; keep only one"
        );
    }

    #[test]
    fn missing_file_error_names_variable_and_path() {
        let err = run(&[("DB_PASSWORD_FILE", "/run/secrets/db")], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret DB_PASSWORD: cannot read /run/secrets/db (No such file or directory); \
             mount the secret, unset DB_PASSWORD_FILE, or if it is not a Docker secret add \
             DB_PASSWORD_FILE to INITD_NOT_SECRETS"
        );
    }

    #[test]
    fn missing_real_file_is_reported() {
        let dir = TempDir::new();
        let path = dir.0.join("nope");
        let err = resolve(env(&[("K_FILE", path.to_str().unwrap())]), &[]).unwrap_err();
        assert!(matches!(
            err,
            SecretError::Unusable { problem: Problem::Io(ref e), .. }
                if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn unreadable_file_is_reported() {
        let dir = TempDir::new();
        // A file inside a non-directory yields ENOTDIR even for root, unlike
        // permission bits, which root ignores.
        let file = dir.file("plain", b"x");
        let path = file.join("child");
        let err = resolve(env(&[("K_FILE", path.to_str().unwrap())]), &[]).unwrap_err();
        assert!(err.to_string().contains("(Not a directory)"), "{err}");
    }

    #[test]
    fn real_file_is_read() {
        let dir = TempDir::new();
        let path = dir.file("db", b"s3cr3t\r\n");
        let r = resolve(env(&[("DB_FILE", path.to_str().unwrap())]), &[]).unwrap();
        assert_eq!(get(&r, "DB"), Some("s3cr3t"));
    }

    fn read_err(path: &Path) -> Problem {
        FsReader.read(path).unwrap_err()
    }

    #[test]
    fn directory_is_refused() {
        let dir = TempDir::new();
        assert!(matches!(
            read_err(&dir.0),
            Problem::NotRegular(FileKind::Directory)
        ));
    }

    #[test]
    fn fifo_is_refused_without_blocking() {
        let dir = TempDir::new();
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
        let dir = TempDir::new();
        let path = dir.0.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(matches!(read_err(&path), Problem::NotRegular(FileKind::Socket)));
    }

    #[test]
    fn symlink_chain_to_regular_file_is_accepted() {
        // The Kubernetes layout: key -> ..data/key, ..data -> ..2024_01_01/.
        let dir = TempDir::new();
        fs::create_dir(dir.0.join("..2024")).unwrap();
        dir.file("..2024/db", b"k8s-secret\n");
        symlink("..2024", dir.0.join("..data")).unwrap();
        symlink("..data/db", dir.0.join("db")).unwrap();
        assert_eq!(FsReader.read(&dir.0.join("db")).unwrap(), b"k8s-secret\n");
    }

    #[test]
    fn symlinks_out_of_the_secret_directory_are_refused() {
        let dir = TempDir::new();
        fs::create_dir(dir.0.join("secrets")).unwrap();
        fs::create_dir(dir.0.join("elsewhere")).unwrap();
        dir.file("elsewhere/key", b"not-for-the-app\n");
        symlink("../elsewhere/key", dir.0.join("secrets/rel")).unwrap();
        symlink("/etc/passwd", dir.0.join("secrets/abs")).unwrap();
        let real = fs::canonicalize(&dir.0).unwrap();
        for (name, target) in [
            ("rel", real.join("elsewhere/key")),
            ("abs", PathBuf::from("/etc/passwd")),
        ] {
            let path = dir.0.join("secrets").join(name);
            match read_err(&path) {
                Problem::Escapes { target: t, dir: d } => {
                    assert_eq!(t, target, "{name}");
                    assert_eq!(d, fs::canonicalize(path.parent().unwrap()).unwrap(), "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let err = resolve(
            env(&[("KEY_FILE", dir.0.join("secrets/rel").to_str().unwrap())]),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is a symbolic link to "), "{err}");
        assert!(
            err.contains("initd follows links only within the secret's directory"),
            "{err}"
        );
        assert!(!err.contains("not-for-the-app"), "{err}");
    }

    #[test]
    fn symlinks_within_the_secret_directory_are_followed() {
        let dir = TempDir::new();
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
        let dir = TempDir::new();
        fs::create_dir(dir.0.join("d")).unwrap();
        symlink("d", dir.0.join("link")).unwrap();
        assert!(matches!(
            read_err(&dir.0.join("link")),
            Problem::NotRegular(FileKind::Directory)
        ));
    }

    #[test]
    fn dangling_symlink_is_refused() {
        let dir = TempDir::new();
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

    #[test]
    fn huge_file_is_refused_after_a_capped_read() {
        let dir = TempDir::new();
        let path = dir.0.join("big");
        // Sparse: 1 GiB on paper, nothing on disk. Only the cap is read.
        let f = fs::File::create(&path).unwrap();
        f.set_len(1 << 30).unwrap();
        let bytes = FsReader.read(&path).unwrap();
        assert_eq!(bytes.len(), MAX_SECRET_BYTES + 1);
        let err = resolve(env(&[("BIG_FILE", path.to_str().unwrap())]), &[]).unwrap_err();
        assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
    }

    #[test]
    fn errors_never_contain_the_content() {
        let dir = TempDir::new();
        let nul = dir.file("nul", b"password-one\0");
        let bad = dir.file("bad", b"password-two\xff");
        for path in [nul, bad] {
            let err = resolve(env(&[("P_FILE", path.to_str().unwrap())]), &[]).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("password"), "{text}");
            assert!(text.contains("P_FILE") && text.contains(path.to_str().unwrap()));
        }
    }

    #[test]
    fn debug_output_redacts_values() {
        let r = run(
            &[("PLAIN", "visible"), ("DB_FILE", "/s/db")],
            &[("/s/db", "hunter22")],
        )
        .unwrap();
        let text = format!("{r:?} {:?} {:?}", r.secrets[0], r.secrets[0].value);
        assert!(!text.contains("hunter22"), "{text}");
        assert!(text.contains("***") && text.contains("visible"));
    }

    #[test]
    fn redact_masks_values_and_their_lines() {
        let r = run(
            &[("A_FILE", "/a"), ("B_FILE", "/b"), ("C_FILE", "/c")],
            &[
                ("/a", "abcdef"),
                ("/b", "abc"),
                ("/c", "-----KEY-----\nline-two\n"),
            ],
        )
        .unwrap();
        let line = "login abcdef ok abc; key line-two; pem -----KEY-----\nline-two";
        assert_eq!(redact(line, &r.secrets), "login *** ok abc; key ***; pem ***");
    }

    #[test]
    fn redact_masks_requoted_and_escaped_forms() {
        let r = run(
            &[("A_FILE", "/a"), ("B_FILE", "/b")],
            &[("/a", "--name  'top secret'"), ("/b", "pa\"ss\\word")],
        )
        .unwrap();
        let redactor = Redactor::new(&r.secrets);
        // Split into words and quoted anew, as in a logged command line.
        assert_eq!(
            redactor.redact("gunicorn app --name 'top secret' -w 2"),
            "gunicorn app *** -w 2"
        );
        // Quoted with {:?} in an error message.
        let message = format!("PORT={:?}: expected a port", "pa\"ss\\word");
        assert_eq!(redactor.redact(&message), "PORT=\"***\": expected a port");
        // That message in a JSON log line.
        assert_eq!(
            redactor.redact(r#"{"message":"PORT=\"pa\\\"ss\\\\word\": expected a port"}"#),
            r#"{"message":"PORT=\"***\": expected a port"}"#
        );
        assert_eq!(
            redactor.redact(r#"{"message":"x pa\"ss\\word"}"#),
            r#"{"message":"x ***"}"#
        );
    }

    #[test]
    fn redact_prefers_the_longest_secret() {
        let r = run(
            &[("A_FILE", "/a"), ("B_FILE", "/b")],
            &[("/a", "pass"), ("/b", "password99")],
        )
        .unwrap();
        assert_eq!(redact("x password99 pass", &r.secrets), "x *** ***");
        let redactor = Redactor::new(&r.secrets);
        assert!(matches!(redactor.redact("clean"), Cow::Borrowed("clean")));
        assert!(!format!("{redactor:?}").contains("pass"));
    }
}

/// Property tests: the environment and the secret files are arbitrary
/// bytes as far as initd knows; none may panic it, a `*_FILE` reference
/// never reaches the app, and no secret value survives redaction.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::os::unix::ffi::OsStringExt;

    /// In-memory secret files.
    struct Files(HashMap<PathBuf, Vec<u8>>);

    impl SecretReader for Files {
        fn read(&self, path: &Path) -> Result<Vec<u8>, Problem> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| Problem::Io(io::Error::from_raw_os_error(libc::ENOENT)))
        }
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[A-Z_]{0,6}_FILE".prop_map(String::into_bytes),
            "FILE__[A-Z_]{0,6}".prop_map(String::into_bytes),
            "(INITD_)?[A-Z_]{1,8}".prop_map(String::into_bytes),
            proptest::sample::select(NOT_SECRETS).prop_map(|s| s.as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..10),
        ]
        // The kernel cannot pass a `=` or a NUL in a variable's name.
        .prop_filter("a name", |k| !k.contains(&b'=') && !k.contains(&0))
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "/s/[a-c]".prop_map(String::into_bytes),
            "[ -~]{0,8}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..10),
        ]
        .prop_filter("no NUL", |v| !v.contains(&0))
    }

    /// A secret value as people write them, quotes and newlines included,
    /// without `*` (the mask itself) and at least MIN_REDACT_LEN long.
    fn secret() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 !\"#$%&'()+,./:;<=>?@\\\\^_`{|}~\\n\\t\\-éü中]{4,24}".prop_filter("redactable", |s| {
            s.trim().len() >= MIN_REDACT_LEN && s.lines().all(|l| l.trim().len() >= MIN_REDACT_LEN)
        })
    }

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_environment_resolves_or_fails_cleanly(
            env in proptest::collection::vec((key(), value()), 0..8),
            files in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 3),
        ) {
            let env: Vec<(OsString, OsString)> = env
                .into_iter()
                .map(|(k, v)| (OsString::from_vec(k), OsString::from_vec(v)))
                .collect();
            let files = Files(
                ["/s/a", "/s/b", "/s/c"].iter().map(PathBuf::from).zip(files).collect(),
            );
            match resolve_with(env.clone(), &[], &files) {
                Ok(r) => {
                    prop_assert!(r.env.len() <= env.len());
                    // No reference that was resolved is passed on (an
                    // environment may hold a name twice, so compare both).
                    for s in &r.secrets {
                        let reference = (OsString::from(&s.var), s.path.clone().into_os_string());
                        prop_assert!(!r.env.contains(&reference));
                        prop_assert!(!s.value.expose().contains('\0'));
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.starts_with("secret "), "{}", text);
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(text) = decode(bytes.clone()) {
                prop_assert!(!text.contains('\0') && text.len() <= bytes.len());
            }
        }

        /// Whatever text surrounds it, and however it is quoted (as a
        /// command line, `{:?}`, JSON, or both), a secret is masked.
        #[test]
        fn no_secret_survives_redaction(
            value in secret(),
            before in "[ -~]{0,12}",
            after in "[ -~]{0,12}",
        ) {
            let files = Files([(PathBuf::from("/s/a"), value.clone().into_bytes())].into_iter().collect());
            let env = vec![(OsString::from("P_FILE"), OsString::from("/s/a"))];
            let Ok(resolved) = resolve_with(env, &[], &files) else {
                return Ok(());
            };
            let stored = resolved.secrets[0].value.expose().to_owned();
            let redactor = Redactor::new(&resolved.secrets);
            let message = format!("{before}{stored}{after}");
            let forms = [
                message.clone(),
                format!("{message:?}"),
                json_escaped(&message),
                json_escaped(&format!("{message:?}")),
            ];
            for form in forms {
                let out = redactor.redact(&form);
                for line in stored.lines().map(str::trim).chain([stored.as_str()]) {
                    if line.len() >= MIN_REDACT_LEN {
                        prop_assert!(!out.contains(line), "{:?} leaked in {:?}", line, out);
                    }
                }
            }
        }
    }
}
