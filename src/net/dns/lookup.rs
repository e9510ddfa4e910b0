//! The resolver of [`super::Resolver::lookup`] as a state machine that
//! never blocks, for PID 1's loop (a health probe of a host name): an IP
//! literal or a name in /etc/hosts is answered at once; otherwise the
//! UDP query in flight is a socket the caller polls, and
//! [`Lookup::advance`] takes what arrived and moves on to the next server,
//! round or search candidate exactly as the blocking lookup does.
//!
//! One difference: an answer too large for a datagram is not asked again
//! over TCP here, it counts as no answer from that server (and the other
//! address type's answer still counts). A name with so many addresses is
//! not what a health probe of one service asks for.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use tracing::trace;

use super::message::{Answer, WireName};
use super::{DnsError, Found, MAX_MESSAGE, ResolvConf, Resolver, Udp, combine};

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

    /// The addresses, or why there are none, once the lookup is over.
    pub fn result(&self) -> Option<&Result<Vec<IpAddr>, DnsError>> {
        self.result.as_ref()
    }

    /// The socket to poll for reading while a query is in flight.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.asking.as_ref().map(|a| a.udp.socket.as_fd())
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
        let mut buf = vec![0u8; MAX_MESSAGE];
        let answered = match asking.udp.receive(name, &mut buf) {
            Ok(all) => all,
            Err(err) => {
                trace!("DNS query failed: {err}");
                self.asking = None;
                self.last = Some(err);
                self.ask_next(now);
                return;
            }
        };
        if !answered && now < asking.until {
            return;
        }
        let Some(asking) = self.asking.take() else {
            return;
        };
        let server = asking.udp.server;
        let answers = asking
            .udp
            .queries
            .map(|q| q.answer.filter(|a| *a != Answer::Truncated));
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
                    self.asking = Some(Asking { udp, until });
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
