//! `DATABASE_URL` as the Python world writes it (Django's dj-database-url,
//! SQLAlchemy, libpq): `postgres[ql]://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=…`.
//!
//! The password must never reach a log line or an error message, so every
//! message about the URL shows it through [`redact`], and [`LockTarget`]'s
//! `Debug` and `Display` print `***` in its place.

use std::fmt;
use std::net::IpAddr;

use super::LockError;

pub const DEFAULT_PORT: u16 = 5432;

/// Where to take the lock: a parsed `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct LockTarget {
    pub(super) user: String,
    pub(super) password: Option<String>,
    /// A name, or an IP literal without the brackets of the URL form.
    pub(super) host: String,
    pub(super) port: u16,
    /// None: the server's default, a database named like the user.
    pub(super) dbname: Option<String>,
}

impl LockTarget {
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The host when it is an IP literal: then no resolver is needed.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for LockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}", self.user)?;
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        if self.host.contains(':') {
            write!(f, "@[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "@{}:{}", self.host, self.port)?;
        }
        if let Some(db) = &self.dbname {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LockTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockTarget")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .finish()
    }
}

/// Parses a `DATABASE_URL`. Query parameters other than the ones libpq
/// shares with us (`sslmode`, `host`, `port`, `user`, `password`, `dbname`)
/// are ignored, so a URL that also carries settings for the app's own
/// driver (`connect_timeout`, `application_name`, …) still works.
pub fn parse_database_url(url: &str) -> Result<LockTarget, LockError> {
    let bad = |reason: String| LockError::BadUrl {
        url: redact(url),
        reason,
    };
    let rest = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|scheme| strip_prefix_ignore_case(url, scheme))
        .ok_or_else(|| bad("expected postgres://USER:PASSWORD@HOST:PORT/DBNAME".into()))?;
    let whole = rest;
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));

    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    // An '@' after the host part (outside a `user=` parameter) means a
    // password with an unescaped '/', '?' or '#' ended the host part early.
    // Caught first, because any later message quoting a piece of the URL
    // (the "port") would quote a piece of that password.
    let stray_at = whole
        .split(['?', '&'])
        .any(|piece| piece.contains('@') && !piece.starts_with("user="));
    if userinfo.is_none() && stray_at {
        return Err(bad(
            "the user or password contains a reserved character; percent-encode it \
             ('/' %2F, '?' %3F, '#' %23, '@' %40, ':' %3A)"
                .into(),
        ));
    }

    let mut target = LockTarget {
        user: String::new(),
        password: None,
        host: String::new(),
        port: DEFAULT_PORT,
        dbname: None,
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        target.user = decode(user).map_err(|e| bad(format!("user name: {e}")))?;
        target.password = password
            .map(|p| decode(p).map_err(|e| bad(format!("password: {e}"))))
            .transpose()?;
    }
    let (host, port) = split_host_port(hostport).map_err(&bad)?;
    target.host = decode(host).map_err(|e| bad(format!("host: {e}")))?;
    if let Some(port) = port {
        target.port = parse_port(port).map_err(&bad)?;
    }
    if !path.is_empty() {
        target.dbname = Some(decode(path).map_err(|e| bad(format!("database name: {e}")))?);
    }

    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad(format!("query parameter {:?} has no value", redact_param(pair))))?;
        let shown = if is_plain_key(key) { key } else { "***" };
        let value = decode(value).map_err(|e| bad(format!("parameter {shown}: {e}")))?;
        match key {
            "sslmode" => check_sslmode(&value).map_err(&bad)?,
            "host" => target.host = value,
            "port" => target.port = parse_port(&value).map_err(&bad)?,
            "user" => target.user = value,
            "password" => target.password = Some(value),
            "dbname" => target.dbname = Some(value),
            _ => {}
        }
    }

    if target.host.is_empty() || target.host.starts_with('/') {
        return Err(bad(
            "no host: Unix-domain sockets are not supported, give a host name or IP address".into(),
        ));
    }
    if target.host.contains(',') {
        return Err(bad("several hosts are not supported".into()));
    }
    if target.user.is_empty() {
        // libpq would fall back to the OS user, which means asking NSS.
        return Err(bad("no user name (postgres://USER:PASSWORD@HOST/DBNAME)".into()));
    }
    if target.dbname.as_deref() == Some("") {
        target.dbname = None;
    }
    Ok(target)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in the host".to_string())?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected {} after the host", shown(after))),
            },
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    })
}

fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("port {} is not a number from 1 to 65535", shown(port))),
    }
}

/// No TLS client is built in (it would double initd's size), so a URL that
/// insists on TLS is refused rather than silently downgraded.
fn check_sslmode(mode: &str) -> Result<(), String> {
    match mode {
        "disable" | "allow" | "prefer" => Ok(()),
        "require" | "verify-ca" | "verify-full" => Err(format!(
            "sslmode={mode}: initd has no TLS support; the migration lock needs sslmode=disable or \
             prefer (or a database reachable without TLS)"
        )),
        _ => Err(format!(
            "sslmode={}: expected disable, allow, prefer, require, verify-ca or verify-full",
            shown(mode)
        )),
    }
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "a '%' not followed by two hex digits".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not valid UTF-8 once percent-decoded".to_string())
}

/// Query parameters whose values are never secret: shown as they are in
/// messages. Any other value is hidden, so a misspelt `pasword=` (or an
/// unescaped `&` in a password) still keeps the password out of the logs.
const PLAIN_PARAMS: &[&str] = &[
    "sslmode",
    "host",
    "port",
    "user",
    "dbname",
    "connect_timeout",
    "application_name",
];

/// The URL with any password replaced by `***`, for messages. It works on
/// malformed URLs too and errs on the side of hiding: the URL is cut into
/// its parts (scheme, user, host, database, query), and a part that does
/// not look like what belongs there goes whole, since it may be a piece of
/// a password that an unescaped '/', '?', '#' or '@' moved. The password
/// itself goes, everything between the first ':' of the user part and the
/// last '@'; in the query only the values of [`PLAIN_PARAMS`] stay; a
/// fragment goes whole.
pub fn redact(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            let plain = scheme.starts_with(|c: char| c.is_ascii_alphabetic()) && is_plain(scheme, "+.-");
            out.push_str(if plain { scheme } else { "***" });
            out.push_str("://");
            rest
        }
        None => url,
    };
    let rest = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _)) if is_plain(user, "_.%-") => {
                    out.push_str(user);
                    out.push_str(":***@");
                }
                None if is_plain(userinfo, "_.%-") => {
                    out.push_str(userinfo);
                    out.push('@');
                }
                // Not a user name at all: the '@' belongs to something
                // else (a value in the query, a password itself), so
                // nothing around it can be told apart from a password.
                _ => {
                    out.push_str("***@***");
                    return out;
                }
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    let (main, fragment) = match rest.split_once('#') {
        Some((main, _)) => (main, true),
        None => (rest, false),
    };
    let (main, query) = match main.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (main, None),
    };
    let (hostport, dbname) = match main.split_once('/') {
        Some((hostport, dbname)) => (hostport, Some(dbname)),
        None => (main, None),
    };
    out.push_str(if is_plain(hostport, "_.-:[]%") {
        hostport
    } else {
        "***"
    });
    if let Some(dbname) = dbname {
        out.push('/');
        out.push_str(if is_plain(dbname, "_.-%") { dbname } else { "***" });
    }
    if let Some(query) = query {
        let pieces: Vec<String> = query.split('&').map(redact_param).collect();
        out.push('?');
        out.push_str(&pieces.join("&"));
    }
    if fragment {
        out.push_str("#***");
    }
    out
}

/// A piece of the URL quoted for a message, or `"***"` when it holds more
/// than a host, port or keyword would: it may have run on into a password.
fn shown(piece: &str) -> String {
    if is_plain(piece, "_.-%:[]") {
        format!("{piece:?}")
    } else {
        "\"***\"".into()
    }
}

/// Letters, digits and the `extra` characters only.
fn is_plain(text: &str, extra: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// One query parameter for a message: `key=value` with the value hidden
/// unless the key is one of [`PLAIN_PARAMS`] and the value looks like one;
/// a piece without `=` (perhaps a password cut off by an unescaped `&`) is
/// hidden whole.
fn redact_param(pair: &str) -> String {
    match pair.split_once('=') {
        // A value with other characters may have run on into a password.
        Some((key, value)) if PLAIN_PARAMS.contains(&key) && is_plain(value, "_.-%:,[]") => {
            format!("{key}={value}")
        }
        Some((key, _)) if is_plain_key(key) => format!("{key}=***"),
        None if PLAIN_PARAMS.contains(&pair) => pair.into(),
        _ if pair.is_empty() => String::new(),
        _ => "***".into(),
    }
}

/// A parameter name that can be shown: letters, digits and `_` only (a
/// name holding anything else may be a piece of a password).
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && is_plain(key, "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> LockTarget {
        parse_database_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn error(url: &str) -> String {
        let err = parse_database_url(url).expect_err(url).to_string();
        assert!(!err.contains("s3cret"), "password leaked: {err}");
        err
    }

    #[test]
    fn full_url() {
        let t = parse("postgres://app:s3cret@db.internal:6543/shop");
        assert_eq!(t.user(), "app");
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.host(), "db.internal");
        assert_eq!(t.port(), 6543);
        assert_eq!(t.dbname(), Some("shop"));
        assert_eq!(t.ip(), None);
    }

    #[test]
    fn defaults_and_both_schemes() {
        let t = parse("postgresql://app@10.0.0.5");
        assert_eq!(t.port(), 5432);
        assert_eq!(t.password, None);
        assert_eq!(t.dbname(), None);
        assert_eq!(t.ip(), Some("10.0.0.5".parse().unwrap()));
        assert_eq!(parse("POSTGRES://app@h/").dbname(), None);
    }

    #[test]
    fn percent_decoding() {
        let t = parse("postgres://me%40corp:p%2Fa%3Fs%23s%3A%40@h/my%20db");
        assert_eq!(t.user(), "me@corp");
        assert_eq!(t.password.as_deref(), Some("p/a?s#s:@"));
        assert_eq!(t.dbname(), Some("my db"));
        assert!(error("postgres://app:s3cret@h/d%zz").contains("database name"));
        assert!(error("postgres://app:s3cret%ff@h/d").contains("password: not valid UTF-8"));
    }

    #[test]
    fn unescaped_at_in_the_password_is_taken_up_to_the_last_at() {
        assert_eq!(parse("postgres://app:p@ss@h/d").password.as_deref(), Some("p@ss"));
    }

    #[test]
    fn ipv6_hosts() {
        let t = parse("postgres://app:s3cret@[::1]:5433/d");
        assert_eq!(t.host(), "::1");
        assert_eq!(t.port(), 5433);
        assert_eq!(t.ip(), Some("::1".parse().unwrap()));
        assert_eq!(t.to_string(), "postgres://app:***@[::1]:5433/d");
        assert_eq!(parse("postgres://app@[fe80::1]/d").port(), 5432);
        assert!(error("postgres://app:s3cret@[::1/d").contains("unclosed"));
    }

    #[test]
    fn sslmode() {
        assert!(parse_database_url("postgres://app@h/d?sslmode=disable").is_ok());
        assert!(parse_database_url("postgres://app@h/d?sslmode=prefer").is_ok());
        let err = error("postgres://app:s3cret@h/d?sslmode=require");
        assert!(err.contains("sslmode=require: initd has no TLS support"), "{err}");
        assert!(error("postgres://app:s3cret@h/d?sslmode=verify-full").contains("no TLS support"));
        assert!(error("postgres://app:s3cret@h/d?sslmode=maybe").contains("expected disable"));
    }

    #[test]
    fn query_parameters_override_and_unknown_ones_are_ignored() {
        let t = parse("postgres://x@h/d?connect_timeout=5&user=app&password=s3cret&port=6000&dbname=db2");
        assert_eq!(t.user(), "app");
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.port(), 6000);
        assert_eq!(t.dbname(), Some("db2"));
        assert_eq!(parse("postgres://app@/d?host=db").host(), "db");
        assert_eq!(parse("postgres://h/d?user=me@corp").user(), "me@corp");
    }

    #[test]
    fn malformed_urls_name_the_variable_and_hide_the_password() {
        for (url, reason) in [
            ("mysql://app:s3cret@h/d", "expected postgres://"),
            ("app:s3cret@h/d", "expected postgres://"),
            ("postgres://app:s3cret@h:54x2/d", "port \"54x2\""),
            ("postgres://app:s3cret@h:0/d", "port \"0\""),
            ("postgres://app:s3cret@/d", "Unix-domain sockets"),
            (
                "postgres://app:s3cret@h/d?host=/run/postgresql",
                "Unix-domain sockets",
            ),
            ("postgres://app:s3cret@h1,h2/d", "several hosts"),
            ("postgres://:s3cret@h/d", "no user name"),
            ("postgres://h/d", "no user name"),
            ("postgres://app:s3/cret@h/d", "percent-encode"),
            ("postgres://app:s3?cret@h/d", "percent-encode"),
            ("postgres://app:s3#cret@h/d", "percent-encode"),
            ("postgres://app:123?s3cret=1@h/d", "percent-encode"),
            ("postgres://app:s3cret?x@h/d", "percent-encode"),
            ("postgres://app@h/d?password", "has no value"),
        ] {
            let err = error(url);
            assert!(err.starts_with("DATABASE_URL=\""), "{url}: {err}");
            assert!(err.contains(reason), "{url}: {err}");
        }
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("postgres://app:s3cret@h/d"), "postgres://app:***@h/d");
        assert_eq!(redact("postgres://app@h/d"), "postgres://app@h/d");
        assert_eq!(redact("postgres://h:5432/d"), "postgres://h:5432/d");
        assert_eq!(redact("postgres://app:s3/cr@et@h/d"), "postgres://app:***@h/d");
        assert_eq!(redact("app:s3cret@h"), "app:***@h");
        assert_eq!(
            redact("postgres://app@h/d?password=s3cret&sslmode=disable"),
            "postgres://app@h/d?password=***&sslmode=disable"
        );
        // Misspelt, cut off by an unescaped '&', or after a '#'.
        assert_eq!(
            redact("postgres://app@h/d?pasword=s3cret&sslmode=disable"),
            "postgres://app@h/d?pasword=***&sslmode=disable"
        );
        assert_eq!(
            redact("postgres://app@h/d?password=s3&cret"),
            "postgres://app@h/d?password=***&***"
        );
        assert_eq!(redact("postgres://app@h/d#s3cret"), "postgres://app@h/d#***");
        // An '@' in the query: all before it goes.
        assert_eq!(redact("postgres://h/d?password=s3@cret"), "postgres://***@***");
        assert_eq!(redact_param("password"), "***");
        assert_eq!(redact_param("sslmode"), "sslmode");
        assert_eq!(redact_param("p%7assword=x"), "***");
    }

    #[test]
    fn debug_and_display_hide_the_password() {
        let t = parse("postgres://app:s3cret@db:5432/shop");
        assert_eq!(t.to_string(), "postgres://app:***@db:5432/shop");
        let debug = format!("{t:?}");
        assert!(debug.contains("password: Some(\"***\")"), "{debug}");
        assert!(!debug.contains("s3cret"));
        assert_eq!(parse("postgres://app@db").to_string(), "postgres://app@db:5432");
    }

    /// Property tests: DATABASE_URL carries a password; whatever is wrong
    /// with the URL, the error message must not quote it.
    mod props {
        use super::*;
        use proptest::prelude::*;

        fn junk() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(String::new()),
                Just("%zz".to_string()),
                Just("[".to_string()),
                Just(":".to_string()),
                Just(":99999".to_string()),
                Just("@".to_string()),
                Just("/".to_string()),
                Just("?sslmode=require".to_string()),
                Just("?password".to_string()),
                Just("?x".to_string()),
                Just("#".to_string()),
                Just("%".to_string()),
                "[ -~]{0,4}",
            ]
        }

        proptest! {
            #![proptest_config(crate::props::config())]
            #[test]
            fn the_password_never_reaches_an_error(
                scheme in prop_oneof![Just("postgres://"), Just("POSTGRESQL://"), Just("mysql://"), Just("")],
                user in "[a-z]{0,6}",
                password in "[A-Za-z0-9_.~!$()+,;=-]{6,16}",
                host in "[a-z0-9.]{0,8}",
                cuts in proptest::collection::vec((0usize..60, junk()), 0..3),
                in_query in any::<bool>(),
            ) {
                let mut url = if in_query {
                    format!("{scheme}{host}/db?user={user}&password={password}")
                } else {
                    format!("{scheme}{user}:{password}@{host}:5432/db")
                };
                for (at, text) in cuts {
                    let mut at = at.min(url.len());
                    while !url.is_char_boundary(at) {
                        at -= 1;
                    }
                    url.insert_str(at, &text);
                }
                if let Err(e) = parse_database_url(&url) {
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains(&password), "{url:?} -> {text}");
                }
            }

            #[test]
            fn any_text_never_panics(url in any::<String>()) {
                let _ = parse_database_url(&url);
                let _ = redact(&url);
            }
        }
    }
}
