//! The settings table: every setting initd knows, once, with its kind, its
//! default and its help. It drives the unknown-setting check (with a "did
//! you mean"), `--help`, `initd config` and the table in docs/settings.md,
//! so a setting cannot exist in one place and be missing from another.

/// How a setting's text is read, which also decides how a TOML value is
/// turned into it and how `initd config` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Duration,
    Bool,
    Number,
    /// Comma-separated in the environment, an array in TOML.
    List,
    /// Commands separated by `;` in the environment, an array in TOML.
    Commands,
    /// `name=command` pairs separated by `;` in the environment, a table in
    /// TOML.
    Table,
}

pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub help: &'static str,
    pub example: &'static str,
}

impl Setting {
    /// The TOML key: the variable without `INITD_`, in lower case.
    pub fn key(&self) -> String {
        self.name
            .strip_prefix(PREFIX)
            .unwrap_or(self.name)
            .to_ascii_lowercase()
    }
}

const fn setting(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    help: &'static str,
    example: &'static str,
) -> Setting {
    Setting {
        name,
        kind,
        default,
        help,
        example,
    }
}

pub const SETTINGS: &[Setting] = &[
    setting(
        "INITD_CONFIG",
        Kind::Text,
        "/etc/initd.toml",
        "the TOML settings file (read when it exists; environment only)",
        "/app/initd.toml",
    ),
    setting(
        "INITD_SECRETS_DIRS",
        Kind::List,
        "/run/secrets",
        "NAME_FILE is a Docker secret when its path is inside one of these directories (environment only)",
        "/run/secrets,/etc/app-secrets",
    ),
    setting(
        "INITD_SECRETS",
        Kind::List,
        "",
        "NAMEs whose NAME_FILE is a secret wherever it points (environment only)",
        "DB_PASSWORD,API_KEY",
    ),
    setting(
        "INITD_SIGNAL_TARGET",
        Kind::Text,
        "child",
        "who gets forwarded signals: `child` (the main child) or `group` (its process group)",
        "group",
    ),
    setting(
        "INITD_SIGNAL_MAP",
        Kind::Text,
        "",
        "rewrite signals before forwarding: FROM:TO or FROM:none, comma-separated",
        "TERM:QUIT,WINCH:none",
    ),
    setting(
        "INITD_STOP_TIMEOUT",
        Kind::Duration,
        "8s",
        "grace period after the stop signal before SIGKILL",
        "25s",
    ),
    setting(
        "INITD_STOP_EXIT",
        Kind::Text,
        "keep",
        "a child that dies of the stop signal initd forwarded: `keep` reports 128+N (143 after docker stop), as shells do; `zero` reports 0",
        "zero",
    ),
    setting(
        "INITD_LOG",
        Kind::Text,
        "info",
        "initd's own log level: off, error, warn, info, debug, trace",
        "debug",
    ),
    setting(
        "INITD_LOG_FORMAT",
        Kind::Text,
        "text",
        "`text` (one `initd:` line each) or `json` (one JSON object a line)",
        "json",
    ),
    setting(
        "INITD_USER",
        Kind::Text,
        "app",
        "the user the app runs as: name, uid, uid:gid or name:group",
        "1000:1000",
    ),
    setting(
        "INITD_ALLOW_ROOT",
        Kind::Bool,
        "false",
        "allow the app to run as root (uid 0)",
        "true",
    ),
    setting(
        "INITD_NO_NEW_PRIVS",
        Kind::Bool,
        "true",
        "set no_new_privs on every command initd starts: setuid programs (sudo, su) cannot raise privileges; `false` lets them",
        "false",
    ),
    setting(
        "HOST_UID",
        Kind::Number,
        "",
        "give the app user this uid (rewrites /etc/passwd, chowns its home) so bind-mounted files belong to you: 1 to 2147483647 (0 only with INITD_ALLOW_ROOT: then nothing changes)",
        "501",
    ),
    setting(
        "PUID",
        Kind::Number,
        "",
        "another name for HOST_UID (the linuxserver.io images' name); setting both to different values is an error",
        "501",
    ),
    setting(
        "HOST_GID",
        Kind::Number,
        "",
        "give the app user's group this gid (rewrites /etc/group; a primary group 0 is never renumbered, the user leaves it): 1 to 2147483647 (0 only with INITD_ALLOW_ROOT)",
        "20",
    ),
    setting(
        "PGID",
        Kind::Number,
        "",
        "another name for HOST_GID (the linuxserver.io images' name); setting both to different values is an error",
        "20",
    ),
    setting(
        "INITD_CHOWN",
        Kind::List,
        "",
        "paths chowned (recursively) to the app user before the drop, comma-separated; no symbolic link is followed, files with several hard links and other mounts are left alone",
        "/app/media,/app/var",
    ),
    setting(
        "INITD_WAIT_FOR",
        Kind::List,
        "",
        "wait until these answer before migrating: tcp://host:port, http://host[:port]/path",
        "tcp://db:5432",
    ),
    setting(
        "INITD_WAIT_TIMEOUT",
        Kind::Duration,
        "60s",
        "give up on INITD_WAIT_FOR after this long (exit 69)",
        "2m",
    ),
    setting(
        "INITD_MIGRATE",
        Kind::Text,
        "auto",
        "the migration command; `auto`: `python manage.py migrate --noinput` when manage.py exists; `off`: none",
        "flask db upgrade",
    ),
    setting(
        "INITD_MIGRATE_LOCK",
        Kind::Text,
        "off",
        "`postgres`: hold a PostgreSQL advisory lock (over DATABASE_URL, with PGPASSWORD when the URL has no password) while migrating, so replicas migrate one at a time",
        "postgres",
    ),
    setting(
        "INITD_MIGRATE_LOCK_TIMEOUT",
        Kind::Duration,
        "10m",
        "with INITD_MIGRATE_LOCK=postgres: give up (exit 69, naming the lock and its holder) when PostgreSQL cannot be reached or the lock not taken within this long",
        "30m",
    ),
    setting(
        "INITD_PRESTART",
        Kind::Commands,
        "",
        "commands run after the migration, in order; `;`-separated (an array in TOML)",
        "python manage.py collectstatic --noinput",
    ),
    setting(
        "INITD_SERVER",
        Kind::Text,
        "",
        "the server command for `initd run`; unset: gunicorn with production defaults",
        "uvicorn app:app --host 0.0.0.0",
    ),
    setting(
        "INITD_APP",
        Kind::Text,
        "",
        "the WSGI app for gunicorn; unset: from FLASK_APP, the one `*/wsgi.py`, or `wsgi.py`/`app.py` in the working directory",
        "mysite.wsgi:application",
    ),
    setting(
        "INITD_WORKERS",
        Kind::Number,
        "",
        "gunicorn workers; unset: 2 x CPUs + 1, CPUs from the container's cgroup quota",
        "4",
    ),
    setting(
        "INITD_FORWARDED_ALLOW_IPS",
        Kind::Text,
        "",
        "gunicorn --forwarded-allow-ips: proxies trusted for X-Forwarded-*",
        "10.0.0.0/8",
    ),
    setting(
        "PORT",
        Kind::Number,
        "8000",
        "the port the server binds on 0.0.0.0",
        "8080",
    ),
    setting(
        "AUTO_START_SERVER",
        Kind::Bool,
        "false",
        "`initd dev`: run migrations and start the dev server; false: idle, awaiting `docker compose exec`",
        "true",
    ),
    setting(
        "INITD_DEV_SETUP",
        Kind::Commands,
        "",
        "`initd dev`: commands run once first; `CMD unless PATH` skips CMD when PATH exists",
        "npm ci unless node_modules",
    ),
    setting(
        "INITD_WATCHERS",
        Kind::Table,
        "",
        "`initd dev`: long-running asset watchers, `name=command` separated by `;` (a table in TOML)",
        "css=npm run watch:css; js=npm run watch:js",
    ),
    setting(
        "INITD_DEV_SERVER",
        Kind::Text,
        "",
        "`initd dev`: the dev server; unset: runserver (manage.py), flask run (FLASK_APP), or gunicorn with one worker",
        "uvicorn app:app --port 8000",
    ),
    setting(
        "INITD_RELOAD_PATHS",
        Kind::List,
        "",
        "`initd dev`: where to watch for changes (default: the working directory)",
        "/app/src,/app/templates",
    ),
    setting(
        "INITD_RELOAD_INCLUDE",
        Kind::List,
        "",
        "`initd dev`: file name patterns whose change restarts the server (default: Python, template and config files)",
        "*.py,*.html",
    ),
    setting(
        "INITD_RELOAD_IGNORE",
        Kind::List,
        "",
        "`initd dev`: names never watched (default: .git, __pycache__, node_modules, .venv, *.pyc, editor swap files)",
        "*.pyc,build",
    ),
    setting(
        "INITD_RELOAD_POLL",
        Kind::Duration,
        "",
        "`initd dev`: poll for changes at this interval instead of inotify; `off`: inotify only (default: inotify, plus polling every 1s on file systems not known to be local: fuse, 9p, virtiofs, nfs, …)",
        "1s",
    ),
    setting(
        "INITD_SOCKET",
        Kind::Text,
        "/run/initd/initd.sock",
        "the control socket `initd check` and `initd status` ask, served by the container's entrypoint initd (PID 1 or under another init, never a guest); when initd starts as root, its directory must be writable by root only; `off`: none",
        "/tmp/initd/initd.sock",
    ),
    setting(
        "INITD_CHECK_TIMEOUT",
        Kind::Duration,
        "2s",
        "`initd check`: report unhealthy when the supervisor has not answered within this long",
        "5s",
    ),
    setting(
        "INITD_HEALTH",
        Kind::Text,
        "",
        "what `initd check` tests once the server runs: http://HOST:PORT/PATH (2xx/3xx), tcp://HOST:PORT, cmd:COMMAND (exit 0, as the app user); unset: the main child is alive",
        "http://127.0.0.1:8000/healthz",
    ),
    setting(
        "INITD_HEALTH_TIMEOUT",
        Kind::Duration,
        "1s",
        "a probe that takes longer fails (keep it below INITD_CHECK_TIMEOUT)",
        "3s",
    ),
    setting(
        "INITD_DRAIN",
        Kind::Duration,
        "0s",
        "on the first stop signal, fail checks for this long before the server gets the stop signal; a second one skips the rest",
        "5s",
    ),
    setting(
        "GUNICORN_ARGUMENTS",
        Kind::Text,
        "",
        "extra gunicorn arguments, appended last (so they win)",
        "--timeout 60 --max-requests 1000",
    ),
    setting(
        "PYTHONUNBUFFERED",
        Kind::Text,
        "1",
        "passed to every command unless set: Python's output reaches the logs as it is written; set it empty to turn it off",
        "",
    ),
    setting(
        "PYTHONDONTWRITEBYTECODE",
        Kind::Text,
        "1",
        "`initd dev`: passed to its commands unless set, so no stale `__pycache__` is served after a quick edit; set it empty to turn it off",
        "",
    ),
];

pub(super) const PREFIX: &str = "INITD_";

/// Settings read before the file (the file's own name, and which variables
/// are secrets: a setting may itself come from a secret).
pub const ENV_ONLY: [&str; 3] = ["INITD_CONFIG", "INITD_SECRETS_DIRS", "INITD_SECRETS"];

/// docs/settings.md's table is generated from [`SETTINGS`]: this test fails
/// when the two drift apart, and `INITD_BLESS=1 cargo test --lib
/// settings_page` writes the table anew (run it after adding or changing a
/// setting, and after merging branches that did).
#[cfg(test)]
mod settings_page {
    use super::*;

    const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md");
    const BEGIN: &str = "<!-- BEGIN settings table: generated from SETTINGS in src/config/settings.rs by `INITD_BLESS=1 cargo test --lib settings_page`; do not edit -->\n";
    const END: &str = "<!-- END settings table -->\n";

    /// Markdown table cells cannot hold a `|` or a line break.
    fn cell(text: &str) -> String {
        text.replace('|', "\\|").replace('\n', " ")
    }

    pub fn table() -> String {
        let mut out = String::from("| Variable | Default | Meaning | Example |\n|---|---|---|---|\n");
        for s in SETTINGS {
            let default = if s.default.is_empty() {
                "unset".to_string()
            } else {
                format!("`{}`", s.default)
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | `{}` |\n",
                s.name,
                cell(&default),
                cell(s.help),
                cell(s.example)
            ));
        }
        out
    }

    /// The page with its table replaced by a fresh one.
    fn regenerated(page: &str) -> Option<String> {
        let start = page.find(BEGIN)? + BEGIN.len();
        let end = start + page[start..].find(END)?;
        Some(format!("{}{}{}", &page[..start], table(), &page[end..]))
    }

    #[test]
    fn the_settings_page_matches_the_settings_table() {
        let page = std::fs::read_to_string(PAGE).unwrap();
        let fresh = regenerated(&page).expect("docs/settings.md has lost its BEGIN/END markers");
        if std::env::var_os("INITD_BLESS").is_some() {
            if fresh != page {
                std::fs::write(PAGE, &fresh).unwrap();
            }
            return;
        }
        assert!(
            fresh == page,
            "docs/settings.md's table differs from SETTINGS in src/config/settings.rs; \
             regenerate it with: INITD_BLESS=1 cargo test --lib settings_page"
        );
        for s in SETTINGS {
            assert!(page.contains(&format!("| `{}` |", s.name)), "{}", s.name);
        }
    }

    #[test]
    fn the_table_has_one_row_per_setting_and_escapes_pipes() {
        let table = table();
        assert_eq!(table.lines().count(), SETTINGS.len() + 2);
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        let page = format!("intro\n{BEGIN}| old |\n{END}after\n");
        assert_eq!(
            regenerated(&page).unwrap(),
            format!("intro\n{BEGIN}{table}{END}after\n")
        );
        assert_eq!(regenerated("no markers"), None);
    }
}
