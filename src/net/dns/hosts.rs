//! `/etc/hosts`: consulted before DNS, as glibc's default `files dns` order
//! does. Docker writes the container's own name and `--add-host` entries
//! here.

use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hosts {
    /// (lowercased name, address), in file order.
    entries: Vec<(String, IpAddr)>,
}

impl Hosts {
    /// Parses hosts(5): an address, then a canonical name and aliases; `#`
    /// starts a comment. Lines whose address does not parse (including IPv6
    /// with a `%zone`, which a connect could not use without the interface
    /// index) are skipped, as glibc skips them.
    pub fn parse(text: &str) -> Hosts {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let Some(Ok(addr)) = fields.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in fields {
                entries.push((normalize(name), addr));
            }
        }
        Hosts { entries }
    }

    /// Every address listed for `name` (any case, trailing dot or not), in
    /// file order and without repeats.
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let name = normalize(name);
        let mut found = Vec::new();
        for (_, addr) in self.entries.iter().filter(|(n, _)| *n == name) {
            if !found.contains(addr) {
                found.push(*addr);
            }
        }
        found
    }
}

fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_HOSTS: &str = "\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff02::1\tip6-allnodes
# --add-host entries
10.0.0.7   db  Postgres.internal   # the primary
10.0.0.8   db
fe80::1%eth0  linklocal
not-an-ip  broken
172.18.0.3\t4f2c9a1b7e10
";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn finds_names_and_aliases() {
        let hosts = Hosts::parse(DOCKER_HOSTS);
        assert_eq!(hosts.lookup("localhost"), [ip("127.0.0.1"), ip("::1")]);
        assert_eq!(hosts.lookup("ip6-loopback"), [ip("::1")]);
        assert_eq!(hosts.lookup("db"), [ip("10.0.0.7"), ip("10.0.0.8")]);
        assert_eq!(hosts.lookup("postgres.internal"), [ip("10.0.0.7")]);
        assert_eq!(hosts.lookup("4f2c9a1b7e10"), [ip("172.18.0.3")]);
    }

    #[test]
    fn lookups_ignore_case_and_a_trailing_dot() {
        let hosts = Hosts::parse(DOCKER_HOSTS);
        assert_eq!(hosts.lookup("POSTGRES.Internal."), [ip("10.0.0.7")]);
    }

    #[test]
    fn comments_bad_lines_and_unknown_names_yield_nothing() {
        let hosts = Hosts::parse(DOCKER_HOSTS);
        assert!(hosts.lookup("the").is_empty());
        assert!(hosts.lookup("primary").is_empty());
        assert!(hosts.lookup("broken").is_empty());
        assert!(hosts.lookup("linklocal").is_empty());
        assert!(hosts.lookup("search").is_empty());
        assert!(Hosts::parse("").lookup("localhost").is_empty());
    }

    #[test]
    fn duplicate_lines_give_one_address() {
        let hosts = Hosts::parse("127.0.0.1 a\n127.0.0.1 a b\n");
        assert_eq!(hosts.lookup("a"), [ip("127.0.0.1")]);
    }
}

/// Property test: /etc/hosts is the image's; any text parses without panic.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_text_parses(text in any::<String>(), name in any::<String>()) {
            let _ = Hosts::parse(&text).lookup(&name);
        }

        #[test]
        fn listed_names_are_found(a in any::<[u8; 4]>(), name in "[a-zA-Z][a-zA-Z0-9.-]{0,20}") {
            let ip = IpAddr::from(a);
            let hosts = Hosts::parse(&format!("# comment\n{ip}\t{name} alias\n"));
            prop_assert_eq!(hosts.lookup(&name.to_ascii_uppercase()), vec![ip]);
        }
    }
}
