//! One PostgreSQL session, synchronous, over a std TCP socket: the
//! messages come from `postgres-protocol` (the wire codec, md5 and SCRAM),
//! the I/O is ours. A lock taken once per container start needs no async
//! runtime, and without one the wait stays a plain loop that looks at the
//! deadline and the stop request between short blocking steps.
//!
//! The socket goes to an address the caller has already resolved: nothing
//! here calls `getaddrinfo` (a static glibc binary must not use NSS), and the
//! user name always comes from the URL, never from `getpwuid`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;

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

/// One row of a simple query's answer, text columns (`None`: SQL NULL).
type Row = Vec<Option<String>>;

pub(super) struct Session {
    stream: TcpStream,
    /// Bytes read and not yet parsed into messages.
    inbox: BytesMut,
    /// The message being sent.
    outbox: BytesMut,
}

impl Session {
    pub(super) fn open(
        target: &LockTarget,
        addr: SocketAddr,
        patience: &Patience<'_>,
    ) -> Result<Session, PgError> {
        let stream = connect(addr, patience).map_err(|err| match err {
            PgError::Io(e) => PgError::Io(io::Error::new(e.kind(), format!("{addr}: {e}"))),
            other => other,
        })?;
        let mut session = Session {
            stream,
            inbox: BytesMut::with_capacity(4096),
            outbox: BytesMut::with_capacity(256),
        };
        session.start(target, patience)?;
        for setting in [KEEPALIVES, NO_IDLE_TIMEOUT] {
            match session.simple_query(setting, patience) {
                Ok(_) => {}
                // An older server without the setting: the lock works without it.
                Err(PgError::Server { code, message }) => {
                    tracing::debug!("lock session: {setting}: {message} (SQLSTATE {code})");
                }
                Err(err) => return Err(err),
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
        let rows = self.simple_query(&holder_query(key), patience)?;
        Ok(rows.into_iter().next().map(|row| {
            let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            Holder {
                pid: text(0).parse().unwrap_or(0),
                application_name: text(1),
                client_addr: text(2),
                since: text(3),
            }
        }))
    }

    /// False when the server did not hold the lock for this session.
    pub(super) fn unlock(&mut self, key: i64, patience: &Patience<'_>) -> Result<bool, PgError> {
        self.query_bool(&format!("SELECT pg_advisory_unlock({key})"), patience)
    }

    /// Ends the session with a Terminate message, so the server does not log
    /// an unexpected EOF. The socket closes when `self` is dropped.
    pub(super) fn close(mut self, patience: &Patience<'_>) {
        self.outbox.clear();
        frontend::terminate(&mut self.outbox);
        let _ = self.send(patience);
    }

    /// The startup message, the authentication exchange, and the server's
    /// parameters up to its first ReadyForQuery.
    fn start(&mut self, target: &LockTarget, patience: &Patience<'_>) -> Result<(), PgError> {
        let application_name = application_name();
        // Named so that whoever looks at pg_stat_activity (or a waiting
        // replica's `initd status`) sees which container holds the lock.
        let mut params = vec![
            ("user", target.user()),
            ("application_name", application_name.as_str()),
            ("client_encoding", "UTF8"),
        ];
        if let Some(dbname) = target.dbname() {
            params.push(("database", dbname));
        }
        self.outbox.clear();
        frontend::startup_message(params, &mut self.outbox).map_err(encode)?;
        self.send(patience)?;

        let password = || {
            target.password.as_deref().map(str::as_bytes).ok_or_else(|| {
                PgError::Protocol(
                    "the server asks for a password and neither DATABASE_URL nor PGPASSWORD gives one".into(),
                )
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            self.outbox.clear();
            match self.receive(patience)? {
                Message::AuthenticationOk => break,
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?, &mut self.outbox).map_err(encode)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(target.user().as_bytes(), password()?, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut self.outbox).map_err(encode)?;
                }
                Message::AuthenticationSasl(body) => {
                    let offered: Vec<String> = body
                        .mechanisms()
                        .map(|m| Ok(m.to_string()))
                        .collect()
                        .map_err(bad_message)?;
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(PgError::Protocol(format!(
                            "the server offers SASL mechanisms {offered:?}, initd speaks {SCRAM_SHA_256} \
                             without TLS only"
                        )));
                    }
                    // No TLS, so no channel binding ("n,," in SCRAM terms).
                    let state = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, state.message(), &mut self.outbox)
                        .map_err(encode)?;
                    scram = Some(state);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let state = scram.as_mut().ok_or_else(|| out_of_order("SASL continue"))?;
                    state.update(body.data()).map_err(scram_failed)?;
                    frontend::sasl_response(state.message(), &mut self.outbox).map_err(encode)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let state = scram.as_mut().ok_or_else(|| out_of_order("SASL final"))?;
                    // Checks the server's signature: it knew the password too.
                    state.finish(body.data()).map_err(scram_failed)?;
                }
                Message::AuthenticationGss
                | Message::AuthenticationGssContinue(_)
                | Message::AuthenticationKerberosV5
                | Message::AuthenticationScmCredential
                | Message::AuthenticationSspi => {
                    return Err(PgError::Protocol(
                        "the server asks for GSSAPI, SSPI or Kerberos authentication, which initd does \
                         not speak; give this user password authentication (scram-sha-256 or md5) in \
                         pg_hba.conf"
                            .into(),
                    ));
                }
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                Message::NoticeResponse(_) => {}
                _ => return Err(out_of_order("message during authentication")),
            }
            if !self.outbox.is_empty() {
                self.send(patience)?;
            }
        }
        loop {
            match self.receive(patience)? {
                Message::ReadyForQuery(_) => return Ok(()),
                Message::ParameterStatus(_) | Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ErrorResponse(body) => return Err(server_error(body.fields())),
                _ => return Err(out_of_order("message after authentication")),
            }
        }
    }

    /// One simple-protocol query (several statements allowed): the rows of
    /// its answer, or the server's error once it is ready again.
    fn simple_query(&mut self, sql: &str, patience: &Patience<'_>) -> Result<Vec<Row>, PgError> {
        self.outbox.clear();
        frontend::query(sql, &mut self.outbox).map_err(encode)?;
        self.send(patience)?;
        let mut rows = Vec::new();
        let mut failed = None;
        loop {
            match self.receive(patience)? {
                Message::DataRow(body) => {
                    let buffer = body.buffer();
                    let row = body
                        .ranges()
                        .map(|range| Ok(range.map(|r| String::from_utf8_lossy(&buffer[r]).into_owned())))
                        .collect()
                        .map_err(bad_message)?;
                    rows.push(row);
                }
                Message::ErrorResponse(body) => failed = Some(server_error(body.fields())),
                // The session stays in step: the answer ends with ReadyForQuery
                // even after an error.
                Message::ReadyForQuery(_) => return failed.map_or(Ok(rows), Err),
                Message::RowDescription(_)
                | Message::CommandComplete(_)
                | Message::EmptyQueryResponse
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_) => {}
                _ => return Err(out_of_order("message in a query's answer")),
            }
        }
    }

    fn query_bool(&mut self, sql: &str, patience: &Patience<'_>) -> Result<bool, PgError> {
        let rows = self.simple_query(sql, patience)?;
        match rows.first().and_then(|row| row.first()) {
            Some(Some(value)) => Ok(value == "t"),
            _ => Err(PgError::Protocol(format!("no boolean answer to {sql}"))),
        }
    }

    /// Writes the outbox, in slices so the deadline and a stop are seen.
    fn send(&mut self, patience: &Patience<'_>) -> Result<(), PgError> {
        let mut sent = 0;
        while sent < self.outbox.len() {
            patience.check().map_err(PgError::Stopped)?;
            self.stream
                .set_write_timeout(Some(step(patience)))
                .map_err(PgError::Io)?;
            match self.stream.write(&self.outbox[sent..]) {
                Ok(0) => return Err(closed()),
                Ok(n) => sent += n,
                Err(e) if waiting(&e) => {}
                Err(e) => return Err(PgError::Io(e)),
            }
        }
        Ok(())
    }

    /// The next message from the server, reading in slices so the deadline
    /// and a stop are seen.
    fn receive(&mut self, patience: &Patience<'_>) -> Result<Message, PgError> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(message) = Message::parse(&mut self.inbox).map_err(bad_message)? {
                return Ok(message);
            }
            patience.check().map_err(PgError::Stopped)?;
            self.stream
                .set_read_timeout(Some(step(patience)))
                .map_err(PgError::Io)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(closed()),
                Ok(n) => self.inbox.extend_from_slice(&chunk[..n]),
                Err(e) if waiting(&e) => {}
                Err(e) => return Err(PgError::Io(e)),
            }
        }
    }
}

/// A TCP connection to `addr`, made without blocking past one slice at a
/// time: a host that drops the SYN must not delay a stop.
fn connect(addr: SocketAddr, patience: &Patience<'_>) -> Result<TcpStream, PgError> {
    let os = |e: Errno| PgError::Io(io::Error::from(e));
    let (stream, connected) = crate::net::netio::start_connect(addr).map_err(PgError::Io)?;
    if !connected {
        loop {
            patience.check().map_err(PgError::Stopped)?;
            let ms = u16::try_from(step(patience).as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(Errno::EINTR) => {}
                Ok(_) => break,
                Err(e) => return Err(os(e)),
            }
        }
    }
    if let Some(err) = stream.take_error().map_err(PgError::Io)? {
        return Err(PgError::Io(err));
    }
    stream.set_nonblocking(false).map_err(PgError::Io)?;
    // Each query is one small message answered at once.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One blocking step: the patience's slice, never zero (a zero socket
/// timeout means "none").
fn step(patience: &Patience<'_>) -> Duration {
    patience.slice().max(Duration::from_millis(1))
}

/// A socket timeout that ended a slice, or a signal: not an error.
fn waiting(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn closed() -> PgError {
    PgError::Io(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection",
    ))
}

/// Only a message too large for the protocol fails to encode.
fn encode(err: io::Error) -> PgError {
    PgError::Protocol(format!("cannot encode a message: {err}"))
}

fn bad_message(err: io::Error) -> PgError {
    PgError::Protocol(format!("malformed message from the server: {err}"))
}

fn out_of_order(what: &str) -> PgError {
    PgError::Protocol(format!("unexpected {what} from the server"))
}

fn scram_failed(err: io::Error) -> PgError {
    PgError::Protocol(format!("SCRAM authentication failed: {err}"))
}

/// An ErrorResponse as SQLSTATE and message (the server never echoes a
/// password in either).
fn server_error(mut fields: ErrorFields<'_>) -> PgError {
    let (mut code, mut message) = (String::new(), String::new());
    while let Ok(Some(field)) = fields.next() {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    PgError::Server { code, message }
}

#[cfg(test)]
mod tests {
    use super::super::Stop;
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// One backend message: tag, length, body.
    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn auth(code: i32, extra: &[u8]) -> Vec<u8> {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(extra);
        msg(b'R', &body)
    }

    fn ready() -> Vec<u8> {
        msg(b'Z', b"I")
    }

    fn error(code: &str, message: &str) -> Vec<u8> {
        let body = format!("SERROR\0C{code}\0M{message}\0\0");
        msg(b'E', body.as_bytes())
    }

    /// A DataRow; `None` is SQL NULL.
    fn row(values: &[Option<&str>]) -> Vec<u8> {
        let mut body = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v.as_bytes());
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        msg(b'D', &body)
    }

    fn answer(rows: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = rows.concat();
        out.extend(msg(b'C', b"SELECT 1\0"));
        out.extend(ready());
        out
    }

    /// Reads one frontend message (the startup message has no tag).
    fn read_message(stream: &mut TcpStream, tagged: bool) -> (u8, Vec<u8>) {
        let mut tag = [0u8; 1];
        if tagged {
            stream.read_exact(&mut tag).unwrap();
        }
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize - 4];
        stream.read_exact(&mut body).unwrap();
        (tag[0], body)
    }

    /// A scripted server: after the startup message, each step is what it
    /// reads (a tag, or 0 for nothing) and then what it writes; it returns
    /// the bodies it read.
    fn serve(script: Vec<(u8, Vec<u8>)>) -> (SocketAddr, thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = vec![read_message(&mut stream, false).1];
            for (expect, reply) in script {
                if expect != 0 {
                    let (tag, body) = read_message(&mut stream, true);
                    assert_eq!(tag as char, expect as char);
                    seen.push(body);
                }
                stream.write_all(&reply).unwrap();
            }
            seen
        });
        (addr, server)
    }

    fn target(url: &str) -> LockTarget {
        super::super::parse_database_url(url).unwrap()
    }

    const NEVER: &dyn Fn() -> bool = &|| false;

    fn patience() -> Patience<'static> {
        Patience::new(Duration::from_secs(20), NEVER)
    }

    fn settings_ok() -> Vec<(u8, Vec<u8>)> {
        vec![(b'Q', answer(&[])), (b'Q', answer(&[]))]
    }

    #[test]
    fn trust_login_then_a_lock_and_its_holder() {
        let mut script = vec![(
            0,
            [auth(0, b""), msg(b'S', b"server_version\x0016\0"), ready()].concat(),
        )];
        script.extend(settings_ok());
        script.push((b'Q', answer(&[row(&[Some("t")])])));
        script.push((
            b'Q',
            answer(&[row(&[
                Some("42"),
                Some("initd migrate web-2"),
                None,
                Some("2026-12-02T17:00:00Z"),
            ])]),
        ));
        let (addr, server) = serve(script);
        let mut session = Session::open(&target("postgres://app@127.0.0.1/shop"), addr, &patience()).unwrap();
        assert!(session.try_lock(7, &patience()).unwrap());
        let holder = session.holder(7, &patience()).unwrap().unwrap();
        assert_eq!(
            holder,
            Holder {
                pid: 42,
                application_name: "initd migrate web-2".into(),
                client_addr: String::new(),
                since: "2026-12-02T17:00:00Z".into(),
            }
        );
        let seen = server.join().unwrap();
        let startup = String::from_utf8_lossy(&seen[0]);
        for part in [
            "user\0app\0",
            "database\0shop\0",
            "application_name\0initd migrate",
        ] {
            assert!(startup.contains(part), "{startup:?}");
        }
        assert!(String::from_utf8_lossy(&seen[1]).contains("tcp_keepalives_idle"));
        assert_eq!(seen[3], b"SELECT pg_try_advisory_lock(7)\0");
    }

    #[test]
    fn cleartext_and_md5_passwords_are_sent_as_asked() {
        let mut script = vec![(0, auth(3, b"")), (b'p', [auth(0, b""), ready()].concat())];
        script.extend(settings_ok());
        let (addr, server) = serve(script);
        Session::open(&target("postgres://app:s3cret@127.0.0.1/shop"), addr, &patience()).unwrap();
        assert_eq!(server.join().unwrap()[1], b"s3cret\0");

        let mut script = vec![(0, auth(5, b"salt")), (b'p', [auth(0, b""), ready()].concat())];
        script.extend(settings_ok());
        let (addr, server) = serve(script);
        Session::open(&target("postgres://app:s3cret@127.0.0.1/shop"), addr, &patience()).unwrap();
        let sent = server.join().unwrap()[1].clone();
        let expected = md5_hash(b"app", b"s3cret", *b"salt");
        assert_eq!(sent, [expected.as_bytes(), b"\0"].concat());
        assert!(expected.starts_with("md5"));
    }

    #[test]
    fn a_password_request_without_a_password_is_refused() {
        let (addr, _server) = serve(vec![(0, auth(3, b""))]);
        let err = Session::open(&target("postgres://app@127.0.0.1/shop"), addr, &patience())
            .err()
            .unwrap();
        assert!(matches!(err, PgError::Protocol(_)), "{err}");
        assert!(err.to_string().contains("PGPASSWORD"), "{err}");
    }

    #[test]
    fn a_login_error_carries_its_sqlstate() {
        let (addr, _server) = serve(vec![(0, error("57P03", "the database system is starting up"))]);
        let err = Session::open(&target("postgres://app@127.0.0.1/shop"), addr, &patience())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "the database system is starting up (SQLSTATE 57P03)"
        );
        assert!(err.retryable());
    }

    #[test]
    fn an_unsupported_mechanism_is_named() {
        let (addr, _server) = serve(vec![(0, auth(7, b""))]);
        let err = Session::open(&target("postgres://app:pw@127.0.0.1/shop"), addr, &patience())
            .err()
            .unwrap();
        assert!(err.to_string().contains("GSSAPI"), "{err}");
        assert!(!err.retryable());
    }

    #[test]
    fn a_query_error_leaves_the_session_usable() {
        let mut script = vec![(0, [auth(0, b""), ready()].concat())];
        // The first setting is refused, as an old server would.
        script.push((
            b'Q',
            [error("42704", "unrecognized configuration parameter"), ready()].concat(),
        ));
        script.push((b'Q', answer(&[])));
        script.push((b'Q', [error("XX000", "boom"), ready()].concat()));
        script.push((b'Q', answer(&[row(&[Some("f")])])));
        let (addr, _server) = serve(script);
        let mut session = Session::open(&target("postgres://app@127.0.0.1/shop"), addr, &patience()).unwrap();
        let err = session.try_lock(7, &patience()).unwrap_err();
        assert!(
            matches!(&err, PgError::Server { code, .. } if code == "XX000"),
            "{err}"
        );
        assert!(!session.unlock(7, &patience()).unwrap());
    }

    #[test]
    fn a_closed_connection_is_a_retryable_io_error() {
        let (addr, server) = serve(vec![]);
        let err = Session::open(&target("postgres://app@127.0.0.1/shop"), addr, &patience())
            .err()
            .unwrap();
        server.join().unwrap();
        assert!(matches!(err, PgError::Io(_)), "{err}");
        assert!(err.retryable());
    }

    #[test]
    fn a_silent_server_gives_way_to_a_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let checks = std::cell::Cell::new(0);
        let stop_later = || {
            checks.set(checks.get() + 1);
            checks.get() > 5
        };
        let patience = Patience::new(Duration::MAX, &stop_later);
        let err = Session::open(&target("postgres://app@127.0.0.1/shop"), addr, &patience)
            .err()
            .unwrap();
        assert!(matches!(err, PgError::Stopped(Stop::Interrupted)), "{err}");
    }
}
