//! `initd config`: the effective settings as TOML, each with where it came
//! from, then the plan `initd run` would follow. Secret values never
//! appear: a value that came from a secret file is printed as `***`.

use std::fmt::Write;

use crate::cmdline;
use crate::config::{Health, Kind, Layers, Raw, SETTINGS, Source, text_of};
use crate::health::probe::Probe;
use crate::pipeline::entrypoint::Plan;
use crate::pipeline::secrets::LeftAlone;
use crate::pipeline::user::DropDecision;
use crate::units::human_duration;

pub fn settings(layers: &Layers) -> String {
    let mut out = String::from("# initd configuration: every setting, with where its value came from\n");
    for setting in SETTINGS {
        let key = setting.key();
        let source = layers.source(setting.name);
        let value = match (layers.get(setting.name), &source) {
            (Some(_), Source::Secret) => Some("\"***\"".to_string()),
            (Some(raw), _) => Some(toml_value(setting.kind, raw)),
            (None, _) if !setting.default.is_empty() => {
                Some(toml_value(setting.kind, &Raw::Text(setting.default.into())))
            }
            (None, _) => None,
        };
        let origin = match &source {
            Source::Default => "default".to_string(),
            Source::File(path) => format!("file {}", path.display()),
            Source::Env => format!("env {}", setting.name),
            Source::Secret => format!("secret {}_FILE", setting.name),
        };
        let line = match value {
            Some(v) => format!("{key} = {v}"),
            None => format!("# {key} = (unset)"),
        };
        let _ = writeln!(out, "{line:<48} # {origin}");
    }
    out
}

/// Renders a value as TOML: numbers and booleans bare, lists as arrays,
/// watchers as an inline table, everything else as a quoted string.
fn toml_value(kind: Kind, raw: &Raw) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let array = |items: Vec<String>| {
        format!(
            "[{}]",
            items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let text = text_of(raw);
    match (kind, raw) {
        (Kind::List | Kind::Commands, Raw::Items(items)) => array(items.clone()),
        (Kind::List, _) => array(
            text.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ),
        (Kind::Commands, _) => array(cmdline::split_commands(&text)),
        (Kind::Table, _) => {
            let pairs: Vec<String> = cmdline::split_commands(&text)
                .iter()
                .filter_map(|entry| entry.split_once('='))
                .map(|(k, v)| format!("{} = {}", k.trim(), quote(v.trim())))
                .collect();
            format!("{{ {} }}", pairs.join(", "))
        }
        (Kind::Number, _) if text.trim().parse::<i64>().is_ok() => text.trim().to_string(),
        (Kind::Bool, _) if matches!(text.trim(), "true" | "false") => text.trim().to_string(),
        _ => quote(&text),
    }
}

/// The `*_FILE` variables that were not taken for Docker secrets, one line
/// each with the reason: names and paths only, never a file's content.
pub fn left_alone(left: &[LeftAlone]) -> String {
    if left.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# *_FILE variables left as they are (not Docker secrets)\n");
    for l in left {
        let _ = writeln!(out, "# {}", one_line(&l.to_string()));
    }
    out
}

/// A value with control characters (a newline in a variable) escaped, so
/// one entry stays one comment line.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

pub fn plan(plan: &Plan) -> String {
    let mut out = String::from("\n# the plan: what `initd run` does, in order\n");
    let user = plan.user.user();
    let groups: Vec<String> = user.groups.iter().map(u32::to_string).collect();
    let how = match &plan.user.decision {
        DropDecision::Drop(_) => "initd drops from root to this user",
        DropDecision::Skip(_) => "initd already runs as this user",
    };
    let _ = writeln!(
        out,
        "# user: {} (uid {}, gid {}, groups {}); {how}",
        user.name,
        user.uid,
        user.gid,
        groups.join(",")
    );
    if plan.user.host_uid.is_some() || plan.user.host_gid.is_some() {
        let id = |v: Option<u32>| v.map_or("unchanged".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "# renumber the user first: uid {}, gid {}",
            id(plan.user.host_uid),
            id(plan.user.host_gid)
        );
    }
    for path in &plan.user.chown {
        let _ = writeln!(out, "# chown -R {}: {}", user.name, path.display());
    }
    if !plan.wait_for.is_empty() {
        let list: Vec<String> = plan.wait_for.iter().map(|t| t.to_string()).collect();
        let _ = writeln!(out, "# wait for: {}", list.join(", "));
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let lock = if step.locked {
            " (holding the PostgreSQL migration lock)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "# {}. {}{lock}: {}",
            i + 1,
            step.what,
            cmdline::join(&step.argv)
        );
    }
    let _ = writeln!(
        out,
        "# {}. {}: {}",
        plan.steps.len() + 1,
        plan.main_what,
        cmdline::join(&plan.main)
    );
    if let Some(rule) = &plan.app_rule {
        let _ = writeln!(out, "# the WSGI app is taken from {rule}");
    }
    for (name, value) in &plan.env_defaults {
        let _ = writeln!(
            out,
            "# environment: {name}={value} (initd's default; set {name} to change it, empty to turn it off)"
        );
    }
    out.push_str(&health(&plan.health));
    for warning in &plan.warnings {
        let _ = writeln!(out, "# warning: {warning}");
    }
    out
}

/// How checks are answered and what a stop does first.
fn health(h: &Health) -> String {
    let mut out = String::new();
    let Some(socket) = &h.socket else {
        out.push_str("# health: no control socket (INITD_SOCKET=off): `initd check` always fails\n");
        return out;
    };
    let probe = match &h.probe {
        Probe::Alive => "the main child being alive".to_string(),
        probe => format!("{probe} (within {})", human_duration(h.probe_timeout)),
    };
    let _ = writeln!(
        out,
        "# health: `initd check` asks {}; once the server runs it tests {probe}",
        socket.display()
    );
    if !h.drain.is_zero() {
        let _ = writeln!(
            out,
            "# on a stop: checks fail for {} (INITD_DRAIN) before the server gets the stop signal",
            human_duration(h.drain)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{env_layer, file_layer};
    use std::ffi::OsString;
    use std::path::Path;

    #[test]
    fn each_value_says_where_it_came_from() {
        let file = file_layer(
            Path::new("/etc/initd.toml"),
            "prestart = [\"echo one\"]\nport = 9000\n",
        )
        .unwrap();
        let env = env_layer(
            vec![
                (OsString::from("INITD_STOP_TIMEOUT"), OsString::from("5s")),
                (
                    OsString::from("GUNICORN_ARGUMENTS"),
                    OsString::from("--certfile hunter2"),
                ),
            ],
            &["GUNICORN_ARGUMENTS".to_string()],
        )
        .unwrap();
        let text = settings(&file.overlaid(env));
        let line = |key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            line("stop_timeout = \"5s\"").ends_with("# env INITD_STOP_TIMEOUT"),
            "{text}"
        );
        assert!(line("port = 9000").ends_with("# file /etc/initd.toml"), "{text}");
        assert!(
            line("prestart = [\"echo one\"]").ends_with("# file /etc/initd.toml"),
            "{text}"
        );
        assert!(line("signal_target = \"child\"").ends_with("# default"), "{text}");
        assert!(
            line("gunicorn_arguments = \"***\"").ends_with("# secret GUNICORN_ARGUMENTS_FILE"),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
        assert!(text.contains("# app = (unset)"), "{text}");
    }

    #[test]
    fn the_plan_says_how_checks_are_answered() {
        let mut h = crate::config::from_env(Vec::<(OsString, OsString)>::new())
            .unwrap()
            .health;
        assert_eq!(
            health(&h),
            "# health: `initd check` asks /run/initd/initd.sock; once the server runs it tests the main child being alive\n"
        );
        h.probe = "http://127.0.0.1:8000/healthz".parse().unwrap();
        h.drain = std::time::Duration::from_secs(5);
        let text = health(&h);
        assert!(
            text.contains("it tests http://127.0.0.1:8000/healthz (within 1s)\n"),
            "{text}"
        );
        assert!(text.ends_with(
            "# on a stop: checks fail for 5s (INITD_DRAIN) before the server gets the stop signal\n"
        ));
        h.socket = None;
        assert!(health(&h).contains("INITD_SOCKET=off"));
    }

    #[test]
    fn file_variables_left_alone_are_listed_one_line_each() {
        use crate::pipeline::secrets::Why;
        assert_eq!(left_alone(&[]), "");
        let text = left_alone(&[
            LeftAlone {
                var: "TF_CLI_CONFIG_FILE".into(),
                value: "/home/u/.terraformrc".into(),
                why: Why::Outside("/run/secrets".into()),
            },
            LeftAlone {
                var: "ODD_FILE".into(),
                value: "a\nb".into(),
                why: Why::NotAbsolute,
            },
        ]);
        assert_eq!(
            text,
            "\n# *_FILE variables left as they are (not Docker secrets)\n\
             # TF_CLI_CONFIG_FILE=/home/u/.terraformrc: outside the secrets directories \
             (/run/secrets, INITD_SECRETS_DIRS); if it is a Docker secret, add TF_CLI_CONFIG to \
             INITD_SECRETS\n\
             # ODD_FILE=\"a\\nb\": not an absolute path; if it is a Docker secret, add ODD to \
             INITD_SECRETS\n"
        );
        let whole = format!("{}{text}", settings(&Layers::default()));
        assert!(whole.parse::<toml::Table>().is_ok(), "{whole}");
    }

    #[test]
    fn the_output_is_valid_toml() {
        let text = settings(&Layers::default());
        let table: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(table["stop_timeout"].as_str(), Some("8s"));
        assert_eq!(table["port"].as_integer(), Some(8000));
    }
}
