//! The resolver as a state machine that never blocks: an IP literal or a
//! name in /etc/hosts is answered at once; otherwise the UDP query in
//! flight is a socket the caller polls, and [`Lookup::advance`] takes what
//! arrived and moves on to the next server, round or search candidate, as
//! glibc does. PID 1's loop drives it for a health probe of a host name;
//! [`Lookup::wait`] drives it in a poll of its own for the start-up wait
//! ([`super::Resolver::lookup`]).
//!
//! An answer too large for a datagram is asked again over TCP: a
//! non-blocking connection, one more socket to poll.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self, SockaddrStorage, sockopt};
use tracing::trace;

use super::message::{self, Answer, ParseError, QType, WireName};
use super::{DnsError, Found, MAX_MESSAGE, ResolvConf, Resolver, Udp, combine, random_id};
use crate::net::netio;

/// One lookup of a host name, in progress or done.
pub struct Lookup {
    conf: ResolvConf,
    servers: Vec<SocketAddr>,
    names: Vec<WireName>,
    /// Which candidate name, which round over the servers, which server.
    name_at: usize,
    round: u8,
    server_at: usize,
    asking: Option<Asking>,
    /// The failure of the candidate under way, and the one worth reporting
    /// of those that are over.
    last: Option<DnsError>,
    worst: Option<DnsError>,
    limit: Instant,
    result: Option<Result<Vec<IpAddr>, DnsError>>,
}

struct Asking {
    udp: Udp,
    until: Instant,
    /// The query asked again over TCP, its answer having been truncated.
    tcp: Option<Tcp>,
}

/// One query over TCP, a step at a time: connect, send the query with
/// its length in front, read the answer with its length in front.
struct Tcp {
    /// Which of the UDP exchange's queries it stands in for.
    query: usize,
    qtype: QType,
    id: u16,
    stream: TcpStream,
    connected: bool,
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
}

impl Tcp {
    fn start(server: SocketAddr, name: &WireName, query: usize, qtype: QType) -> Result<Tcp, DnsError> {
        let id = random_id();
        let msg = message::build_query(id, name, qtype);
        let mut out = (msg.len() as u16).to_be_bytes().to_vec();
        out.extend(msg);
        let (stream, connected) =
            netio::start_connect(server).map_err(|source| DnsError::Io { server, source })?;
        Ok(Tcp {
            query,
            qtype,
            id,
            stream,
            connected,
            out,
            sent: 0,
            got: Vec::new(),
        })
    }

    fn events(&self) -> PollFlags {
        if !self.connected || self.sent < self.out.len() {
            PollFlags::POLLOUT
        } else {
            PollFlags::POLLIN
        }
    }

    /// Goes as far as the socket allows; the answer once it is complete.
    fn advance(&mut self, name: &WireName) -> io::Result<Option<Result<Answer, ParseError>>> {
        loop {
            if !self.connected {
                let err = socket::getsockopt(&self.stream, sockopt::SocketError)?;
                if err != 0 {
                    return Err(io::Error::from_raw_os_error(err));
                }
                if let Err(Errno::ENOTCONN) = socket::getpeername::<SockaddrStorage>(self.stream.as_raw_fd())
                {
                    return Ok(None);
                }
                self.connected = true;
            }
            if self.sent < self.out.len() {
                match self.stream.write(&self.out[self.sent..]) {
                    Ok(n) => self.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if let Some(len) = self
                .got
                .get(..2)
                .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                && self.got.len() >= 2 + len
            {
                let msg = &self.got[2..2 + len];
                return Ok(Some(
                    match message::parse_response(msg, self.id, name, self.qtype) {
                        Ok(Answer::Truncated) => Err(ParseError::Short),
                        other => other,
                    },
                ));
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Lookup {
    /// Starts looking `host` up, to be over by `limit`.
    pub fn start(resolver: &Resolver, host: &str, now: Instant, limit: Instant) -> Lookup {
        let mut lookup = Lookup {
            conf: resolver.conf.clone(),
            servers: resolver.conf.servers(),
            names: Vec::new(),
            name_at: 0,
            round: 0,
            server_at: 0,
            asking: None,
            last: None,
            worst: None,
            limit,
            result: None,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            lookup.result = Some(Ok(vec![ip]));
            return lookup;
        }
        let listed = resolver.hosts.lookup(host);
        if !listed.is_empty() {
            lookup.result = Some(Ok(listed));
            return lookup;
        }
        if let Err(err) = WireName::from_dotted(host) {
            lookup.result = Some(Err(err.into()));
            return lookup;
        }
        // A search domain can push a valid name over the length limit; that
        // candidate just does not exist.
        lookup.names = resolver
            .conf
            .candidates(host)
            .iter()
            .filter_map(|c| WireName::from_dotted(c).ok())
            .collect();
        lookup.ask_next(now);
        lookup
    }

    /// Waits for the lookup to be over, in a poll of its socket that the
    /// interrupt cuts short: the blocking [`Resolver::lookup`].
    pub fn wait(mut self, interrupt: netio::Interrupt<'_>) -> Result<Vec<IpAddr>, DnsError> {
        loop {
            if let Some(result) = self.result.take() {
                return result;
            }
            let Some(asking) = &self.asking else {
                // Not reached: without a query in flight the lookup is over.
                self.give_up();
                continue;
            };
            let (server, until) = (asking.udp.server, asking.until);
            let (fd, events) = self.fd().expect("a query in flight has a socket");
            match interrupt.ready(fd, events, until) {
                Ok(()) | Err(netio::NetError::TimedOut) => {}
                Err(err) => return Err(DnsError::from_net(err, server)),
            }
            self.advance(Instant::now());
        }
    }

    /// The addresses, or why there are none, once the lookup is over.
    pub fn result(&self) -> Option<&Result<Vec<IpAddr>, DnsError>> {
        self.result.as_ref()
    }

    /// The socket to poll while a query is in flight, and for what.
    pub fn fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        let asking = self.asking.as_ref()?;
        Some(match &asking.tcp {
            Some(tcp) => (tcp.stream.as_fd(), tcp.events()),
            None => (asking.udp.socket.as_fd(), PollFlags::POLLIN),
        })
    }

    /// When the query in flight gives up on its server.
    pub fn deadline(&self) -> Option<Instant> {
        self.asking.as_ref().map(|a| a.until)
    }

    /// Takes what arrived (never waiting) and, when the server in flight
    /// has answered or run out of time, moves on.
    pub fn advance(&mut self, now: Instant) {
        let Some(asking) = self.asking.as_mut() else {
            return;
        };
        let name = &self.names[self.name_at];
        let server = asking.udp.server;
        let step = match asking.tcp.as_mut() {
            None => {
                let mut buf = vec![0u8; MAX_MESSAGE];
                asking
                    .udp
                    .receive(name, &mut buf)
                    .map(|all| all || now >= asking.until)
            }
            Some(tcp) => match tcp.advance(name) {
                Ok(None) if now < asking.until => Ok(false),
                Ok(None) => Err(DnsError::NoAnswer { server }),
                Ok(Some(Ok(answer))) => {
                    asking.udp.queries[tcp.query].answer = Some(answer);
                    asking.tcp = None;
                    Ok(true)
                }
                Ok(Some(Err(source))) => Err(DnsError::BadAnswer { server, source }),
                Err(source) => Err(DnsError::Io { server, source }),
            },
        };
        let err = match step {
            Ok(false) => return,
            Ok(true) => {
                // A truncated answer is asked again over TCP, one at a time.
                let truncated = asking
                    .udp
                    .queries
                    .iter()
                    .position(|q| q.answer == Some(Answer::Truncated));
                match truncated.map(|i| Tcp::start(server, name, i, asking.udp.queries[i].qtype)) {
                    Some(Ok(tcp)) => {
                        asking.tcp = Some(tcp);
                        return;
                    }
                    Some(Err(err)) => Some(err),
                    None => None,
                }
            }
            Err(err) => Some(err),
        };
        if let Some(err) = err {
            trace!("DNS query failed: {err}");
            self.asking = None;
            self.last = Some(err);
            self.ask_next(now);
            return;
        }
        let Some(asking) = self.asking.take() else {
            return;
        };
        let answers = asking.udp.queries.map(|q| q.answer);
        match combine(server, answers) {
            Ok(Found::Addresses(addrs)) => self.result = Some(Ok(addrs)),
            Ok(Found::NxDomain) => self.name_failed(DnsError::NotFound, now),
            Ok(Found::NoData) => self.name_failed(DnsError::NoAddress, now),
            Err(err) => {
                trace!(%server, "DNS query failed: {err}");
                self.last = Some(err);
                self.ask_next(now);
            }
        }
    }

    /// The candidate name under way has its definite answer (or none came):
    /// on to the next one, unless time is up.
    fn name_failed(&mut self, err: DnsError, now: Instant) {
        if self.worst.as_ref().is_none_or(|w| err.weight() > w.weight()) {
            self.worst = Some(err);
        }
        self.name_at += 1;
        self.round = 0;
        self.server_at = 0;
        self.last = None;
        if now >= self.limit {
            self.give_up();
            return;
        }
        self.ask_next(now);
    }

    /// Sends the queries to the next server of the round, the next round,
    /// or the next candidate name, as [`Resolver::lookup`] would.
    fn ask_next(&mut self, now: Instant) {
        loop {
            if self.name_at >= self.names.len() {
                self.give_up();
                return;
            }
            if now >= self.limit || self.round >= self.conf.attempts {
                let last = self.last.take().unwrap_or(DnsError::NoAnswer {
                    server: self.servers[0],
                });
                self.name_failed(last, now);
                return;
            }
            let Some(&server) = self.servers.get(self.server_at) else {
                self.round += 1;
                self.server_at = 0;
                continue;
            };
            self.server_at += 1;
            match Udp::send(server, &self.names[self.name_at]) {
                Ok(udp) => {
                    let until = self.limit.min(now + self.conf.timeout);
                    self.asking = Some(Asking {
                        udp,
                        until,
                        tcp: None,
                    });
                    return;
                }
                Err(err) => self.last = Some(err),
            }
        }
    }

    fn give_up(&mut self) {
        self.asking = None;
        let err = self.worst.take().unwrap_or(DnsError::NotFound);
        self.result = Some(Err(err));
    }
}
