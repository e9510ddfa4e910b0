//! One PostgreSQL session over `tokio-postgres`, driven by a private
//! single-threaded runtime so the rest of initd stays synchronous.
//!
//! The socket is opened here, to an address already resolved by the caller,
//! and handed to `Config::connect_raw`: tokio-postgres' own `connect` would
//! resolve the host through `getaddrinfo`, which a static glibc binary must
//! never call (its `runtime` feature, which carries that path, is off).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;

use tokio::net::TcpSocket;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::NoTls;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::url::LockTarget;
use super::{Holder, Patience, PgError};

/// `initd migrate HOSTNAME`: the container's host name, as the kernel has
/// it (no resolver, no NSS), cut to what PostgreSQL keeps (63 bytes).
pub(super) fn application_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut name = if host.is_empty() {
        "initd migrate".to_string()
    } else {
        format!("initd migrate {host}")
    };
    // PostgreSQL keeps ASCII only in application_name.
    name.retain(|c| c.is_ascii() && !c.is_ascii_control());
    name.truncate(63);
    name
}

/// A bigint advisory lock is the pair (classid, objid) = (high, low 32
/// bits) with objsubid 1, in the current database.
fn holder_query(key: i64) -> String {
    let key = key as u64;
    let (high, low) = (key >> 32, key & 0xffff_ffff);
    format!(
        "SELECT l.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), \
         coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '') \
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = '{high}'::oid \
         AND l.objid = '{low}'::oid AND l.objsubid = 1 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1"
    )
}

/// The holder of the lock can vanish without a FIN (its host lost power);
/// the server then keeps the session, and the lock, until TCP keepalive
/// gives up on the peer: two hours by the kernel's defaults. These ask the
/// server to probe this session's socket after 30 s idle, so a dead holder
/// frees the lock in about a minute.
const KEEPALIVES: &str = "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; \
                          SET tcp_keepalives_count = 3";
/// The session sits idle for the whole migration; a server-wide
/// idle_session_timeout (PostgreSQL 14+) would end it and free the lock
/// under the running migration. A separate statement, as older servers
/// reject the name.
const NO_IDLE_TIMEOUT: &str = "SET idle_session_timeout = 0";

pub(super) struct Session {
    // Field order matters: the client and the connection task are dropped
    // before the runtime that drives them.
    client: Client,
    connection: JoinHandle<()>,
    rt: Runtime,
}

impl Session {
    pub(super) fn open(
        target: &LockTarget,
        addr: SocketAddr,
        patience: &Patience<'_>,
    ) -> Result<Session, PgError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(PgError::Io)?;
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(PgError::Io)?;
        let stream = drive(&rt, socket.connect(addr), patience)?
            .map_err(|e| PgError::Io(io::Error::new(e.kind(), format!("{addr}: {e}"))))?;
        let _ = stream.set_nodelay(true);

        let mut config = tokio_postgres::Config::new();
        // The user is always set (the URL parser insists): without one,
        // tokio-postgres would ask the OS through getpwuid_r, that is NSS.
        // No TLS: URLs that require it were refused when parsed.
        // Named so that whoever looks at pg_stat_activity (or a waiting
        // replica's `initd status`) sees which container holds the lock.
        config
            .user(target.user())
            .application_name(application_name())
            .ssl_mode(SslMode::Disable);
        if let Some(password) = &target.password {
            config.password(password);
        }
        if let Some(dbname) = target.dbname() {
            config.dbname(dbname);
        }
        let (client, connection) =
            drive(&rt, config.connect_raw(stream, NoTls), patience)?.map_err(classify)?;
        // The connection task runs whenever `drive` blocks on the runtime.
        let connection = rt.spawn(async move {
            let _ = connection.await;
        });
        let session = Session {
            client,
            connection,
            rt,
        };
        for setting in [KEEPALIVES, NO_IDLE_TIMEOUT] {
            if let Err(err) = drive(&session.rt, session.client.batch_execute(setting), patience)? {
                tracing::debug!("lock session: {setting}: {err}");
            }
        }
        Ok(session)
    }

    pub(super) fn try_lock(&mut self, key: i64, patience: &Patience<'_>) -> Result<bool, PgError> {
        self.query_bool(&format!("SELECT pg_try_advisory_lock({key})"), patience)
    }

    /// The session holding advisory lock `key` in this database, if the
    /// server shows it (pg_locks joined with pg_stat_activity; a role
    /// without pg_read_all_stats sees the application name of another
    /// role's session but not its address or start).
    pub(super) fn holder(&mut self, key: i64, patience: &Patience<'_>) -> Result<Option<Holder>, PgError> {
        let sql = holder_query(key);
        let messages = drive(&self.rt, self.client.simple_query(&sql), patience)?.map_err(classify)?;
        Ok(messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(Holder {
                pid: row.get(0).and_then(|v| v.parse().ok()).unwrap_or(0),
                application_name: row.get(1).unwrap_or_default().to_string(),
                client_addr: row.get(2).unwrap_or_default().to_string(),
                since: row.get(3).unwrap_or_default().to_string(),
            }),
            _ => None,
        }))
    }

    /// False when the server did not hold the lock for this session.
    pub(super) fn unlock(&mut self, key: i64, patience: &Patience<'_>) -> Result<bool, PgError> {
        self.query_bool(&format!("SELECT pg_advisory_unlock({key})"), patience)
    }

    /// Ends the session with a Terminate message, so the server does not log
    /// an unexpected EOF.
    pub(super) fn close(self, patience: &Patience<'_>) {
        let Session {
            client,
            connection,
            rt,
        } = self;
        drop(client);
        let _ = drive(&rt, connection, patience);
    }

    fn query_bool(&mut self, sql: &str, patience: &Patience<'_>) -> Result<bool, PgError> {
        let messages = drive(&self.rt, self.client.simple_query(sql), patience)?.map_err(classify)?;
        messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "t"),
                _ => None,
            })
            .ok_or_else(|| PgError::Protocol(format!("no boolean answer to {sql}")))
    }
}

/// Runs `fut` on `rt` in short slices, checking the deadline and the stop
/// request between them.
fn drive<F: Future>(rt: &Runtime, fut: F, patience: &Patience<'_>) -> Result<F::Output, PgError> {
    let mut fut = pin!(fut);
    loop {
        patience.check().map_err(PgError::Stopped)?;
        let slice = patience.slice();
        // The timer must be made inside the runtime, hence the async block.
        if let Ok(out) = rt.block_on(async { tokio::time::timeout(slice, fut.as_mut()).await }) {
            return Ok(out);
        }
    }
}

fn classify(err: tokio_postgres::Error) -> PgError {
    if let Some(db) = err.as_db_error() {
        return PgError::Server {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
        };
    }
    if err.is_closed() {
        return PgError::Io(io::Error::new(io::ErrorKind::ConnectionReset, err.to_string()));
    }
    match std::error::Error::source(&err).and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(io) => PgError::Io(io::Error::new(io.kind(), err.to_string())),
        None => PgError::Protocol(err.to_string()),
    }
}
