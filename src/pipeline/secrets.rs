//! Docker secrets: `NAME_FILE=/run/secrets/x` (or `FILE__NAME=/run/secrets/x`)
//! becomes `NAME=<content of the file>` in the app's environment.
//!
//! Which variables count as secrets is decided by *where they point*, not by
//! their name alone: a real environment is full of `*_FILE` variables that
//! are settings of other programs (`TF_CLI_CONFIG_FILE`,
//! `CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE`, `SSL_CERT_FILE` ...), and no list of
//! known names can keep up with them. So ([`Selection`]):
//! - `NAME_FILE` is a secret when its value is a path inside one of the
//!   secrets directories (`INITD_SECRETS_DIRS`, default `/run/secrets`,
//!   where Docker, Compose and Swarm mount them), or when `NAME` is listed
//!   in `INITD_SECRETS` (the explicit opt-in for any other path);
//! - `FILE__NAME` (the linuxserver.io convention) is always a secret: its
//!   prefix is the opt-in;
//! - every other variable is left exactly as it is, whatever it names.
//!
//! "Inside" is decided on the path's normalised components, never on its
//! text: `/run/secrets-evil/x` is not inside `/run/secrets`, and a path with
//! a `..` component is never inside anything (`/run/secrets/../etc/x` is
//! `/etc/x`, and through a symbolic link `..` can lead anywhere).
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

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub(crate) mod read;
pub(crate) mod redact;

pub(crate) use read::{FsReader, Problem, SecretReader, decode};
pub(crate) use redact::Redactor;

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

/// Where Docker, Compose and Swarm mount secrets.
pub const DEFAULT_DIR: &str = "/run/secrets";

/// Which `*_FILE` variables are secrets: `INITD_SECRETS_DIRS` and
/// `INITD_SECRETS`, read from the environment before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Normalised absolute directories.
    pub dirs: Vec<PathBuf>,
    /// `NAME`s whose `NAME_FILE` is a secret wherever it points.
    pub names: Vec<String>,
}

impl Default for Selection {
    fn default() -> Selection {
        Selection {
            dirs: vec![PathBuf::from(DEFAULT_DIR)],
            names: Vec::new(),
        }
    }
}

/// A bad `INITD_SECRETS_DIRS` or `INITD_SECRETS`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{name}={value:?}: expected {expected}")]
pub struct SelectionError {
    pub name: &'static str,
    pub value: String,
    pub expected: String,
}

impl Selection {
    /// From the two variables' text (`None`: unset). An empty
    /// `INITD_SECRETS_DIRS` counts as unset, so a compose file's
    /// `INITD_SECRETS_DIRS: ${DIRS}` with nothing in `DIRS` cannot quietly
    /// stop every secret from being read.
    pub fn parse(dirs: Option<&str>, names: Option<&str>) -> Result<Selection, SelectionError> {
        let items = |text: &str| -> Vec<String> {
            text.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut selection = Selection::default();
        if let Some(text) = dirs.filter(|t| !t.trim().is_empty()) {
            selection.dirs = items(text)
                .iter()
                .map(|d| {
                    normalised(Path::new(d)).ok_or_else(|| SelectionError {
                        name: "INITD_SECRETS_DIRS",
                        value: text.to_string(),
                        expected: format!(
                            "absolute directories without `..`, comma-separated \
                             (such as /run/secrets,/etc/app-secrets); {d:?} is not one"
                        ),
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(text) = names {
            for name in items(text) {
                let valid = !name.contains('=') && !name.starts_with(OWN_PREFIX);
                if !valid {
                    return Err(SelectionError {
                        name: "INITD_SECRETS",
                        value: text.to_string(),
                        expected: format!(
                            "variable names, comma-separated (such as DB_PASSWORD,API_KEY); \
                             {name:?} is not one"
                        ),
                    });
                }
                selection.names.push(name);
            }
        }
        Ok(selection)
    }

    /// From the process environment.
    pub fn from_env() -> Result<Selection, SelectionError> {
        let var = |name| std::env::var(name).ok();
        Selection::parse(
            var("INITD_SECRETS_DIRS").as_deref(),
            var("INITD_SECRETS").as_deref(),
        )
    }

    fn lists(&self, var: &str, target: &str) -> bool {
        self.names.iter().any(|n| n == target || n == var)
    }

    /// The secrets directory `path` lies inside, if any.
    fn dir_of(&self, path: &Path) -> Option<&Path> {
        let path = normalised(path)?;
        self.dirs
            .iter()
            .find(|d| path.starts_with(d) && path != **d)
            .map(PathBuf::as_path)
    }

    fn dirs_text(&self) -> String {
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        if dirs.is_empty() {
            "none".to_string()
        } else {
            dirs.join(", ")
        }
    }
}

/// `path` rebuilt from its components (no `.`, no doubled or trailing `/`),
/// or `None` when it is relative or has a `..` component: `..` after a
/// symbolic link goes wherever the link leads, so no text comparison can
/// tell where such a path ends up.
fn normalised(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Why a `*_FILE` variable was not taken for a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Its value is not an absolute path.
    NotAbsolute,
    /// Its path has a `..` component.
    DotDot,
    /// Its path is outside every secrets directory (the list as text).
    Outside(String),
    /// initd's own (`INITD_*`): settings are never read from files this way.
    Own,
}

/// A `*_FILE` variable left exactly as it was, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftAlone {
    pub var: String,
    pub value: OsString,
    pub why: Why,
}

impl fmt::Display for LeftAlone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value.to_string_lossy();
        let target = target_name(&self.var).unwrap_or(&self.var);
        let opt_in = format!("if it is a Docker secret, add {target} to INITD_SECRETS");
        match &self.why {
            Why::NotAbsolute => write!(f, "{}={value:?}: not an absolute path; {opt_in}", self.var),
            Why::DotDot => write!(
                f,
                "{}={value:?}: the path has a `..` component; {opt_in}",
                self.var
            ),
            Why::Outside(dirs) => write!(
                f,
                "{}={value}: outside the secrets directories ({dirs}, INITD_SECRETS_DIRS); {opt_in}",
                self.var
            ),
            Why::Own => write!(f, "{}: initd's own settings are never read from a file", self.var),
        }
    }
}

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
    /// The `*_FILE` variables that are not secrets, passed on untouched.
    pub left_alone: Vec<LeftAlone>,
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
    #[error(
        "secret {name}: {var}={value:?} is not an absolute path; secrets are mounted at \
         absolute paths (/run/secrets/...)"
    )]
    Relative {
        name: String,
        var: String,
        value: String,
    },
    #[error("secret {name}: {}", .problem.explain(.path, .var))]
    Unusable {
        name: String,
        var: String,
        path: PathBuf,
        problem: Problem,
    },
}

/// The variable a `*_FILE` name feeds, by naming convention alone.
fn target_name(var: &str) -> Option<&str> {
    let target = match var.strip_prefix(PREFIX) {
        Some(rest) => rest,
        None => var.strip_suffix(SUFFIX)?,
    };
    (!target.is_empty()).then_some(target)
}

/// What one environment entry is to the secrets step.
#[derive(Debug, PartialEq, Eq)]
enum Role<'a> {
    /// Not a `*_FILE` / `FILE__*` name, or an empty value: nothing to say.
    Plain,
    /// A reference to resolve: `(var, target)`.
    Secret(&'a str, &'a str),
    /// A `*_FILE` variable that is not a secret.
    Left(Why),
}

fn role<'a>(var: &'a OsStr, value: &OsStr, selection: &Selection) -> Result<Role<'a>, SecretError> {
    let Some(var) = var.to_str() else {
        return Ok(Role::Plain);
    };
    let Some(target) = target_name(var) else {
        return Ok(Role::Plain);
    };
    if value.is_empty() {
        return Ok(Role::Plain);
    }
    // initd reads its own settings from its own environment, never from
    // files; resolving them here would be a confusing second path.
    if var.starts_with(OWN_PREFIX) || target.starts_with(OWN_PREFIX) {
        return Ok(Role::Left(Why::Own));
    }
    let path = Path::new(value);
    let opted_in = var.starts_with(PREFIX) || selection.lists(var, target);
    if opted_in {
        if !path.is_absolute() {
            return Err(SecretError::Relative {
                name: target.to_owned(),
                var: var.to_owned(),
                value: value.to_string_lossy().into_owned(),
            });
        }
        return Ok(Role::Secret(var, target));
    }
    Ok(if !path.is_absolute() {
        Role::Left(Why::NotAbsolute)
    } else if normalised(path).is_none() {
        Role::Left(Why::DotDot)
    } else if selection.dir_of(path).is_none() {
        Role::Left(Why::Outside(selection.dirs_text()))
    } else {
        Role::Secret(var, target)
    })
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
fn plan(
    env: &[(OsString, OsString)],
    selection: &Selection,
) -> Result<(Vec<Planned>, Vec<LeftAlone>), SecretError> {
    let mut planned: Vec<Planned> = Vec::new();
    let mut left = Vec::new();
    for (index, (key, value)) in env.iter().enumerate() {
        let (var, target) = match role(key, value, selection)? {
            Role::Plain => continue,
            Role::Left(why) => {
                left.push(LeftAlone {
                    var: key.to_string_lossy().into_owned(),
                    value: value.clone(),
                    why,
                });
                continue;
            }
            Role::Secret(var, target) => (var, target),
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
    Ok((planned, left))
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

/// Resolves the secrets `selection` picks, from real files.
pub fn resolve(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    selection: &Selection,
) -> Result<Resolved, SecretError> {
    resolve_with(env, selection, &FsReader)
}

/// [`resolve`] with the file access supplied by the caller.
pub fn resolve_with(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    selection: &Selection,
    reader: &(impl SecretReader + ?Sized),
) -> Result<Resolved, SecretError> {
    let env: Vec<_> = env.into_iter().collect();
    let (planned, left_alone) = plan(&env, selection)?;
    let secrets = planned
        .iter()
        .map(|p| load(p, reader))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Resolved {
        env: rebuild(env, &planned, &secrets),
        secrets,
        left_alone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;
    use std::io;
    use std::os::unix::fs::symlink;

    use crate::testdir::TempDir;

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

    /// Every absolute path counts as inside: for the tests about reading.
    fn everywhere() -> Selection {
        Selection {
            dirs: vec![PathBuf::from("/")],
            names: Vec::new(),
        }
    }

    fn run(pairs: &[(&str, &str)], files: &[(&str, &str)]) -> Result<Resolved, SecretError> {
        resolve_with(env(pairs), &everywhere(), &Fake::new(files))
    }

    fn run_default(pairs: &[(&str, &str)], files: &[(&str, &str)]) -> Result<Resolved, SecretError> {
        resolve_with(env(pairs), &Selection::default(), &Fake::new(files))
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
             let the app read the file itself (from outside the secrets directories, \
             with BIG_FILE not in INITD_SECRETS)"
        );
    }

    #[test]
    fn prefix_spelling_is_resolved() {
        let r = run(&[("FILE__API_KEY", "/s/k")], &[("/s/k", "abcd")]).unwrap();
        assert_eq!(names(&r), ["API_KEY"]);
        assert_eq!(get(&r, "API_KEY"), Some("abcd"));
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
    fn only_paths_inside_the_secrets_directories_are_secrets() {
        let r = run_default(
            &[
                ("DB_PASSWORD_FILE", "/run/secrets/db"),
                ("NESTED_FILE", "/run/secrets/app/key"),
                ("DOTTED_FILE", "/run/secrets/./x//y/"),
                ("TF_CLI_CONFIG_FILE", "/home/u/.terraformrc"),
                (
                    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
                    "/etc/ssl/certs/ca-certificates.crt",
                ),
                ("EVIL_FILE", "/run/secrets-evil/x"),
                ("DOTDOT_FILE", "/run/secrets/../etc/shadow"),
                ("DIR_FILE", "/run/secrets"),
                ("ENVX_FILE", ".env"),
                ("HOME_FILE", "~/x"),
                ("EMPTY_FILE", ""),
                ("CMD_FILE", "gunicorn.conf.py"),
                ("SSL_CERT_FILE", "/etc/ssl/cert.pem"),
            ],
            &[
                ("/run/secrets/db", "pw12"),
                ("/run/secrets/app/key", "k3y!"),
                ("/run/secrets/./x//y/", "dots"),
            ],
        )
        .unwrap();
        let secrets: Vec<&str> = r.secrets.iter().map(|s| s.var.as_str()).collect();
        assert_eq!(secrets, ["DB_PASSWORD_FILE", "NESTED_FILE", "DOTTED_FILE"]);
        assert_eq!(get(&r, "DB_PASSWORD"), Some("pw12"));
        // Everything else is passed on exactly as it was.
        for (k, v) in [
            ("TF_CLI_CONFIG_FILE", "/home/u/.terraformrc"),
            ("EVIL_FILE", "/run/secrets-evil/x"),
            ("DOTDOT_FILE", "/run/secrets/../etc/shadow"),
            ("ENVX_FILE", ".env"),
            ("EMPTY_FILE", ""),
            ("SSL_CERT_FILE", "/etc/ssl/cert.pem"),
        ] {
            assert_eq!(get(&r, k), Some(v), "{k}");
        }
        let left: Vec<(&str, &Why)> = r.left_alone.iter().map(|l| (l.var.as_str(), &l.why)).collect();
        let outside = Why::Outside("/run/secrets".into());
        assert_eq!(
            left,
            [
                ("TF_CLI_CONFIG_FILE", &outside),
                ("CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", &outside),
                ("EVIL_FILE", &outside),
                ("DOTDOT_FILE", &Why::DotDot),
                ("DIR_FILE", &outside),
                ("ENVX_FILE", &Why::NotAbsolute),
                ("HOME_FILE", &Why::NotAbsolute),
                ("CMD_FILE", &Why::NotAbsolute),
                ("SSL_CERT_FILE", &outside),
            ]
        );
        assert_eq!(
            r.left_alone[0].to_string(),
            "TF_CLI_CONFIG_FILE=/home/u/.terraformrc: outside the secrets directories \
             (/run/secrets, INITD_SECRETS_DIRS); if it is a Docker secret, add TF_CLI_CONFIG \
             to INITD_SECRETS"
        );
    }

    #[test]
    fn names_that_merely_look_similar_are_not_file_variables() {
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
        assert!(r.secrets.is_empty() && r.left_alone.is_empty());
    }

    #[test]
    fn the_secrets_directories_can_be_changed() {
        let selection = Selection::parse(Some(" /etc/app-secrets/ , /run/secrets "), None).unwrap();
        assert_eq!(
            selection.dirs,
            [PathBuf::from("/etc/app-secrets"), PathBuf::from("/run/secrets")]
        );
        let r = resolve_with(
            env(&[
                ("A_FILE", "/etc/app-secrets/a"),
                ("B_FILE", "/etc/app-secrets-old/b"),
            ]),
            &selection,
            &Fake::new(&[("/etc/app-secrets/a", "aaaa")]),
        )
        .unwrap();
        assert_eq!(names(&r), ["A", "B_FILE"]);
        // Empty is the default, not "none".
        assert_eq!(Selection::parse(Some(" "), None).unwrap(), Selection::default());
        for bad in ["run/secrets", "/run/secrets,/a/../b"] {
            let err = Selection::parse(Some(bad), None).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("INITD_SECRETS_DIRS={bad:?}: expected absolute")),
                "{err}"
            );
        }
        let err = Selection::parse(None, Some("DB,INITD_LOG"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"INITD_LOG\" is not one"), "{err}");
    }

    #[test]
    fn initd_secrets_opts_in_any_path() {
        let selection = Selection::parse(None, Some("DB_PASSWORD, API_KEY_FILE")).unwrap();
        let r = resolve_with(
            env(&[
                ("DB_PASSWORD_FILE", "/etc/secret-volume/db"),
                ("API_KEY_FILE", "/var/keys/api"),
                ("OTHER_FILE", "/var/keys/other"),
            ]),
            &selection,
            &Fake::new(&[("/etc/secret-volume/db", "pw12"), ("/var/keys/api", "key1")]),
        )
        .unwrap();
        assert_eq!(names(&r), ["DB_PASSWORD", "API_KEY", "OTHER_FILE"]);
        // An opted-in secret keeps every error: missing, and relative.
        let err = resolve_with(
            env(&[("DB_PASSWORD_FILE", "/etc/secret-volume/db")]),
            &selection,
            &Fake::new(&[]),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("cannot read /etc/secret-volume/db"),
            "{err}"
        );
        let err = resolve_with(
            env(&[("DB_PASSWORD_FILE", "db.txt")]),
            &selection,
            &Fake::new(&[]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret DB_PASSWORD: DB_PASSWORD_FILE=\"db.txt\" is not an absolute path; secrets are \
             mounted at absolute paths (/run/secrets/...)"
        );
    }

    #[test]
    fn the_prefix_spelling_is_always_a_secret() {
        let r = run_default(&[("FILE__TOKEN", "/opt/token")], &[("/opt/token", "tok1")]).unwrap();
        assert_eq!(names(&r), ["TOKEN"]);
        let err = run_default(&[("FILE__TOKEN", "token")], &[]).unwrap_err();
        assert!(matches!(err, SecretError::Relative { .. }), "{err}");
    }

    #[test]
    fn non_utf8_entries_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let odd = (
            OsString::from_vec(b"N\xff_FILE".to_vec()),
            OsString::from_vec(b"/x\xff".to_vec()),
        );
        let r = resolve_with(vec![odd.clone()], &everywhere(), &Fake::new(&[])).unwrap();
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
    fn a_name_set_beside_a_file_variable_that_is_no_secret_is_fine() {
        // Both TF_CLI_CONFIG and TF_CLI_CONFIG_FILE set is no conflict when
        // the latter is not a secret.
        let r = run_default(
            &[
                ("TF_CLI_CONFIG", "x"),
                ("TF_CLI_CONFIG_FILE", "/home/u/.terraformrc"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(names(&r), ["TF_CLI_CONFIG", "TF_CLI_CONFIG_FILE"]);
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
             mount the secret there or unset DB_PASSWORD_FILE"
        );
    }

    #[test]
    fn missing_real_file_is_reported() {
        let dir = TempDir::new("secrets");
        let path = dir.0.join("nope");
        let err = resolve(env(&[("K_FILE", path.to_str().unwrap())]), &everywhere()).unwrap_err();
        assert!(matches!(
            err,
            SecretError::Unusable { problem: Problem::Io(ref e), .. }
                if e.kind() == io::ErrorKind::NotFound
        ));
    }

    #[test]
    fn unreadable_file_is_reported() {
        let dir = TempDir::new("secrets");
        // A file inside a non-directory yields ENOTDIR even for root, unlike
        // permission bits, which root ignores.
        let file = dir.file("plain", b"x");
        let path = file.join("child");
        let err = resolve(env(&[("K_FILE", path.to_str().unwrap())]), &everywhere()).unwrap_err();
        assert!(err.to_string().contains("(Not a directory)"), "{err}");
    }

    #[test]
    fn real_file_is_read() {
        let dir = TempDir::new("secrets");
        let path = dir.file("db", b"s3cr3t\r\n");
        let r = resolve(env(&[("DB_FILE", path.to_str().unwrap())]), &everywhere()).unwrap();
        assert_eq!(get(&r, "DB"), Some("s3cr3t"));
    }

    #[test]
    fn symlinks_out_of_the_secret_directory_are_refused() {
        let dir = TempDir::new("secrets");
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
            match FsReader.read(&path).unwrap_err() {
                Problem::Escapes { target: t, dir: d } => {
                    assert_eq!(t, target, "{name}");
                    assert_eq!(d, fs::canonicalize(path.parent().unwrap()).unwrap(), "{name}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let err = resolve(
            env(&[("KEY_FILE", dir.0.join("secrets/rel").to_str().unwrap())]),
            &everywhere(),
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
    fn huge_file_is_refused_after_a_capped_read() {
        let dir = TempDir::new("secrets");
        let path = dir.0.join("big");
        // Sparse: 1 GiB on paper, nothing on disk. Only the cap is read.
        let f = fs::File::create(&path).unwrap();
        f.set_len(1 << 30).unwrap();
        let bytes = FsReader.read(&path).unwrap();
        assert_eq!(bytes.len(), MAX_SECRET_BYTES + 1);
        let err = resolve(env(&[("BIG_FILE", path.to_str().unwrap())]), &everywhere()).unwrap_err();
        assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
    }

    #[test]
    fn errors_never_contain_the_content() {
        let dir = TempDir::new("secrets");
        let nul = dir.file("nul", b"password-one\0");
        let bad = dir.file("bad", b"password-two\xff");
        for path in [nul, bad] {
            let err = resolve(env(&[("P_FILE", path.to_str().unwrap())]), &everywhere()).unwrap_err();
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
}

/// Property tests: the environment and the secret files are arbitrary
/// bytes as far as initd knows; none may panic it, a `*_FILE` reference
/// never reaches the app, and no secret value survives redaction.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::redact::json_escaped;
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::io;
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
            "[A-Z]{1,6}_FILE".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..10),
        ]
        // The kernel cannot pass a `=` or a NUL in a variable's name.
        .prop_filter("a name", |k| !k.contains(&b'=') && !k.contains(&0))
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "/s/[a-c]".prop_map(String::into_bytes),
            "/(s|t|s/\\.\\.|s-x)/[a-c]".prop_map(String::into_bytes),
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
            let selection = Selection { dirs: vec![PathBuf::from("/s")], names: Vec::new() };
            match resolve_with(env.clone(), &selection, &files) {
                Ok(r) => {
                    prop_assert!(r.env.len() <= env.len());
                    // No reference that was resolved is passed on (an
                    // environment may hold a name twice, so compare both).
                    // A secret comes only from inside /s (or FILE__, any path).
                    for s in &r.secrets {
                        prop_assert!(s.var.starts_with(PREFIX) || s.path.starts_with("/s/"));
                        prop_assert!(s.var.starts_with(PREFIX) || !s.path.to_string_lossy().contains(".."));
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
            let selection = Selection { dirs: vec![PathBuf::from("/s")], names: Vec::new() };
            let Ok(resolved) = resolve_with(env, &selection, &files) else {
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
