//! Serving the control socket: one poll(2) loop over the listening socket,
//! every open connection and the probe run in progress, with no runtime
//! and no thread per client.
//!
//! Each connection has a deadline for its request and one for taking the
//! answer; a request is at most a few hundred bytes. A check that needs the
//! probe waits for the run in progress if there is one, so a thousand
//! checks at once make one probe run, not a thousand. An HTTP or TCP probe
//! of an IP address is one more socket in the same poll (the probe client
//! of `netprobe`); one of a host name first resolves it in the same poll
//! (the resolver's non-blocking lookup: /etc/hosts answers at once, a DNS
//! query is one more socket), then probes its addresses in turn. A command probe (`cmdprobe`) is a child this source starts and
//! the supervisor's loop reaps and hands back. With no connection and no probe the loop sleeps in poll
//! with no timeout.
//!
//! [`ControlLoop`] is a [`Source`] of the supervisor's loop: PID 1 serves
//! the socket itself, with no thread. Nothing a client does can hold it
//! up: every socket is non-blocking, every read and write is one try, and
//! each connection has deadlines, and so has every step of a probe.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::PollFlags;
#[cfg(test)]
use nix::poll::{PollFd, poll};
use nix::sys::socket::{self, MsgFlags, SockFlag};
use nix::unistd::Pid;
use tracing::{debug, warn};

use crate::config::Health;
use crate::health::cmdprobe;
use crate::health::probe::{self as health, Outcome, Probe};
use crate::health::protocol::{
    self, Frame, LockHolderReport, LockReport, ProbeReport, ProcessReport, Report, Request, RequestError,
};
use crate::net::dns::{Lookup, Resolver};
use crate::net::netprobe::Exchange;
use crate::net::waitfor::Target;
use crate::pid1::source;
use crate::pid1::status::Status;
use crate::pipeline::secrets::Redactor;
use crate::units::human_duration as human;

/// A client has this long to send its request after connecting.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// And this long to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// After answering, what is left of an overlong request is read and
/// dropped (closing a Unix socket with unread input resets the peer, which
/// would then see an error instead of the answer's end), up to this much
/// and for at most [`READ_TIMEOUT`].
const DRAIN_LIMIT: usize = 4 << 20;
/// Connections served at once; more get a one-line "busy" error (which
/// `initd check` asks again after) and are closed. Far above any real load
/// (a check every few seconds, a person running `initd status`), low
/// enough that a flood holds at most a few megabytes and a thousand
/// descriptors of PID 1's.
pub const MAX_CONNECTIONS: usize = 1024;
/// After a burst of more connections than this, the memory it took is
/// handed back to the system once the last one is gone (glibc keeps freed
/// memory otherwise, and PID 1 lives as long as the container).
const TRIM_AFTER: usize = 64;
/// How long accepting pauses after an error such as running out of
/// descriptors, rather than spinning on a listener that stays readable.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
/// Connections taken per wake-up, so that a flood cannot starve the ones
/// already open.
const ACCEPT_BATCH: usize = 256;

/// The most of a probe's detail (an HTTP reason phrase, a command's last
/// line of output) an answer shows.
const DETAIL_CHARS: usize = 256;

/// Everything a check's answer is made of.
pub struct Server {
    status: Arc<Status>,
    probe: Probe,
    probe_timeout: Duration,
    /// The command of a `cmd:` probe, once initd runs as the app user.
    cmd: Option<cmdprobe::Spec>,
    redactor: Arc<Redactor>,
}

impl Server {
    pub fn new(
        status: Arc<Status>,
        settings: &Health,
        cmd: Option<cmdprobe::Spec>,
        redactor: Arc<Redactor>,
    ) -> Arc<Server> {
        Arc::new(Server {
            status,
            probe: settings.probe.clone(),
            probe_timeout: settings.probe_timeout,
            cmd,
            redactor,
        })
    }

    /// Whether a check asked now runs the probe.
    fn wants_probe(&self) -> bool {
        health::wants_probe(&self.status.snapshot(), &self.probe)
    }

    /// The answer to `check`, for the state now and the probe's outcome if
    /// it ran (a stop may have come while it ran: the answer is for now).
    fn report(&self, outcome: Option<Outcome>) -> Report {
        let snap = self.status.snapshot();
        let redact = |text: &str| self.redactor.redact(text).into_owned();
        // Masked before it is cut: a cut could leave a piece of a secret
        // that would no longer be recognised.
        let outcome = outcome.map(|o| Outcome {
            detail: shorten(&redact(&o.detail)),
            ..o
        });
        let verdict = health::assess(&snap, &self.probe, outcome.as_ref());
        Report {
            protocol: protocol::VERSION,
            healthy: verdict.healthy,
            state: verdict.state.to_string(),
            reason: redact(&verdict.reason),
            uptime_ms: snap.uptime.as_millis() as u64,
            main_pid: snap.main_pid,
            main_restarts: snap.main_restarts,
            probe: outcome.map(|o| ProbeReport {
                probe: redact(&self.probe.to_string()),
                ok: o.ok,
                detail: o.detail,
                took_ms: o.took.as_millis() as u64,
            }),
            processes: snap
                .processes
                .iter()
                .map(|p| ProcessReport {
                    name: p.name.clone(),
                    pid: p.pid,
                    restarts: p.restarts,
                    note: redact(&p.note),
                })
                .collect(),
            role: snap.role.clone(),
            lock: snap.lock_wait.as_ref().map(|w| LockReport {
                lock: redact(&w.lock),
                detail: redact(&w.detail),
                waited_ms: w.since.map_or(0, |t| t.elapsed().as_millis() as u64),
                holder: w.holder.as_ref().map(|h| LockHolderReport {
                    pid: h.pid,
                    application_name: h.application_name.clone(),
                    client_addr: h.client_addr.clone(),
                    since: h.since.clone(),
                }),
            }),
        }
    }
}

/// A probe's detail cut to [`DETAIL_CHARS`].
fn shorten(detail: &str) -> String {
    match detail.char_indices().nth(DETAIL_CHARS) {
        Some((end, _)) => format!("{}...", &detail[..end]),
        None => detail.to_string(),
    }
}

fn failed(detail: &str, took: Duration) -> Outcome {
    Outcome {
        ok: false,
        detail: detail.into(),
        took,
    }
}

/// Where a connection is.
enum State {
    /// Reading the request line (at most [`protocol::MAX_REQUEST`] bytes).
    Reading {
        buf: Vec<u8>,
    },
    /// Waiting for the probe run in progress.
    Waiting,
    Writing {
        answer: Vec<u8>,
        sent: usize,
    },
    /// Answered; reading what is left of the request until the client closes.
    Draining {
        total: usize,
    },
}

struct Conn {
    stream: UnixStream,
    state: State,
    /// When the step in progress gives up: none while the probe runs, which
    /// has a deadline of its own.
    deadline: Option<Instant>,
}

impl Conn {
    fn events(&self) -> PollFlags {
        match self.state {
            State::Reading { .. } | State::Draining { .. } => PollFlags::POLLIN,
            State::Writing { .. } => PollFlags::POLLOUT,
            State::Waiting => PollFlags::empty(),
        }
    }
}

/// What a connection needs after a step.
enum Next {
    Keep,
    Close,
    /// Its request needs the probe's outcome.
    Probe,
}

/// Where the probe run's outcome comes from.
enum Source {
    /// An HTTP or TCP probe of an IP address, in this loop.
    Net(Exchange),
    /// An HTTP or TCP probe of a host name: its lookup, then its
    /// addresses, in this loop.
    Named(Box<Named>),
    /// A command probe: a child of initd's, reaped by the supervisor's
    /// loop, which hands its end to [`source::Source::reaped`].
    Cmd(cmdprobe::Run),
}

struct ProbeRun {
    started: Instant,
    deadline: Instant,
    source: Source,
}

/// The control socket's event source.
pub struct ControlLoop {
    listener: UnixListener,
    server: Arc<Server>,
    conns: Vec<Conn>,
    run: Option<ProbeRun>,
    /// The most connections open at once since the last trim.
    peak: usize,
    accept_paused: Option<Instant>,
    warned: bool,
}

impl ControlLoop {
    pub fn new(listener: UnixListener, server: Arc<Server>) -> io::Result<ControlLoop> {
        listener.set_nonblocking(true)?;
        Ok(ControlLoop {
            listener,
            server,
            conns: Vec::new(),
            run: None,
            peak: 0,
            accept_paused: None,
            warned: false,
        })
    }

    /// The descriptors to poll and for what: the listener first, then the
    /// probe run's if there is one, then every connection's.
    /// [`ControlLoop::on_ready`] takes their events in this order.
    pub fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut fds = Vec::with_capacity(2 + self.conns.len());
        let listen = match self.accept_paused {
            Some(_) => PollFlags::empty(),
            None => PollFlags::POLLIN,
        };
        fds.push((self.listener.as_fd(), listen));
        fds.extend(self.run_fd());
        fds.extend(self.conns.iter().map(|c| (c.stream.as_fd(), c.events())));
        fds
    }

    /// The earliest moment something times out; `None`: nothing will
    /// without an event.
    pub fn deadline(&self) -> Option<Instant> {
        let run = self.run.as_ref().map(|r| match &r.source {
            Source::Net(exchange) => r.deadline.min(exchange.deadline()),
            Source::Named(named) => named.deadline().map_or(r.deadline, |d| d.min(r.deadline)),
            Source::Cmd(_) => r.deadline,
        });
        self.conns
            .iter()
            .filter_map(|c| c.deadline)
            .chain(run)
            .chain(self.accept_paused)
            .min()
    }

    /// Handles what poll reported for [`ControlLoop::fds`] (`revents` in
    /// the same order) and whatever has timed out by `now`.
    /// A command probe it starts goes into `started`.
    pub fn on_ready(&mut self, now: Instant, revents: &[PollFlags], started: &mut Vec<Pid>) {
        let event = |i: usize| revents.get(i).copied().unwrap_or(PollFlags::empty());
        let listener_ready = !event(0).is_empty();
        let (run_ready, first_conn) = match self.run_fd() {
            Some(_) => (!event(1).is_empty(), 2),
            None => (false, 1),
        };
        // The connections first: their events are in the order they were
        // in when polled.
        let mut wants_probe = false;
        let conns = std::mem::take(&mut self.conns);
        for (i, mut conn) in conns.into_iter().enumerate() {
            match step(&mut conn, &self.server, now, event(first_conn + i)) {
                Next::Keep => self.conns.push(conn),
                Next::Close => {}
                Next::Probe => {
                    wants_probe = true;
                    self.conns.push(conn);
                }
            }
        }
        if let Some(outcome) = self.progress_run(now, run_ready) {
            self.answer_waiting(now, outcome);
        }
        if wants_probe && self.run.is_none() {
            match self.start_run(now) {
                Ok(run) => {
                    if let Source::Cmd(cmd) = &run.source {
                        started.push(cmd.pid());
                    }
                    self.run = Some(run);
                    if let Some(outcome) = self.progress_run(now, false) {
                        self.answer_waiting(now, outcome);
                    }
                }
                Err(outcome) => self.answer_waiting(now, outcome),
            }
        }
        if self.accept_paused.is_some_and(|until| now >= until) {
            self.accept_paused = None;
        }
        if listener_ready && self.accept_paused.is_none() {
            self.accept(now);
        }
        self.peak = self.peak.max(self.conns.len());
        if self.conns.is_empty() && self.peak > 0 {
            if self.peak > TRIM_AFTER {
                self.conns = Vec::new();
                give_back_memory();
            }
            self.peak = 0;
        }
    }

    /// One round of a loop of its own, as the supervisor's would: waits
    /// in poll(2) for an event or `timeout`, then handles what happened.
    #[cfg(test)]
    pub(crate) fn poll_and_serve(&mut self, timeout: nix::poll::PollTimeout) -> io::Result<()> {
        let revents: Vec<PollFlags> = {
            let mut fds: Vec<PollFd> = self
                .fds()
                .into_iter()
                .map(|(fd, events)| PollFd::new(fd, events))
                .collect();
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .map(|fd| fd.revents().unwrap_or(PollFlags::POLLERR))
                .collect()
        };
        let mut started = Vec::new();
        self.on_ready(Instant::now(), &revents, &mut started);
        // A command probe is the test's to wait for.
        for pid in started {
            let fate = match nix::sys::wait::waitpid(pid, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => crate::pid1::exit::Fate::Exited(code),
                other => panic!("the probe ended as {other:?}"),
            };
            self.reaped(Instant::now(), pid, fate);
        }
        Ok(())
    }

    fn run_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        match &self.run.as_ref()?.source {
            Source::Net(exchange) => exchange.fd().map(|fd| (fd, exchange.events())),
            Source::Named(named) => named.fd(),
            // Its end comes from the supervisor's reaping.
            Source::Cmd(_) => None,
        }
    }

    /// Starts a probe run, or says at once why none can run.
    fn start_run(&self, now: Instant) -> Result<ProbeRun, Outcome> {
        let timeout = self.server.probe_timeout;
        match &self.server.probe {
            Probe::Http(target) | Probe::Tcp(target) if health::literal_addr(target).is_some() => {
                let addr = health::literal_addr(target).expect("checked by the guard");
                Ok(ProbeRun {
                    started: now,
                    deadline: now + timeout,
                    source: Source::Net(health::start_probe(target, addr, timeout, now)),
                })
            }
            Probe::Http(target) | Probe::Tcp(target) => Ok(ProbeRun {
                started: now,
                deadline: now + timeout,
                source: Source::Named(Box::new(Named::start(target, timeout, now))),
            }),
            Probe::Cmd(_) => match &self.server.cmd {
                Some(spec) => match cmdprobe::Run::start(spec) {
                    Ok(run) => Ok(ProbeRun {
                        started: now,
                        deadline: now + timeout,
                        source: Source::Cmd(run),
                    }),
                    Err(detail) => Err(failed(&detail, Duration::ZERO)),
                },
                None => Err(failed("the probe command is not set up yet", Duration::ZERO)),
            },
            // Never asked for (see `health::wants_probe`), answered anyway.
            Probe::Alive => Err(Outcome {
                ok: true,
                detail: "alive".into(),
                took: Duration::ZERO,
            }),
        }
    }

    /// The run's outcome, once there is one; the run is over then.
    fn progress_run(&mut self, now: Instant, ready: bool) -> Option<Outcome> {
        let run = self.run.as_mut()?;
        let took = now - run.started;
        let timeout = self.server.probe_timeout;
        let late = || failed(&format!("no answer within {}", human(timeout)), took);
        let outcome = match &mut run.source {
            Source::Net(exchange) => {
                if exchange.outcome().is_none() && now >= run.deadline {
                    Some(late())
                } else {
                    exchange.advance(now, ready);
                    exchange.outcome().map(|result| Outcome {
                        ok: result.is_ok(),
                        detail: match result {
                            Ok(seen) | Err(seen) => seen.clone(),
                        },
                        took,
                    })
                }
            }
            Source::Named(named) => match named.advance(now, ready, run.deadline) {
                Some(result) => Some(Outcome {
                    ok: result.is_ok(),
                    detail: match result {
                        Ok(seen) | Err(seen) => seen,
                    },
                    took,
                }),
                None => (now >= run.deadline).then(late),
            },
            Source::Cmd(cmd) if now >= run.deadline => {
                cmd.kill();
                Some(failed(
                    &format!("no answer within {} (INITD_HEALTH_TIMEOUT)", human(timeout)),
                    took,
                ))
            }
            Source::Cmd(_) => None,
        };
        if outcome.is_some() {
            // Checks arriving from now on start a new run.
            self.run = None;
        }
        outcome
    }

    /// The command probe `pid` ended: the checks waiting for it are
    /// answered. One killed for its time was answered then.
    pub fn reaped(&mut self, now: Instant, pid: Pid, fate: crate::pid1::exit::Fate) {
        let Some(run) = self
            .run
            .take_if(|r| matches!(&r.source, Source::Cmd(cmd) if cmd.pid() == pid))
        else {
            return;
        };
        let Source::Cmd(cmd) = run.source else {
            unreachable!("taken only for a command probe")
        };
        let (ok, detail) = cmd.ended(fate, &self.server.redactor);
        let outcome = Outcome {
            ok,
            detail,
            took: now - run.started,
        };
        self.answer_waiting(now, outcome);
    }

    /// Answers every check that waited for the probe.
    fn answer_waiting(&mut self, now: Instant, outcome: Outcome) {
        let answer = protocol::encode(&self.server.report(Some(outcome)));
        let server = self.server.clone();
        self.conns.retain_mut(|conn| {
            if !matches!(conn.state, State::Waiting) {
                return true;
            }
            conn.state = State::Writing {
                answer: answer.clone(),
                sent: 0,
            };
            conn.deadline = Some(now + WRITE_TIMEOUT);
            !matches!(step(conn, &server, now, PollFlags::POLLOUT), Next::Close)
        });
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BATCH {
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            match socket::accept4(self.listener.as_raw_fd(), flags) {
                Ok(fd) => {
                    // SAFETY: accept4 just returned this descriptor, owned
                    // by nothing else.
                    let stream = unsafe { UnixStream::from_raw_fd(fd) };
                    if self.conns.len() >= MAX_CONNECTIONS {
                        // One try, never a wait: the line fits the socket's
                        // empty buffer, and the stream is dropped at once.
                        let _ = send(&stream, &busy_line());
                        continue;
                    }
                    self.conns.push(Conn {
                        stream,
                        state: State::Reading { buf: Vec::new() },
                        deadline: Some(now + READ_TIMEOUT),
                    });
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR | Errno::ECONNABORTED) => {}
                Err(e) => {
                    // Out of descriptors, most likely: wait for connections
                    // to finish rather than spin on the error.
                    if !self.warned {
                        warn!("the control socket cannot accept a connection: {e}");
                        self.warned = true;
                    }
                    self.accept_paused = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }
}

impl source::Source for ControlLoop {
    fn fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        ControlLoop::fds(self)
    }

    fn deadline(&self) -> Option<Instant> {
        ControlLoop::deadline(self)
    }

    fn on_ready(&mut self, now: Instant, revents: &[PollFlags], started: &mut Vec<Pid>) {
        ControlLoop::on_ready(self, now, revents, started);
    }

    fn reaped(&mut self, pid: Pid, fate: crate::pid1::exit::Fate) {
        ControlLoop::reaped(self, Instant::now(), pid, fate);
    }
}

/// An HTTP or TCP probe of a host name, as the start-up wait checks one
/// (`waitfor`: the name resolved afresh, each address tried until one is
/// up), but never blocking: the lookup's query and each address's exchange
/// are sockets the loop polls.
struct Named {
    target: Target,
    timeout: Duration,
    step: NamedStep,
    /// Why the first address tried was down: the answer if none is up.
    first_reason: Option<String>,
}

// One per probe run, inside the run's box: the size of the larger step
// costs nothing.
#[allow(clippy::large_enum_variant)]
enum NamedStep {
    Resolving(Lookup),
    Probing {
        addr: SocketAddr,
        exchange: Exchange,
        rest: VecDeque<IpAddr>,
    },
}

impl Named {
    fn start(target: &Target, timeout: Duration, now: Instant) -> Named {
        let lookup = Lookup::start(&Resolver::system(), target.host(), now, now + timeout);
        Named {
            target: target.clone(),
            timeout,
            step: NamedStep::Resolving(lookup),
            first_reason: None,
        }
    }

    fn fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        match &self.step {
            NamedStep::Resolving(lookup) => lookup.fd(),
            NamedStep::Probing { exchange, .. } => exchange.fd().map(|fd| (fd, exchange.events())),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.step {
            NamedStep::Resolving(lookup) => lookup.deadline(),
            NamedStep::Probing { exchange, .. } => Some(exchange.deadline()),
        }
    }

    /// Makes what progress the sockets allow; the probe's result once
    /// there is one. Everything ends by `limit`.
    fn advance(&mut self, now: Instant, ready: bool, limit: Instant) -> Option<Result<String, String>> {
        let host = self.target.host();
        if let NamedStep::Resolving(lookup) = &mut self.step {
            lookup.advance(now);
            let addrs = match lookup.result()? {
                Ok(addrs) => addrs.iter().copied().collect::<VecDeque<_>>(),
                Err(err) => return Some(Err(format!("{host}: {err}"))),
            };
            return self.next_address(addrs, now, limit);
        }
        let NamedStep::Probing { addr, exchange, rest } = &mut self.step else {
            unreachable!("resolving was handled above")
        };
        exchange.advance(now, ready);
        match exchange.outcome()? {
            Ok(seen) => Some(Ok(seen.clone())),
            Err(reason) => {
                debug!("{}: {addr}: {reason}", self.target);
                self.first_reason.get_or_insert_with(|| reason.clone());
                let rest = std::mem::take(rest);
                if now >= limit {
                    return Some(Err(self.down()));
                }
                self.next_address(rest, now, limit)
            }
        }
    }

    /// Starts the exchange with the next address, or says none is up.
    fn next_address(
        &mut self,
        mut addrs: VecDeque<IpAddr>,
        now: Instant,
        limit: Instant,
    ) -> Option<Result<String, String>> {
        let Some(ip) = addrs.pop_front() else {
            return Some(Err(self.down()));
        };
        let addr = SocketAddr::new(ip, self.target.port());
        let budget = self.timeout.min(limit.saturating_duration_since(now));
        let exchange = health::start_probe(&self.target, addr, budget, now);
        self.step = NamedStep::Probing {
            addr,
            exchange,
            rest: addrs,
        };
        // A refusal can be known at once.
        self.advance(now, false, limit)
    }

    fn down(&mut self) -> String {
        self.first_reason
            .take()
            .unwrap_or_else(|| format!("{}: no address", self.target.host()))
    }
}

/// Moves one connection on as far as its socket allows.
fn step(conn: &mut Conn, server: &Server, now: Instant, ready: PollFlags) -> Next {
    let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
    loop {
        match &mut conn.state {
            // The client hung up while its answer was being made: nobody
            // to answer (and a hang-up would wake every poll until then).
            State::Waiting if ready.intersects(gone) => return Next::Close,
            State::Waiting => return Next::Keep,
            _ if ready.is_empty() => {
                return match conn.deadline {
                    Some(limit) if now >= limit => Next::Close,
                    _ => Next::Keep,
                };
            }
            State::Reading { buf } => {
                let request = match read_request(&mut conn.stream, buf) {
                    Ok(Some(request)) => request,
                    Ok(None) => return timed_out_or_keep(conn, now),
                    Err(_) => return Next::Close,
                };
                let answer = match request.and_then(|l| protocol::parse_request(&l)) {
                    Ok(Request::Check) if server.wants_probe() => {
                        conn.state = State::Waiting;
                        conn.deadline = None;
                        return Next::Probe;
                    }
                    Ok(Request::Check) => protocol::encode(&server.report(None)),
                    Err(e) => protocol::encode_error(&e.to_string()),
                };
                conn.state = State::Writing { answer, sent: 0 };
                conn.deadline = Some(now + WRITE_TIMEOUT);
            }
            State::Writing { answer, sent } => {
                match send(&conn.stream, &answer[*sent..]) {
                    Ok(n) => *sent += n,
                    Err(Errno::EAGAIN) => return timed_out_or_keep(conn, now),
                    Err(Errno::EINTR) => continue,
                    Err(_) => return Next::Close,
                }
                if *sent == answer.len() {
                    if conn.stream.shutdown(std::net::Shutdown::Write).is_err() {
                        return Next::Close;
                    }
                    conn.state = State::Draining { total: 0 };
                    conn.deadline = Some(now + READ_TIMEOUT);
                }
            }
            State::Draining { total } => {
                // Small: it is on the stack once, not per connection.
                let mut buf = [0u8; 4096];
                match conn.stream.read(&mut buf) {
                    Ok(0) => return Next::Close,
                    Ok(n) => {
                        *total += n;
                        if *total >= DRAIN_LIMIT {
                            return Next::Close;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return timed_out_or_keep(conn, now),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Next::Close,
                }
            }
        }
    }
}

fn timed_out_or_keep(conn: &Conn, now: Instant) -> Next {
    match conn.deadline {
        Some(limit) if now >= limit => Next::Close,
        _ => Next::Keep,
    }
}

/// Reads what has come of the request: `Some` once the line is complete
/// (or the client ended its input after some bytes), `None` until then.
fn read_request(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Result<Vec<u8>, RequestError>>> {
    loop {
        match protocol::frame(buf) {
            Frame::Line(line) => return Ok(Some(Ok(line.to_vec()))),
            Frame::TooLong => return Ok(Some(Err(RequestError::TooLong))),
            Frame::Incomplete => {}
        }
        let mut chunk = [0u8; protocol::MAX_REQUEST];
        let room = protocol::MAX_REQUEST - buf.len();
        match stream.read(&mut chunk[..room]) {
            Ok(0) if buf.is_empty() => return Err(io::ErrorKind::UnexpectedEof.into()),
            // End of input also ends the request (a client that sent no
            // newline but closed its side).
            Ok(0) => return Ok(Some(Ok(std::mem::take(buf)))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One non-blocking send that raises no SIGPIPE if the client is gone.
fn send(stream: &UnixStream, bytes: &[u8]) -> Result<usize, Errno> {
    socket::send(
        stream.as_raw_fd(),
        bytes,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    )
}

fn busy_line() -> Vec<u8> {
    protocol::encode_error(&format!(
        "{}: {MAX_CONNECTIONS} connections are open, the most initd serves at once; ask again",
        protocol::BUSY
    ))
}

/// Returns the free memory of initd's heaps to the system.
fn give_back_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::netio;
    use crate::pid1::status::Phase;
    use std::io::Write;
    use std::path::PathBuf;

    fn settings(probe: &str) -> Health {
        Health {
            socket: None,
            socket_set: true,
            check_timeout: Duration::from_secs(2),
            probe: probe.parse().unwrap(),
            probe_timeout: Duration::from_secs(5),
            drain: Duration::ZERO,
        }
    }

    /// A loop on a fresh socket, for a server in `status`.
    fn control(tag: &str, probe: &str, status: Arc<Status>) -> (ControlLoop, PathBuf) {
        let path = std::env::temp_dir().join(format!("initd-loop-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = Server::new(status, &settings(probe), None, Arc::new(Redactor::new(&[])));
        (ControlLoop::new(listener, server).unwrap(), path)
    }

    /// Asks on another thread while this one drives the loop, as the
    /// supervisor's own poll would; returns the answer.
    fn ask_driving(control: &mut ControlLoop, path: &std::path::Path, request: &'static [u8]) -> String {
        let path = path.to_path_buf();
        let client = std::thread::spawn(move || {
            let mut conn = UnixStream::connect(path).unwrap();
            conn.write_all(request).unwrap();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).unwrap();
            answer
        });
        while !client.is_finished() {
            drive_once(control);
        }
        client.join().unwrap()
    }

    /// One round of a caller's own poll over the loop's descriptors, never
    /// longer than a few milliseconds (the client may finish while the loop
    /// has nothing left to wait for).
    fn drive_once(control: &mut ControlLoop) {
        let limit = Instant::now() + Duration::from_millis(20);
        let limit = control.deadline().map_or(limit, |d| d.min(limit));
        control.poll_and_serve(netio::timeout_until(limit)).unwrap();
    }

    fn running() -> Arc<Status> {
        let status = Status::new();
        status.set_phase(Phase::Running, "server running");
        status.set_main(Some(42));
        status
    }

    #[test]
    fn a_caller_driven_loop_answers_and_goes_back_to_sleep() {
        let (mut control, path) = control("driven", "", running());
        assert_eq!(control.fds().len(), 1, "only the listener while idle");
        assert_eq!(control.deadline(), None, "no timer while idle");
        let answer = ask_driving(&mut control, &path, b"initd/1 check\n");
        let report = protocol::decode(answer.as_bytes()).unwrap();
        assert_eq!((report.state.as_str(), report.healthy), ("running", true));
        let answer = ask_driving(&mut control, &path, b"initd/2 check\n");
        assert!(answer.contains("this initd speaks initd/1"), "{answer}");
        // Once the clients are gone, nothing is left to poll or time out.
        while !control.conns.is_empty() {
            drive_once(&mut control);
        }
        assert_eq!(control.deadline(), None);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_tcp_probe_runs_inside_the_loop() {
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = target.local_addr().unwrap();
        let probe = format!("tcp://{addr}");
        let (mut control, path) = control("tcp", &probe, running());
        let report =
            protocol::decode(ask_driving(&mut control, &path, b"initd/1 check\n").as_bytes()).unwrap();
        assert!(report.healthy, "{report:?}");
        assert_eq!(
            report.probe.map(|p| (p.probe, p.ok, p.detail)),
            Some((probe.clone(), true, format!("connected to {addr}")))
        );
        drop(target);
        let report =
            protocol::decode(ask_driving(&mut control, &path, b"initd/1 check\n").as_bytes()).unwrap();
        assert_eq!((report.state.as_str(), report.healthy), ("unhealthy", false));
        assert_eq!(report.reason, format!("{probe}: connection refused"));
        assert!(control.run.is_none(), "the run is over once answered");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_command_probe_is_a_child_whose_end_answers_the_check() {
        let (control_loop, path) = control("cmd", "cmd:sh -c 'echo not ready; exit 3'", running());
        let server = Server::new(
            control_loop.server.status.clone(),
            &settings("cmd:sh -c 'echo not ready; exit 3'"),
            Some(cmdprobe::Spec {
                argv: vec!["sh".into(), "-c".into(), "echo not ready; exit 3".into()],
                launcher: crate::pid1::launch::Launcher::new(
                    vec![("PATH".into(), "/usr/bin:/bin".into())],
                    std::path::Path::new("/"),
                ),
            }),
            Arc::new(Redactor::new(&[])),
        );
        let mut control = control_loop;
        control.server = server;
        // `drive_once` stands in for the supervisor: it waits for the
        // child the loop started and hands its end back.
        let report =
            protocol::decode(ask_driving(&mut control, &path, b"initd/1 check\n").as_bytes()).unwrap();
        assert_eq!((report.state.as_str(), report.healthy), ("unhealthy", false));
        let probe = report.probe.unwrap();
        assert_eq!(probe.detail, "exited with status 3: not ready");
        assert!(control.run.is_none(), "the run is over once answered");
        let _ = std::fs::remove_file(&path);
    }
}
