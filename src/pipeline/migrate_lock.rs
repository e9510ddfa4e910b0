//! `INITD_MIGRATE_LOCK=postgres`: run the migrations of one replica at a
//! time. When several replicas start together, each running
//! `manage.py migrate` from its entrypoint, their migrations race (two
//! `CREATE TABLE`s, a half-applied data migration). Each replica takes a
//! PostgreSQL advisory lock over `DATABASE_URL` first, so the others wait
//! and then find nothing left to do.
//!
//! The lock is a *session* lock: it belongs to the connection. Releasing it
//! is one query, but the safety net is the server itself: when initd dies
//! (even of SIGKILL, or the container is removed) the kernel closes the
//! socket, PostgreSQL ends the session and frees every lock it held, so a
//! crashed replica can never leave the others waiting forever. For the
//! case where no FIN ever arrives (the holder's host lost power), the
//! session asks the server for TCP keepalives of about a minute.
//!
//! Advisory session locks need a real server session: through a
//! transaction-pooling proxy (PgBouncer `pool_mode=transaction`) they do not
//! work; point `DATABASE_URL` at PostgreSQL itself or a session pool.

mod pg;
mod url;

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;
use tracing::{debug, info, warn};

pub use url::{DEFAULT_PORT, LockTarget, parse_database_url, redact};

/// The advisory lock key, the same for every replica and every initd
/// version: a changed key would let an old and a new replica migrate at once
/// during a rolling upgrade. Derived from a fixed string, so it is unlikely
/// to collide with an application's own advisory locks; two apps sharing one
/// database merely take turns at migrating.
pub const LOCK_KEY: i64 = fnv1a64(b"initd-migrate") as i64;

/// Resolves a host name to addresses without glibc's NSS (initd is static).
pub type Resolver<'a> = &'a dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// How long one connection attempt to one address may take before the next
/// address (or the next round) is tried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a release may take; past it the connection is dropped, which
/// releases the lock as well.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a "still waiting" line is logged.
const LOG_EVERY: Duration = Duration::from_secs(5);
/// Granularity of every wait: how quickly a stop request is noticed.
const SLICE: Duration = Duration::from_millis(50);

#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "INITD_MIGRATE_LOCK=postgres needs DATABASE_URL \
         (postgres://USER:PASSWORD@HOST:PORT/DBNAME)"
    )]
    MissingUrl,
    /// `url` is already redacted.
    #[error("DATABASE_URL={url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "PostgreSQL at {target} was not reachable within {} (INITD_MIGRATE_LOCK_TIMEOUT), so the \
         migration lock was not taken: {last}",
        whole(*after)
    )]
    Unreachable {
        target: String,
        after: Duration,
        last: String,
    },
    #[error("PostgreSQL at {target} refused the connection: {message}")]
    Refused { target: String, message: String },
    #[error(
        "gave up waiting for the migration lock (advisory lock {key} on {target}) after {} \
         (INITD_MIGRATE_LOCK_TIMEOUT): {holder}",
        whole(*after)
    )]
    LockTimeout {
        after: Duration,
        key: i64,
        target: String,
        /// Who holds it, as far as the server shows.
        holder: String,
    },
    #[error("interrupted while waiting for the migration lock")]
    Interrupted,
    #[error("migration lock query failed: {message}")]
    Query { message: String },
    /// The connection went away while the lock was held, so the server had
    /// already freed it: another replica may have migrated alongside.
    #[error(
        "lost the connection holding the migration lock ({message}); another replica may have migrated at the same time"
    )]
    Lost { message: String },
}

/// A wait's length as the setting would say it: whole seconds past one
/// (a 6 s timeout ends after 6.001 s).
fn whole(after: Duration) -> String {
    if after >= Duration::from_secs(1) {
        crate::units::human_duration(Duration::from_secs(after.as_secs()))
    } else {
        crate::units::human_duration(after)
    }
}

impl LockError {
    /// A mistake in the settings rather than trouble with the database.
    pub fn is_config(&self) -> bool {
        matches!(self, LockError::MissingUrl | LockError::BadUrl { .. })
    }
}

/// The target from the app's environment: `DATABASE_URL`, and `PGPASSWORD`
/// when the URL carries no password. libpq (so psycopg and Django) falls
/// back to `PGPASSWORD` the same way, which lets one `PGPASSWORD_FILE`
/// secret serve the app, initd's lock and PostgreSQL's own
/// `POSTGRES_PASSWORD_FILE`, with a `DATABASE_URL` that is no secret.
pub fn target_from_vars(env: &[(OsString, OsString)]) -> Result<LockTarget, LockError> {
    let var = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut target = target_from_env(var("DATABASE_URL"))?;
    if target.password.is_none() {
        target.password = var("PGPASSWORD")
            .filter(|p| !p.is_empty())
            .map(|p| p.to_string_lossy().into_owned());
    }
    Ok(target)
}

/// The target from the value of `DATABASE_URL` (pass
/// `std::env::var_os("DATABASE_URL")`).
pub fn target_from_env(database_url: Option<OsString>) -> Result<LockTarget, LockError> {
    let url = database_url
        .filter(|u| !u.is_empty())
        .ok_or(LockError::MissingUrl)?;
    let url = url.into_string().map_err(|_| LockError::BadUrl {
        url: "…".into(),
        reason: "not valid UTF-8".into(),
    })?;
    parse_database_url(&url)
}

/// The session holding the lock another replica waits for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    /// Its PostgreSQL backend pid.
    pub pid: i32,
    /// `initd migrate HOSTNAME` for another initd.
    pub application_name: String,
    /// Empty for a Unix-socket session, or when the server does not show it.
    pub client_addr: String,
    /// When its session began (UTC), when shown.
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "held by {:?}", self.application_name)?;
        if !self.client_addr.is_empty() {
            write!(f, " from {}", self.client_addr)?;
        }
        if !self.since.is_empty() {
            write!(f, ", connected since {}", self.since)?;
        }
        write!(f, " (backend pid {})", self.pid)
    }
}

/// What a wait is waiting on, reported as it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// No session yet: the last connection error.
    Connecting { last: String },
    /// Connected; another session holds the lock (`None`: not shown).
    Held { holder: Option<Holder> },
}

/// The held lock. Dropping it closes the connection, which frees the lock
/// too; [`MigrateLock::release`] does it politely and reports trouble.
pub struct MigrateLock {
    session: pg::Session,
    key: i64,
}

impl MigrateLock {
    pub fn release(mut self) -> Result<(), LockError> {
        let never = || false;
        let patience = Patience::new(RELEASE_TIMEOUT, &never);
        // On any error the session is dropped on return, which frees the
        // lock if the server still had it.
        let held = self
            .session
            .unlock(self.key, &patience)
            .map_err(|err| match err {
                PgError::Io(_) => LockError::Lost {
                    message: err.to_string(),
                },
                _ => LockError::Query {
                    message: err.to_string(),
                },
            })?;
        self.session.close(&patience);
        if !held {
            return Err(LockError::Lost {
                message: "the server no longer knew this lock".into(),
            });
        }
        debug!("released the migration lock");
        Ok(())
    }
}

/// Connects to `target` and takes the advisory lock `key`, retrying the
/// connection (the database may still be starting) and waiting for another
/// replica's lock, until `timeout` has passed (`Duration::MAX`: no limit).
///
/// The wait polls `pg_try_advisory_lock` rather than blocking in
/// `pg_advisory_lock`: a blocked query cannot be abandoned without a second
/// connection to cancel it, while a poll checks `interrupted()` and the
/// deadline between tries, so `docker stop` ends the wait at once, and it
/// gives the loop the chance to log progress. The price is a trivial query
/// about every second per waiting replica, and no first-come-first-served
/// order, which a handful of replicas does not need.
pub fn acquire(
    target: &LockTarget,
    resolve: Resolver<'_>,
    key: i64,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
) -> Result<MigrateLock, LockError> {
    acquire_observed(target, resolve, key, timeout, interrupted, &|_| {})
}

/// [`acquire`], telling `observe` what the wait is waiting on whenever
/// that changes or is looked up again (every few seconds): for
/// `initd status`.
pub fn acquire_observed(
    target: &LockTarget,
    resolve: Resolver<'_>,
    key: i64,
    timeout: Duration,
    interrupted: &dyn Fn() -> bool,
    observe: &dyn Fn(Waiting),
) -> Result<MigrateLock, LockError> {
    let patience = Patience::new(timeout, interrupted);
    let mut connect = |patience: &Patience<'_>| connect(target, resolve, patience);
    let session = wait_for_lock(&mut connect, key, &patience, &target.to_string(), observe)?;
    Ok(MigrateLock { session, key })
}

/// Tries every address of `target` once.
fn connect(
    target: &LockTarget,
    resolve: Resolver<'_>,
    patience: &Patience<'_>,
) -> Result<pg::Session, PgError> {
    let addrs = match target.ip() {
        Some(ip) => vec![SocketAddr::new(ip, target.port())],
        None => resolve(target.host(), target.port()).map_err(PgError::Resolve)?,
    };
    let mut last = PgError::Resolve(io::Error::new(io::ErrorKind::NotFound, "no addresses"));
    for addr in addrs {
        match pg::Session::open(target, addr, &patience.capped(ATTEMPT_TIMEOUT)) {
            Ok(session) => return Ok(session),
            // The attempt's own cap, not the caller's deadline: next address.
            Err(PgError::Stopped(Stop::TimedOut)) => {
                patience.check().map_err(PgError::Stopped)?;
                last = PgError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{addr}: no answer within {ATTEMPT_TIMEOUT:?}"),
                ));
            }
            Err(err) if err.retryable() => last = err,
            Err(err) => return Err(err),
        }
    }
    Err(last)
}

/// What the wait loop needs from a connection (a trait so the loop is
/// tested without a server).
trait Session {
    /// One `pg_try_advisory_lock`: true when the lock is now ours.
    fn try_lock(&mut self, key: i64, patience: &Patience<'_>) -> Result<bool, PgError>;
    /// Who holds the lock, if the server shows it.
    fn holder(&mut self, key: i64, patience: &Patience<'_>) -> Result<Option<Holder>, PgError>;
}

impl Session for pg::Session {
    fn try_lock(&mut self, key: i64, patience: &Patience<'_>) -> Result<bool, PgError> {
        pg::Session::try_lock(self, key, patience)
    }

    fn holder(&mut self, key: i64, patience: &Patience<'_>) -> Result<Option<Holder>, PgError> {
        pg::Session::holder(self, key, patience)
    }
}

fn wait_for_lock<S: Session>(
    connect: &mut dyn FnMut(&Patience<'_>) -> Result<S, PgError>,
    key: i64,
    patience: &Patience<'_>,
    target: &str,
    observe: &dyn Fn(Waiting),
) -> Result<S, LockError> {
    let started = Instant::now();
    let mut connect_log = Throttle::new(LOG_EVERY);
    let mut wait_log = Throttle::new(LOG_EVERY);
    let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut last_error = String::new();
    let holder_seen: std::cell::RefCell<Option<Holder>> = std::cell::RefCell::new(None);
    let stopped = |stop: Stop, connecting: bool, last_error: &str| match stop {
        Stop::Interrupted => LockError::Interrupted,
        Stop::TimedOut if connecting => LockError::Unreachable {
            target: target.to_string(),
            after: started.elapsed(),
            last: match last_error {
                "" => "no answer yet".to_string(),
                last => last.to_string(),
            },
        },
        Stop::TimedOut => LockError::LockTimeout {
            after: started.elapsed(),
            key,
            target: target.to_string(),
            holder: match &*holder_seen.borrow() {
                Some(h) => h.to_string(),
                None => "another session still holds it".to_string(),
            },
        },
    };
    loop {
        let mut session = match connect(patience) {
            Ok(session) => session,
            Err(PgError::Stopped(stop)) => return Err(stopped(stop, true, &last_error)),
            Err(err) if err.retryable() => {
                last_error = err.to_string();
                observe(Waiting::Connecting {
                    last: last_error.clone(),
                });
                if connect_log.due(Instant::now()) {
                    info!("waiting for PostgreSQL at {target}: {err}");
                }
                patience
                    .sleep(retry.next())
                    .map_err(|stop| stopped(stop, true, &last_error))?;
                continue;
            }
            Err(err) => {
                return Err(LockError::Refused {
                    target: target.to_string(),
                    message: err.to_string(),
                });
            }
        };
        retry.reset();
        let mut poll = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        loop {
            match session.try_lock(key, patience) {
                Ok(true) => {
                    if wait_log.ever() {
                        info!("took the migration lock after {:.1?}", started.elapsed());
                    } else {
                        debug!("took the migration lock");
                    }
                    return Ok(session);
                }
                Ok(false) => {
                    if wait_log.due(Instant::now()) {
                        // Looked up when the line is due, not on every
                        // poll: one more small query every few seconds.
                        let holder = match session.holder(key, patience) {
                            Ok(holder) => holder,
                            Err(PgError::Stopped(stop)) => return Err(stopped(stop, false, &last_error)),
                            Err(err) => {
                                debug!("cannot look up the lock's holder: {err}");
                                None
                            }
                        };
                        match &holder {
                            Some(h) => info!("waiting for the migration lock, {h}"),
                            None => info!("waiting for the migration lock held by another session"),
                        }
                        *holder_seen.borrow_mut() = holder.clone();
                        observe(Waiting::Held { holder });
                    }
                    patience
                        .sleep(poll.next())
                        .map_err(|stop| stopped(stop, false, &last_error))?;
                }
                Err(PgError::Stopped(stop)) => return Err(stopped(stop, false, &last_error)),
                Err(err) if err.retryable() => {
                    warn!("lost the connection while waiting for the migration lock ({err}); reconnecting");
                    last_error = err.to_string();
                    break;
                }
                Err(err) => {
                    return Err(LockError::Query {
                        message: err.to_string(),
                    });
                }
            }
        }
    }
}

/// Why a wait ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Interrupted,
    TimedOut,
}

/// The deadline and the stop request, consulted by every wait.
struct Patience<'a> {
    deadline: Option<Instant>,
    interrupted: &'a dyn Fn() -> bool,
}

impl<'a> Patience<'a> {
    fn new(timeout: Duration, interrupted: &'a dyn Fn() -> bool) -> Patience<'a> {
        Patience {
            deadline: Instant::now().checked_add(timeout),
            interrupted,
        }
    }

    /// The same stop request with a deadline no later than `cap` from now.
    fn capped(&self, cap: Duration) -> Patience<'a> {
        let cap = Instant::now().checked_add(cap);
        Patience {
            deadline: match (self.deadline, cap) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            interrupted: self.interrupted,
        }
    }

    fn check(&self) -> Result<(), Stop> {
        if (self.interrupted)() {
            Err(Stop::Interrupted)
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            Err(Stop::TimedOut)
        } else {
            Ok(())
        }
    }

    /// How long the next blocking step may take: one slice, or less near
    /// the deadline.
    fn slice(&self) -> Duration {
        match self.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        }
    }

    /// Sleeps `total` in slices, checking between them.
    fn sleep(&self, total: Duration) -> Result<(), Stop> {
        let end = Instant::now() + total;
        loop {
            self.check()?;
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            thread::sleep(left.min(self.slice()).max(Duration::from_millis(1)));
        }
    }
}

/// Doubling delays from `first` up to `max`.
struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            next: first,
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// At most one log line per period; the first one at once.
struct Throttle {
    every: Duration,
    last: Option<Instant>,
}

impl Throttle {
    fn new(every: Duration) -> Throttle {
        Throttle { every, last: None }
    }

    fn due(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.every);
        if due {
            self.last = Some(now);
        }
        due
    }

    fn ever(&self) -> bool {
        self.last.is_some()
    }
}

/// What can go wrong talking to the server, sorted by whether trying again
/// can help.
#[derive(Debug, Error)]
enum PgError {
    #[error("{0:?}")]
    Stopped(Stop),
    #[error("cannot resolve the host: {0}")]
    Resolve(io::Error),
    #[error("{0}")]
    Io(io::Error),
    /// An ErrorResponse: SQLSTATE and the server's message (which never
    /// contains the password).
    #[error("{message} (SQLSTATE {code})")]
    Server { code: String, message: String },
    #[error("{0}")]
    Protocol(String),
}

impl PgError {
    fn retryable(&self) -> bool {
        match self {
            PgError::Resolve(_) | PgError::Io(_) => true,
            PgError::Server { code, .. } => {
                // Class 08 is a connection exception; 57P01-03: the server
                // is shutting down, crashed or still starting; 53300: too
                // many connections for now.
                code.starts_with("08") || matches!(code.as_str(), "57P01" | "57P02" | "57P03" | "53300")
            }
            PgError::Stopped(_) | PgError::Protocol(_) => false,
        }
    }
}

const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::VecDeque;

    #[test]
    fn the_lock_key_never_changes() {
        // Pinned: replicas of different initd versions must agree on it.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(LOCK_KEY, fnv1a64(b"initd-migrate") as i64);
        assert_eq!(LOCK_KEY, 6_896_294_806_788_535_525);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(100));
    }

    #[test]
    fn throttle_logs_first_then_once_per_period() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(5));
        assert!(!t.ever());
        assert!(t.due(t0));
        assert!(!t.due(t0 + Duration::from_secs(4)));
        assert!(t.due(t0 + Duration::from_secs(5)));
        assert!(!t.due(t0 + Duration::from_secs(6)));
        assert!(t.ever());
    }

    #[test]
    fn retryable_errors() {
        let server = |code: &str| PgError::Server {
            code: code.into(),
            message: String::new(),
        };
        assert!(server("57P03").retryable());
        assert!(server("08006").retryable());
        assert!(server("53300").retryable());
        assert!(!server("28P01").retryable(), "a wrong password stays wrong");
        assert!(!server("3D000").retryable());
        assert!(PgError::Io(io::ErrorKind::ConnectionRefused.into()).retryable());
        assert!(!PgError::Protocol("GSSAPI".into()).retryable());
    }

    #[test]
    fn missing_or_empty_url_is_a_config_error() {
        for value in [None, Some(OsString::new())] {
            let err = target_from_env(value).unwrap_err();
            assert!(matches!(err, LockError::MissingUrl));
            assert!(err.is_config());
            assert!(err.to_string().contains("needs DATABASE_URL"), "{err}");
        }
        let t = target_from_env(Some("postgres://app:pw@db/shop".into())).unwrap();
        assert_eq!(t.host(), "db");
    }

    #[test]
    fn pgpassword_fills_in_a_url_without_a_password() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
        };
        let t = target_from_vars(&env(&[
            ("DATABASE_URL", "postgres://app@db/shop"),
            ("PGPASSWORD", "from-env"),
        ]))
        .unwrap();
        assert_eq!(t.password.as_deref(), Some("from-env"));
        assert_eq!(t.to_string(), "postgres://app:***@db:5432/shop");
        // The URL's own password wins, as in libpq.
        let t = target_from_vars(&env(&[
            ("DATABASE_URL", "postgres://app:in-url@db/shop"),
            ("PGPASSWORD", "from-env"),
        ]))
        .unwrap();
        assert_eq!(t.password.as_deref(), Some("in-url"));
        let t = target_from_vars(&env(&[
            ("DATABASE_URL", "postgres://app@db/shop"),
            ("PGPASSWORD", ""),
        ]))
        .unwrap();
        assert_eq!(t.password, None);
        let err = target_from_vars(&env(&[("PGPASSWORD", "x")])).unwrap_err();
        assert!(matches!(err, LockError::MissingUrl));
    }

    /// A scripted server: each connect pops a result; a session answers
    /// try_lock from its own script, then with `then`.
    struct Fake {
        polls: VecDeque<Result<bool, PgError>>,
        then: bool,
    }

    impl Session for Fake {
        fn try_lock(&mut self, _key: i64, patience: &Patience<'_>) -> Result<bool, PgError> {
            patience.check().map_err(PgError::Stopped)?;
            self.polls.pop_front().unwrap_or(Ok(self.then))
        }

        fn holder(&mut self, _key: i64, _patience: &Patience<'_>) -> Result<Option<Holder>, PgError> {
            Ok(Some(Holder {
                pid: 42,
                application_name: "initd migrate web-2".into(),
                client_addr: "10.0.0.5".into(),
                since: "2026-12-02T17:00:00Z".into(),
            }))
        }
    }

    fn busy(n: usize) -> Fake {
        Fake {
            polls: (0..n).map(|_| Ok(false)).collect(),
            then: true,
        }
    }

    fn held_forever() -> Fake {
        Fake {
            polls: VecDeque::new(),
            then: false,
        }
    }

    fn run(
        connects: Vec<Result<Fake, PgError>>,
        timeout: Duration,
        interrupted: &dyn Fn() -> bool,
    ) -> (Result<Fake, LockError>, usize) {
        let mut connects: VecDeque<_> = connects.into();
        let mut calls = 0;
        let mut connect = |_: &Patience<'_>| {
            calls += 1;
            connects.pop_front().unwrap_or_else(|| Ok(held_forever()))
        };
        let patience = Patience::new(timeout, interrupted);
        let result = wait_for_lock(
            &mut connect,
            LOCK_KEY,
            &patience,
            "postgres://app:***@db:5432",
            &|_| {},
        );
        (result, calls)
    }

    fn refused() -> PgError {
        PgError::Io(io::ErrorKind::ConnectionRefused.into())
    }

    const NEVER: &dyn Fn() -> bool = &|| false;

    #[test]
    fn a_free_lock_is_taken_at_once() {
        let (result, calls) = run(vec![Ok(busy(0))], Duration::from_secs(5), NEVER);
        assert!(result.is_ok());
        assert_eq!(calls, 1);
    }

    #[test]
    fn waits_while_the_lock_is_busy() {
        let (result, _) = run(vec![Ok(busy(3))], Duration::from_secs(5), NEVER);
        assert!(result.unwrap().polls.is_empty());
    }

    #[test]
    fn connection_failures_are_retried_until_one_succeeds() {
        let (result, calls) = run(
            vec![Err(refused()), Err(refused()), Ok(busy(0))],
            Duration::from_secs(5),
            NEVER,
        );
        assert!(result.is_ok());
        assert_eq!(calls, 3);
    }

    #[test]
    fn a_connection_lost_while_waiting_is_reopened() {
        let broken = Fake {
            polls: [Ok(false), Err(refused())].into(),
            then: true,
        };
        let (result, calls) = run(vec![Ok(broken), Ok(busy(0))], Duration::from_secs(5), NEVER);
        assert!(result.is_ok());
        assert_eq!(calls, 2);
    }

    #[test]
    fn a_refused_login_is_not_retried() {
        let denied = PgError::Server {
            code: "28P01".into(),
            message: "password authentication failed for user \"app\"".into(),
        };
        let (result, calls) = run(vec![Err(denied)], Duration::from_secs(5), NEVER);
        let err = result.err().unwrap();
        assert_eq!(calls, 1);
        assert_eq!(
            err.to_string(),
            "PostgreSQL at postgres://app:***@db:5432 refused the connection: \
             password authentication failed for user \"app\" (SQLSTATE 28P01)"
        );
    }

    #[test]
    fn an_unreachable_server_times_out_with_the_last_error() {
        let (result, calls) = run(
            (0..100).map(|_| Err(refused())).collect(),
            Duration::from_millis(400),
            NEVER,
        );
        let err = result.err().unwrap();
        assert!(matches!(err, LockError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert!(calls >= 2, "{calls}");
    }

    #[test]
    fn a_lock_held_too_long_times_out_naming_the_lock_and_its_holder() {
        let (result, _) = run(vec![], Duration::from_millis(300), NEVER);
        let err = result.err().unwrap();
        assert!(matches!(err, LockError::LockTimeout { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "gave up waiting for the migration lock (advisory lock {LOCK_KEY} on postgres://app:***@db:5432) after "
            )),
            "{text}"
        );
        assert!(
            text.ends_with(
                "(INITD_MIGRATE_LOCK_TIMEOUT): held by \"initd migrate web-2\" from 10.0.0.5, \
                 connected since 2026-12-02T17:00:00Z (backend pid 42)"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_wait_is_reported_as_it_goes() {
        let seen = std::cell::RefCell::new(Vec::new());
        let mut connects: VecDeque<Result<Fake, PgError>> = [Err(refused()), Ok(busy(2))].into();
        let mut connect = |_: &Patience<'_>| connects.pop_front().unwrap();
        let patience = Patience::new(Duration::from_secs(10), NEVER);
        let observe = |w: Waiting| seen.borrow_mut().push(w);
        wait_for_lock(&mut connect, LOCK_KEY, &patience, "pg", &observe).unwrap();
        let seen = seen.into_inner();
        assert!(
            matches!(&seen[0], Waiting::Connecting { last } if last.contains("refused")),
            "{seen:?}"
        );
        assert!(
            matches!(&seen[1], Waiting::Held { holder: Some(h) } if h.application_name == "initd migrate web-2"),
            "{seen:?}"
        );
    }

    #[test]
    fn the_application_name_names_the_host() {
        let name = pg::application_name();
        assert!(name.starts_with("initd migrate"), "{name}");
        assert!(name.len() <= 63);
    }

    #[test]
    fn a_stop_request_ends_the_wait_promptly() {
        let polls = Cell::new(0);
        let stop_after_three = || {
            polls.set(polls.get() + 1);
            polls.get() > 3
        };
        let started = Instant::now();
        let (result, _) = run(vec![], Duration::MAX, &stop_after_three);
        assert!(matches!(result, Err(LockError::Interrupted)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn patience_caps_and_sleeps_in_slices() {
        let p = Patience::new(Duration::MAX, NEVER);
        assert_eq!(p.deadline, None);
        assert!(p.capped(Duration::from_secs(1)).deadline.is_some());
        let p = Patience::new(Duration::from_millis(20), NEVER);
        assert_eq!(p.sleep(Duration::from_secs(10)), Err(Stop::TimedOut));
        assert!(p.slice() <= SLICE);
    }
}
