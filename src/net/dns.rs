//! Host name resolution without glibc's NSS, which a static binary must not
//! call: `/etc/hosts` first, then A and AAAA queries to the servers in
//! `/etc/resolv.conf` (in a compose network, Docker's embedded DNS at
//! 127.0.0.11, which knows the service names).
//!
//! A stub resolver and nothing more: no cache (a waiting loop wants fresh
//! answers; a service's name appears when its container starts), no EDNS
//! (address answers fit in 512 bytes; larger ones arrive truncated and are
//! asked again over TCP), no DNSSEC. `hickory-resolver` would do all this
//! and more, but added ~930 KB to a ~1.6 MB binary.

pub mod conf;
pub mod hosts;
pub mod lookup;
pub mod message;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Instant;

use thiserror::Error;
use tracing::trace;

pub use conf::ResolvConf;
pub use hosts::Hosts;
pub use lookup::Lookup;
use message::{Answer, NameError, ParseError, QType, WireName};

use crate::net::netio::{Interrupt, NetError};

pub const HOSTS_PATH: &str = "/etc/hosts";
pub const RESOLV_CONF_PATH: &str = "/etc/resolv.conf";

/// Largest DNS message (TCP's length prefix is 16 bits; a UDP datagram
/// cannot be larger either).
const MAX_MESSAGE: usize = 65535;

#[derive(Debug, Error)]
pub enum DnsError {
    #[error("invalid host name: {0}")]
    Name(#[from] NameError),
    #[error("name not found")]
    NotFound,
    #[error("name has no address")]
    NoAddress,
    #[error("DNS server {server} answered {}", rcode_name(*.rcode))]
    Failed { server: SocketAddr, rcode: u8 },
    #[error("no answer from DNS server {server}")]
    NoAnswer { server: SocketAddr },
    #[error("bad answer from DNS server {server}: {source}")]
    BadAnswer { server: SocketAddr, source: ParseError },
    #[error("DNS server {server}: {source}")]
    Io { server: SocketAddr, source: io::Error },
    #[error("interrupted")]
    Interrupted,
}

impl DnsError {
    fn from_net(err: NetError, server: SocketAddr) -> DnsError {
        match err {
            NetError::Interrupted => DnsError::Interrupted,
            NetError::TimedOut => DnsError::NoAnswer { server },
            NetError::Io(source) => DnsError::Io { server, source },
        }
    }

    /// Of several failures, the one worth reporting: a server problem says
    /// more than "not found" (which, with search domains, is the usual fate
    /// of all but one candidate name).
    fn weight(&self) -> u8 {
        match self {
            DnsError::NotFound => 0,
            DnsError::NoAddress => 1,
            _ => 2,
        }
    }
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        1 => "FORMERR".into(),
        message::RCODE_SERVFAIL => "SERVFAIL".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("rcode {n}"),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Resolver {
    hosts: Hosts,
    conf: ResolvConf,
}

impl Resolver {
    pub fn new(hosts: Hosts, conf: ResolvConf) -> Resolver {
        Resolver { hosts, conf }
    }

    /// Reads `/etc/hosts` and `/etc/resolv.conf`.
    pub fn system() -> Resolver {
        Resolver::from_files(Path::new(HOSTS_PATH), Path::new(RESOLV_CONF_PATH))
    }

    /// A missing or unreadable file counts as empty, as it does for glibc
    /// (FROM scratch images may have neither).
    pub fn from_files(hosts: &Path, resolv_conf: &Path) -> Resolver {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        Resolver::new(Hosts::parse(&read(hosts)), ResolvConf::parse(&read(resolv_conf)))
    }

    /// The addresses of `host` (an IP literal is its own answer). Never
    /// blocks past `limit`; returns `Interrupted` as soon as the interrupt
    /// is pending. The same [`Lookup`] PID 1's loop drives, waited for here.
    pub fn lookup(
        &self,
        host: &str,
        limit: Instant,
        interrupt: Interrupt<'_>,
    ) -> Result<Vec<IpAddr>, DnsError> {
        Lookup::start(self, host, Instant::now(), limit).wait(interrupt)
    }
}

/// A definite answer from one server for both address types together.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Addresses(Vec<IpAddr>),
    NxDomain,
    NoData,
}

/// The A and AAAA queries to one server, sent, and the answers so far.
struct Udp {
    server: SocketAddr,
    socket: UdpSocket,
    queries: [Query; 2],
}

impl Udp {
    fn send(server: SocketAddr, name: &WireName) -> Result<Udp, DnsError> {
        let io_err = |source| DnsError::Io { server, source };
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        // Connected, so the kernel drops datagrams from anyone but the server
        // and reports an ICMP "port unreachable" as ECONNREFUSED.
        let socket = UdpSocket::bind(local).map_err(io_err)?;
        socket.connect(server).map_err(io_err)?;
        socket.set_nonblocking(true).map_err(io_err)?;
        let queries = [QType::A, QType::Aaaa].map(|qtype| Query {
            qtype,
            id: random_id(),
            answer: None,
        });
        for query in &queries {
            socket
                .send(&message::build_query(query.id, name, query.qtype))
                .map_err(io_err)?;
        }
        Ok(Udp {
            server,
            socket,
            queries,
        })
    }

    /// Takes every datagram waiting, without blocking; whether both
    /// queries have their answer now.
    fn receive(&mut self, name: &WireName, buf: &mut [u8]) -> Result<bool, DnsError> {
        let server = self.server;
        while self.queries.iter().any(|q| q.answer.is_none()) {
            let len = match self.socket.recv(buf) {
                Ok(len) => len,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(source) => return Err(DnsError::Io { server, source }),
            };
            let msg = &buf[..len];
            let waiting = self.queries.iter_mut().filter(|q| q.answer.is_none());
            let matched = waiting.into_iter().find_map(|q| {
                message::parse_response(msg, q.id, name, q.qtype)
                    .ok()
                    .map(|a| (q, a))
            });
            match matched {
                Some((query, answer)) => query.answer = Some(answer),
                None => {
                    trace!(%server, id = ?message::message_id(msg), "ignored a datagram that answers no query")
                }
            }
        }
        Ok(true)
    }
}

struct Query {
    qtype: QType,
    id: u16,
    answer: Option<Answer>,
}

/// The A and AAAA answers as one result. Addresses from either win; a
/// missing answer (timed out) with nothing else to go on means "ask again".
fn combine(server: SocketAddr, answers: [Option<Answer>; 2]) -> Result<Found, DnsError> {
    let mut addrs = Vec::new();
    for answer in answers.iter().flatten() {
        if let Answer::Addresses(found) = answer {
            addrs.extend(found);
        }
    }
    if !addrs.is_empty() {
        return Ok(Found::Addresses(addrs));
    }
    if answers.contains(&Some(Answer::NxDomain)) {
        return Ok(Found::NxDomain);
    }
    if let Some(Answer::Failed(rcode)) = answers.iter().flatten().find(|a| matches!(a, Answer::Failed(_))) {
        return Err(DnsError::Failed {
            server,
            rcode: *rcode,
        });
    }
    if answers.contains(&None) {
        return Err(DnsError::NoAnswer { server });
    }
    Ok(Found::NoData)
}

/// A query id an off-path attacker cannot guess: from getrandom(2), else
/// from std's randomly keyed hasher (which seeds itself from the same
/// source or /dev/urandom) mixed with the time.
fn random_id() -> u16 {
    let mut buf = [0u8; 2];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == buf.len() as isize {
        return u16::from_ne_bytes(buf);
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::Duration;

    /// What the fake server does with a query.
    #[derive(Clone)]
    enum Reply {
        /// Answer with these A/AAAA addresses (the ones matching the type).
        Addrs(Vec<IpAddr>),
        /// `name CNAME target`, then `target A addr`.
        Cname(&'static str, IpAddr),
        NxDomain,
        ServFail,
        Silent,
        /// TC over UDP; the full answer over TCP.
        Truncated(IpAddr),
        /// A datagram with the wrong id first, then the real answer.
        SpoofFirst(IpAddr),
    }

    type Log = Arc<Mutex<Vec<(String, u16)>>>;

    fn question(query: &[u8]) -> (String, u16, usize) {
        let mut pos = 12;
        let mut labels = Vec::new();
        while query[pos] != 0 {
            let len = usize::from(query[pos]);
            labels.push(String::from_utf8_lossy(&query[pos + 1..pos + 1 + len]).into_owned());
            pos += 1 + len;
        }
        let qtype = u16::from_be_bytes([query[pos + 1], query[pos + 2]]);
        (labels.join("."), qtype, pos + 5)
    }

    fn record(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend(rtype.to_be_bytes());
        r.extend([0, 1, 0, 0, 0, 60]);
        r.extend((rdata.len() as u16).to_be_bytes());
        r.extend(rdata);
        r
    }

    fn addr_record(owner: &[u8], ip: IpAddr) -> Vec<u8> {
        match ip {
            IpAddr::V4(v4) => record(owner, 1, &v4.octets()),
            IpAddr::V6(v6) => record(owner, 28, &v6.octets()),
        }
    }

    fn wants(qtype: u16, ip: &IpAddr) -> bool {
        (qtype == 1) == ip.is_ipv4()
    }

    /// The response to `query` (question echoed, answers compressed against
    /// it), or None to stay silent.
    fn respond(query: &[u8], reply: &Reply, over_tcp: bool) -> Option<Vec<u8>> {
        let (_, qtype, qend) = question(query);
        let mut flags: u16 = 0x8180;
        let mut answers: Vec<Vec<u8>> = Vec::new();
        match reply {
            Reply::Addrs(ips) => {
                for ip in ips.iter().filter(|ip| wants(qtype, ip)) {
                    answers.push(addr_record(&[0xc0, 12], *ip));
                }
            }
            Reply::Cname(target, ip) => {
                // The target written in full: simpler than compressing.
                let wire = WireName::from_dotted(target).unwrap();
                answers.push(record(&[0xc0, 12], 5, wire.as_bytes()));
                if wants(qtype, ip) {
                    answers.push(addr_record(wire.as_bytes(), *ip));
                }
            }
            Reply::NxDomain => flags |= 3,
            Reply::ServFail => flags |= 2,
            Reply::Silent => return None,
            Reply::Truncated(ip) if over_tcp => return respond(query, &Reply::Addrs(vec![*ip]), true),
            Reply::Truncated(_) => flags |= 0x0200,
            Reply::SpoofFirst(ip) => return respond(query, &Reply::Addrs(vec![*ip]), over_tcp),
        }
        let mut msg = query[..qend].to_vec();
        msg[2..4].copy_from_slice(&flags.to_be_bytes());
        msg[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        msg.extend(answers.concat());
        Some(msg)
    }

    /// A DNS server on 127.0.0.1 (UDP, and TCP on the same port) that
    /// answers by name; names it has no reply for are NXDOMAIN. It stops
    /// after a few idle seconds.
    fn fake_dns(replies: Vec<(&'static str, Reply)>) -> (SocketAddr, Log) {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let udp = UdpSocket::bind(addr).unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let log: Log = Arc::default();
        let lookup = move |name: &str| {
            replies
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Reply::NxDomain, |(_, r)| r.clone())
        };
        let (udp_log, udp_lookup) = (log.clone(), lookup.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((len, peer)) = udp.recv_from(&mut buf) {
                let query = &buf[..len];
                let (name, qtype, _) = question(query);
                udp_log.lock().unwrap().push((name.clone(), qtype));
                let reply = udp_lookup(&name);
                if let Some(msg) = respond(query, &reply, false) {
                    if let Reply::SpoofFirst(_) = reply {
                        let mut spoof = msg.clone();
                        spoof[0] ^= 0xff;
                        udp.send_to(&spoof, peer).unwrap();
                    }
                    udp.send_to(&msg, peer).unwrap();
                }
            }
        });
        thread::spawn(move || {
            for conn in tcp.incoming() {
                let mut conn = conn.unwrap();
                let mut len = [0u8; 2];
                conn.read_exact(&mut len).unwrap();
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                conn.read_exact(&mut query).unwrap();
                let msg = respond(&query, &lookup(&question(&query).0), true).unwrap();
                conn.write_all(&(msg.len() as u16).to_be_bytes()).unwrap();
                conn.write_all(&msg).unwrap();
            }
        });
        (addr, log)
    }

    /// A resolver from resolv.conf text, its servers moved to `port`.
    fn resolver(hosts: &str, resolv_conf: &str, port: u16) -> Resolver {
        let mut conf = ResolvConf::parse(resolv_conf);
        for server in &mut conf.nameservers {
            server.set_port(port);
        }
        Resolver::new(Hosts::parse(hosts), conf)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn resolves_through_the_search_list_and_a_cname() {
        let (server, log) = fake_dns(vec![(
            "db.svc.test",
            Reply::Cname("real.svc.test", ip("127.0.0.5")),
        )]);
        let r = resolver("", "nameserver 127.0.0.1\nsearch svc.test\n", server.port());
        assert_eq!(
            r.lookup("db", soon(), Interrupt::none()).unwrap(),
            [ip("127.0.0.5")]
        );
        let mut seen = log.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [("db.svc.test".to_string(), 1), ("db.svc.test".to_string(), 28)]
        );
    }

    #[test]
    fn a_missing_search_candidate_falls_back_to_the_name_itself() {
        let (server, log) = fake_dns(vec![("db", Reply::Addrs(vec![ip("127.0.0.9"), ip("::1")]))]);
        let r = resolver("", "nameserver 127.0.0.1\nsearch svc.test\n", server.port());
        let mut addrs = r.lookup("db", soon(), Interrupt::none()).unwrap();
        addrs.sort();
        assert_eq!(addrs, [ip("127.0.0.9"), ip("::1")]);
        let names: Vec<String> = log.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names.first().map(String::as_str), Some("db.svc.test"));
        assert_eq!(names.last().map(String::as_str), Some("db"));
    }

    #[test]
    fn an_unknown_name_is_not_found() {
        let (server, _) = fake_dns(vec![]);
        let r = resolver("", "nameserver 127.0.0.1\nsearch a.test b.test\n", server.port());
        let err = r.lookup("nope", soon(), Interrupt::none()).unwrap_err();
        assert!(matches!(err, DnsError::NotFound), "{err}");
    }

    #[test]
    fn a_server_failure_outranks_not_found() {
        let (server, _) = fake_dns(vec![("db", Reply::ServFail)]);
        let r = resolver("", "nameserver 127.0.0.1\nsearch svc.test\n", server.port());
        let err = r.lookup("db", soon(), Interrupt::none()).unwrap_err();
        assert_eq!(err.to_string(), format!("DNS server {server} answered SERVFAIL"));
    }

    #[test]
    fn hosts_and_literals_need_no_server() {
        let (server, log) = fake_dns(vec![]);
        let r = resolver("127.0.0.7 cache\n", "nameserver 127.0.0.1\n", server.port());
        assert_eq!(
            r.lookup("cache", soon(), Interrupt::none()).unwrap(),
            [ip("127.0.0.7")]
        );
        assert_eq!(
            r.lookup("10.1.2.3", soon(), Interrupt::none()).unwrap(),
            [ip("10.1.2.3")]
        );
        assert_eq!(r.lookup("::1", soon(), Interrupt::none()).unwrap(), [ip("::1")]);
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn invalid_names_are_refused_up_front() {
        let r = resolver("", "", 53);
        let err = r.lookup("a..b", soon(), Interrupt::none()).unwrap_err();
        assert!(matches!(err, DnsError::Name(_)), "{err}");
    }

    #[test]
    fn a_silent_server_gives_up_at_the_limit() {
        let (server, _) = fake_dns(vec![("db", Reply::Silent)]);
        let r = resolver("", "nameserver 127.0.0.1\n", server.port());
        let start = Instant::now();
        let err = r
            .lookup("db", start + Duration::from_millis(300), Interrupt::none())
            .unwrap_err();
        assert!(matches!(err, DnsError::NoAnswer { .. }), "{err}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[test]
    fn a_spoofed_datagram_is_ignored() {
        let (server, _) = fake_dns(vec![("db", Reply::SpoofFirst(ip("127.0.0.3")))]);
        let r = resolver("", "nameserver 127.0.0.1\n", server.port());
        assert_eq!(
            r.lookup("db", soon(), Interrupt::none()).unwrap(),
            [ip("127.0.0.3")]
        );
    }

    #[test]
    fn a_truncated_answer_is_asked_again_over_tcp() {
        let (server, _) = fake_dns(vec![("big", Reply::Truncated(ip("127.0.0.4")))]);
        let r = resolver("", "nameserver 127.0.0.1\n", server.port());
        assert_eq!(
            r.lookup("big", soon(), Interrupt::none()).unwrap(),
            [ip("127.0.0.4")]
        );
    }

    #[test]
    fn a_dead_server_is_skipped_for_the_next() {
        let (server, _) = fake_dns(vec![("db", Reply::Addrs(vec![ip("127.0.0.2")]))]);
        // A UDP port with nothing behind it: the kernel answers "port
        // unreachable", which the connected socket reports at once.
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut r = resolver("", "nameserver 127.0.0.1\nnameserver 127.0.0.1\n", 0);
        r.conf.nameservers = vec![dead, server];
        let start = Instant::now();
        assert_eq!(
            r.lookup("db", soon(), Interrupt::none()).unwrap(),
            [ip("127.0.0.2")]
        );
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn an_interrupt_ends_a_lookup_at_once() {
        let (server, _) = fake_dns(vec![("db", Reply::Silent)]);
        let r = resolver("", "nameserver 127.0.0.1\n", server.port());
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            nix::unistd::write(&tx, b"x").unwrap();
            tx
        });
        let start = Instant::now();
        let err = r.lookup("db", soon(), Interrupt::new(rx.as_fd())).unwrap_err();
        assert!(matches!(err, DnsError::Interrupted), "{err}");
        assert!(start.elapsed() < Duration::from_secs(1));
        drop(writer.join());
    }

    /// Drives a non-blocking lookup as PID 1's loop does, counting the
    /// calls that returned with no result yet: each must come back at once.
    fn drive(mut lookup: Lookup) -> (Result<Vec<IpAddr>, String>, u32) {
        let mut passes = 0;
        while lookup.result().is_none() {
            let (fd, events) = lookup.fd().expect("a query in flight");
            let left = lookup
                .deadline()
                .unwrap()
                .saturating_duration_since(Instant::now());
            let mut fds = [nix::poll::PollFd::new(fd, events)];
            let ms = (left.as_millis() as u16).saturating_add(1);
            let _ = nix::poll::poll(&mut fds, ms);
            let before = Instant::now();
            lookup.advance(Instant::now());
            assert!(before.elapsed() < Duration::from_millis(50), "advance waited");
            passes += 1;
        }
        let result = match lookup.result().unwrap() {
            Ok(addrs) => Ok(addrs.clone()),
            Err(err) => Err(err.to_string()),
        };
        (result, passes)
    }

    #[test]
    fn a_lookup_on_the_loop_answers_hosts_and_literals_at_once() {
        let r = resolver("127.0.0.7 cache\n", "nameserver 127.0.0.1\n", 1);
        for (host, want) in [("cache", "127.0.0.7"), ("10.1.2.3", "10.1.2.3")] {
            let lookup = Lookup::start(&r, host, Instant::now(), soon());
            assert!(lookup.fd().is_none());
            assert_eq!(lookup.result().unwrap().as_ref().unwrap(), &[ip(want)]);
        }
        let bad = Lookup::start(&r, "a..b", Instant::now(), soon());
        assert!(matches!(bad.result(), Some(Err(DnsError::Name(_)))));
    }

    #[test]
    fn a_lookup_on_the_loop_follows_the_search_list_to_an_answer() {
        let (server, _) = fake_dns(vec![("db", Reply::SpoofFirst(ip("127.0.0.9")))]);
        let r = resolver("", "nameserver 127.0.0.1\nsearch svc.test\n", server.port());
        let (result, _) = drive(Lookup::start(&r, "db", Instant::now(), soon()));
        assert_eq!(result.unwrap(), [ip("127.0.0.9")]);
        let (result, _) = drive(Lookup::start(&r, "nope", Instant::now(), soon()));
        assert_eq!(result.unwrap_err(), "name not found");
    }

    #[test]
    fn a_lookup_on_the_loop_asks_a_truncated_answer_again_over_tcp() {
        let (server, _) = fake_dns(vec![("big", Reply::Truncated(ip("127.0.0.4")))]);
        let r = resolver("", "nameserver 127.0.0.1\n", server.port());
        let (result, _) = drive(Lookup::start(&r, "big", Instant::now(), soon()));
        assert_eq!(result.unwrap(), [ip("127.0.0.4")]);
    }

    #[test]
    fn a_lookup_on_the_loop_skips_a_dead_server_and_gives_up_on_a_silent_one_at_its_limit() {
        let (server, _) = fake_dns(vec![
            ("db", Reply::Addrs(vec![ip("127.0.0.2")])),
            ("quiet", Reply::Silent),
        ]);
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut r = resolver("", "", 0);
        r.conf.nameservers = vec![dead, server];
        let (result, _) = drive(Lookup::start(&r, "db", Instant::now(), soon()));
        assert_eq!(result.unwrap(), [ip("127.0.0.2")]);

        r.conf.nameservers = vec![server];
        let start = Instant::now();
        let (result, passes) = drive(Lookup::start(
            &r,
            "quiet",
            start,
            start + Duration::from_millis(300),
        ));
        let took = start.elapsed();
        assert_eq!(result.unwrap_err(), format!("no answer from DNS server {server}"));
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(passes < 20, "woke {passes} times");
    }

    #[test]
    fn combining_a_and_aaaa() {
        let s: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let v4 = Answer::Addresses(vec![ip("10.0.0.1")]);
        assert_eq!(
            combine(s, [Some(v4.clone()), Some(Answer::NoData)]).unwrap(),
            Found::Addresses(vec![ip("10.0.0.1")])
        );
        assert_eq!(
            combine(s, [Some(v4), None]).unwrap(),
            Found::Addresses(vec![ip("10.0.0.1")])
        );
        assert_eq!(
            combine(s, [Some(Answer::NxDomain), None]).unwrap(),
            Found::NxDomain
        );
        assert_eq!(
            combine(s, [Some(Answer::NoData), Some(Answer::NoData)]).unwrap(),
            Found::NoData
        );
        assert!(matches!(
            combine(s, [Some(Answer::NoData), None]),
            Err(DnsError::NoAnswer { .. })
        ));
        assert!(matches!(
            combine(s, [Some(Answer::Failed(2)), Some(Answer::NoData)]),
            Err(DnsError::Failed { rcode: 2, .. })
        ));
    }

    #[test]
    fn random_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 32);
    }
}
