//! `/etc/resolv.conf`, read the way glibc reads it: up to three
//! `nameserver`s, the last `search` or `domain` line, and the `ndots`,
//! `timeout` and `attempts` options with glibc's defaults and caps.
//!
//! Not supported, because no container setup relies on them: the
//! `LOCALDOMAIN` and `RES_OPTIONS` environment overrides, a search list
//! derived from the host name, `sortlist`, and IPv6 servers with a `%zone`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// glibc's MAXNS: further `nameserver` lines are ignored.
const MAX_NAMESERVERS: usize = 3;
/// glibc's caps on the options (RES_MAXNDOTS, RES_MAXRETRANS, RES_MAXRETRY).
const MAX_NDOTS: u8 = 15;
const MAX_TIMEOUT_SECS: u64 = 30;
const MAX_ATTEMPTS: u8 = 5;
const DNS_PORT: u16 = 53;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// Servers in file order. Always port 53 when read from a file; a test
    /// may point one elsewhere.
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    /// Names with at least this many dots are tried as they are before the
    /// search list.
    pub ndots: u8,
    /// How long to wait for one server's answer.
    pub timeout: Duration,
    /// Rounds through the server list.
    pub attempts: u8,
}

impl Default for ResolvConf {
    fn default() -> Self {
        ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

impl ResolvConf {
    /// Parses resolv.conf(5). Unknown keywords and malformed values are
    /// ignored, as glibc ignores them: a resolver must not refuse to work
    /// over a line it does not understand.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            // glibc takes `#` and `;` as comments at the start of a line;
            // trailing ones are tolerated too, as no value contains them.
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>)
                        && conf.nameservers.len() < MAX_NAMESERVERS
                    {
                        conf.nameservers.push(SocketAddr::new(ip, DNS_PORT));
                    }
                }
                // `domain` and `search` replace each other; the last wins.
                Some("domain") => {
                    conf.search = words.next().map(domain).into_iter().flatten().collect();
                }
                Some("search") => conf.search = words.filter_map(domain).collect(),
                Some("options") => words.for_each(|option| conf.apply_option(option)),
                _ => {}
            }
        }
        conf
    }

    fn apply_option(&mut self, option: &str) {
        let Some((key, value)) = option.split_once(':') else {
            return;
        };
        let Ok(n) = value.parse::<u64>() else {
            return;
        };
        match key {
            "ndots" => self.ndots = n.min(u64::from(MAX_NDOTS)) as u8,
            // A zero timeout or attempt count would never ask anything.
            "timeout" => self.timeout = Duration::from_secs(n.clamp(1, MAX_TIMEOUT_SECS)),
            "attempts" => self.attempts = n.clamp(1, u64::from(MAX_ATTEMPTS)) as u8,
            _ => {}
        }
    }

    /// The servers to ask: with none configured glibc asks the local host.
    pub fn servers(&self) -> Vec<SocketAddr> {
        if self.nameservers.is_empty() {
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT)]
        } else {
            self.nameservers.clone()
        }
    }

    /// The names to ask for, in order, as glibc's res_search builds them: a
    /// name ending in a dot is absolute and asked for alone; a name with at
    /// least `ndots` dots is tried as it is, then with each search domain; a
    /// shorter one (`db`, with the default ndots:1) tries the search list
    /// first, so Kubernetes-style `db.ns.svc.cluster.local` expansion works.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_string()];
        }
        let as_is_first = name.matches('.').count() >= usize::from(self.ndots);
        let mut list = Vec::with_capacity(self.search.len() + 1);
        if as_is_first {
            list.push(name.to_string());
        }
        for domain in &self.search {
            let candidate = format!("{name}.{domain}");
            if !list.contains(&candidate) {
                list.push(candidate);
            }
        }
        if !as_is_first && !list.iter().any(|c| c == name) {
            list.push(name.to_string());
        }
        list
    }
}

/// A search domain without its trailing dot; the root (`.`) adds nothing.
fn domain(word: &str) -> Option<String> {
    let word = word.strip_suffix('.').unwrap_or(word);
    (!word.is_empty()).then(|| word.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 53)
    }

    #[test]
    fn reads_dockers_embedded_dns_config() {
        let conf = ResolvConf::parse(
            "# Generated by Docker Engine.\n\
             nameserver 127.0.0.11\n\
             search corp.example.com\n\
             options ndots:0\n\
             \n\
             # Based on host file: '/etc/resolv.conf' (internal resolver)\n\
             # ExtServers: [host(10.0.0.2)]\n",
        );
        assert_eq!(conf.nameservers, [server("127.0.0.11")]);
        assert_eq!(conf.search, ["corp.example.com"]);
        assert_eq!(conf.ndots, 0);
        assert_eq!(conf.timeout, Duration::from_secs(5));
        assert_eq!(conf.attempts, 2);
    }

    #[test]
    fn defaults_for_an_empty_file() {
        let conf = ResolvConf::parse("");
        assert_eq!(conf, ResolvConf::default());
        assert_eq!(conf.servers(), [server("127.0.0.1")]);
    }

    #[test]
    fn at_most_three_nameservers_and_bad_ones_skipped() {
        let conf = ResolvConf::parse(
            "nameserver 10.0.0.1\nnameserver bogus\nnameserver ::1\n\
             nameserver fe80::1%eth0\nnameserver 10.0.0.3 # third\nnameserver 10.0.0.4\n",
        );
        assert_eq!(
            conf.nameservers,
            [server("10.0.0.1"), server("::1"), server("10.0.0.3")]
        );
        assert_eq!(conf.servers(), conf.nameservers);
    }

    #[test]
    fn the_last_search_or_domain_line_wins() {
        let conf = ResolvConf::parse("search a.example b.example.\ndomain c.example\n");
        assert_eq!(conf.search, ["c.example"]);
        let conf = ResolvConf::parse("domain c.example\nsearch A.example .  b.example\n");
        assert_eq!(conf.search, ["a.example", "b.example"]);
        let conf = ResolvConf::parse("search a.example\nsearch\n");
        assert!(conf.search.is_empty());
    }

    #[test]
    fn options_are_capped_like_glibc() {
        let conf = ResolvConf::parse("options ndots:5 timeout:2 attempts:3 rotate edns0\n");
        assert_eq!(
            (conf.ndots, conf.timeout, conf.attempts),
            (5, Duration::from_secs(2), 3)
        );
        let conf = ResolvConf::parse("options ndots:99 timeout:600 attempts:50\n");
        assert_eq!(
            (conf.ndots, conf.timeout, conf.attempts),
            (15, Duration::from_secs(30), 5)
        );
        let conf = ResolvConf::parse("options timeout:0 attempts:0 ndots:x\n; comment\n");
        assert_eq!(
            (conf.ndots, conf.timeout, conf.attempts),
            (1, Duration::from_secs(1), 1)
        );
    }

    #[test]
    fn short_names_try_the_search_list_first() {
        let conf = ResolvConf::parse("search ns.svc.cluster.local svc.cluster.local\n");
        assert_eq!(
            conf.candidates("db"),
            ["db.ns.svc.cluster.local", "db.svc.cluster.local", "db"]
        );
        assert_eq!(
            conf.candidates("db.example"),
            [
                "db.example",
                "db.example.ns.svc.cluster.local",
                "db.example.svc.cluster.local"
            ]
        );
        assert_eq!(conf.candidates("db.example."), ["db.example"]);
    }

    #[test]
    fn ndots_moves_the_as_is_attempt() {
        let conf = ResolvConf::parse("search s\noptions ndots:2\n");
        assert_eq!(conf.candidates("a.b"), ["a.b.s", "a.b"]);
        assert_eq!(conf.candidates("a.b.c"), ["a.b.c", "a.b.c.s"]);
        let conf = ResolvConf::parse("search s\noptions ndots:0\n");
        assert_eq!(conf.candidates("db"), ["db", "db.s"]);
        assert_eq!(ResolvConf::parse("").candidates("db"), ["db"]);
    }
}

/// Property test: /etc/resolv.conf is the runtime's; any text parses into
/// usable bounds (at least one server, a timeout, attempts).
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_text_parses_into_bounded_settings(text in any::<String>(), name in any::<String>()) {
            let conf = ResolvConf::parse(&text);
            prop_assert!(!conf.servers().is_empty());
            prop_assert!(conf.timeout >= Duration::from_secs(1));
            prop_assert!(conf.attempts >= 1);
            prop_assert!(!conf.candidates(&name).is_empty());
        }

        #[test]
        fn option_shaped_text_parses(text in "(options|nameserver|search|domain)( [a-z0-9:.]{0,24}){0,4}") {
            let conf = ResolvConf::parse(&text);
            prop_assert!(conf.nameservers.len() <= MAX_NAMESERVERS);
            prop_assert!(conf.ndots <= MAX_NDOTS);
        }
    }
}
