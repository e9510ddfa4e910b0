//! Which WSGI app gunicorn serves when `INITD_APP` does not say: the rules
//! `flask run` and Django projects follow, first hit wins.
//!
//! 1. `FLASK_APP` in any form `flask run` accepts (`module`, `module:name`,
//!    `module:factory()`, `module:factory("arg")`, `path/to/module.py`),
//!    translated to gunicorn's `module:callable` (gunicorn 20.1 and newer
//!    call `factory(...)` with literal arguments the way Flask does).
//! 2. The one `*/wsgi.py` below the working directory: Django's layout,
//!    callable `application`.
//! 3. `wsgi.py`, then `app.py`, at the root: callable `app` or
//!    `application`, else a `create_app()` or `make_app()` factory, else the
//!    one top-level `NAME = Flask(...)`.
//!
//! A module's callable is decided by reading the file's top-level names,
//! never by importing it: initd is root at this point, and importing runs
//! the app's code. Two candidates under one rule are an error naming both.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// How the app was found: the target for gunicorn and the rule, for
/// `initd config` and the start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `module:callable`, as gunicorn takes it.
    pub target: String,
    pub rule: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WsgiError {
    #[error("FLASK_APP={value:?}: {reason}")]
    FlaskApp { value: String, reason: String },
    #[error(
        "no WSGI app to run: INITD_APP and FLASK_APP are unset and {} has no */wsgi.py, wsgi.py or \
         app.py{detail}; set INITD_APP to the app, e.g. INITD_APP=mysite.wsgi:application or \
         INITD_APP=app:app",
        .cwd.display()
    )]
    NoApp { cwd: PathBuf, detail: String },
    #[error(
        "INITD_APP is unset and {} holds several WSGI apps ({}); set INITD_APP to the one to run, \
         e.g. INITD_APP={}",
        .cwd.display(),
        .found.iter().map(|f| format!("{} in {}", f.0, f.1)).collect::<Vec<_>>().join(", "),
        .found[0].0
    )]
    Several {
        cwd: PathBuf,
        /// (target, file) for each candidate.
        found: Vec<(String, String)>,
    },
}

/// The names a Python file binds at its top level, as far as a line scan
/// can tell without running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopLevel {
    /// Assigned, defined (def, class) or imported names.
    pub names: Vec<String>,
    /// Names assigned `Flask(...)` (or `flask.Flask(...)`).
    pub flask_instances: Vec<String>,
    /// Modules imported from (`from app import app`, `import app`).
    pub imports: Vec<String>,
    /// Functions defined with `def` that can be called without arguments
    /// (factories, as opposed to `def application(environ, start_response)`).
    pub factories: Vec<String>,
}

/// The names Flask looks for, in its order: instances first, then
/// factories, which it calls without arguments.
const INSTANCE_NAMES: [&str; 2] = ["app", "application"];
const FACTORY_NAMES: [&str; 2] = ["create_app", "make_app"];

/// Reads the top-level bindings of a Python source file. Lines inside
/// triple-quoted strings and indented lines (function bodies, `if` blocks)
/// are not top level and are skipped.
pub fn scan(text: &str) -> TopLevel {
    let mut top = TopLevel::default();
    let mut in_string: Option<&str> = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(quote) = in_string {
            if line.matches(quote).count() % 2 == 1 {
                in_string = None;
            }
            continue;
        }
        let opens = ["\"\"\"", "'''"]
            .into_iter()
            .find(|q| line.matches(q).count() % 2 == 1);
        let top_level = !line.starts_with([' ', '\t', '#']);
        if top_level {
            scan_line(line, &mut lines, &mut top);
        }
        if let Some(quote) = opens {
            in_string = Some(quote);
        }
    }
    top
}

fn scan_line<'a>(line: &str, rest: &mut impl Iterator<Item = &'a str>, top: &mut TopLevel) {
    let code = line.split('#').next().unwrap_or("").trim_end();
    if let Some(after) = code.strip_prefix("from ") {
        let Some((module, names)) = after.split_once(" import ") else {
            return;
        };
        top.imports.push(module.trim().to_string());
        let mut names = names.trim().to_string();
        if names.starts_with('(') && !names.contains(')') {
            for more in rest.by_ref() {
                names.push(' ');
                names.push_str(more.split('#').next().unwrap_or(""));
                if more.contains(')') {
                    break;
                }
            }
        }
        let names = names.trim_start_matches('(').trim_end_matches(')');
        for item in names.split(',') {
            if let Some(name) = bound_name(item) {
                top.names.push(name);
            }
        }
    } else if let Some(modules) = code.strip_prefix("import ") {
        for item in modules.split(',') {
            let module = item.split(" as ").next().unwrap_or("").trim();
            top.imports.push(module.to_string());
            if let Some(name) = bound_name(item) {
                top.names.push(name);
            }
        }
    } else if let Some(def) = code
        .strip_prefix("def ")
        .or_else(|| code.strip_prefix("async def "))
        .or_else(|| code.strip_prefix("class "))
    {
        let name: String = def
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !is_identifier(&name) {
            return;
        }
        let is_def = !code.starts_with("class ");
        // `def create_app(config=None):` on one line: every parameter has
        // a default (or is *args, **kwargs).
        let params = def[name.len()..]
            .trim_start()
            .strip_prefix('(')
            .and_then(|p| p.split_once(')'))
            .map(|(params, _)| params);
        let no_required = params.is_some_and(|p| {
            p.split(',')
                .map(str::trim)
                .all(|p| p.is_empty() || p.contains('=') || p.starts_with('*') || p == "/")
        });
        if is_def && no_required {
            top.factories.push(name.clone());
        }
        top.names.push(name);
    } else if let Some((target, value)) = assignment(code) {
        let value = value.trim_start();
        if value.starts_with("Flask(") || value.starts_with("flask.Flask(") {
            top.flask_instances.push(target.clone());
        }
        top.names.push(target);
    }
}

/// The name an import item binds: `b` for `a as b`, `a` for `a`, the first
/// package for `a.b` (as `import a.b` binds `a`).
fn bound_name(item: &str) -> Option<String> {
    let item = item.trim();
    let name = match item.split_once(" as ") {
        Some((_, alias)) => alias.trim(),
        None => item.split('.').next().unwrap_or(""),
    };
    is_identifier(name).then(|| name.to_string())
}

/// `NAME = value` or `NAME: type = value` (not `==`, not `a, b = ...`).
fn assignment(code: &str) -> Option<(String, &str)> {
    let end = code
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(code.len());
    let (name, rest) = code.split_at(end);
    if !is_identifier(name) || is_keyword(name) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = match rest.strip_prefix(':') {
        Some(annotated) => &annotated[annotated.find('=')?..],
        None => rest,
    };
    let value = rest.strip_prefix('=')?;
    (!value.starts_with('=')).then(|| (name.to_string(), value))
}

fn is_keyword(name: &str) -> bool {
    matches!(
        name,
        "if" | "elif"
            | "else"
            | "for"
            | "while"
            | "with"
            | "try"
            | "except"
            | "finally"
            | "return"
            | "assert"
            | "del"
            | "global"
            | "nonlocal"
            | "pass"
            | "raise"
            | "lambda"
            | "not"
    )
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// The callable gunicorn should load from a module with these top-level
/// names, in Flask's order; `Err` says why there is none.
pub fn callable(top: &TopLevel) -> Result<String, String> {
    let has = |name: &str| top.names.iter().any(|n| n == name);
    if let Some(name) = INSTANCE_NAMES.into_iter().find(|n| has(n)) {
        return Ok(name.to_string());
    }
    if let Some(name) = FACTORY_NAMES.into_iter().find(|n| has(n)) {
        return Ok(format!("{name}()"));
    }
    match top.flask_instances.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("no top-level app, application, create_app() or make_app()".to_string()),
        several => Err(format!(
            "several Flask apps ({}) and none named app",
            several.join(", ")
        )),
    }
}

/// Reads `relative` below `base` (the working directory, trusted) to scan
/// it. As root no symbolic link is followed on the way (the app user owns
/// the project and could point a link anywhere): each component is opened
/// from its parent's descriptor with O_NOFOLLOW. Nothing but a regular
/// file of at most 1 MiB is read: a FIFO named app.py must not stall PID 1.
pub fn read_source(base: &Path, relative: &Path) -> Result<String, String> {
    use crate::fsafe::{ReadProblem, read_regular_beneath};
    let root = nix::unistd::geteuid().is_root();
    let bytes = read_regular_beneath(base, relative, 1 << 20, !root).map_err(|p| match p {
        ReadProblem::NotRegular("a symbolic link") => {
            "is or goes through a symbolic link, which initd does not follow as root".to_string()
        }
        ReadProblem::NotRegular(_) => "is not a regular file".to_string(),
        ReadProblem::TooLarge => "is larger than 1 MiB".to_string(),
        ReadProblem::Missing => "does not exist".to_string(),
        ReadProblem::Io(e) => format!("cannot be read ({e})"),
    })?;
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())
}

/// Finds the app in `cwd` following the rules above. `flask_app` is the
/// value of FLASK_APP (empty counts as unset).
pub fn discover(flask_app: Option<&str>, cwd: &Path) -> Result<Found, WsgiError> {
    if let Some(value) = flask_app.filter(|v| !v.trim().is_empty()) {
        return from_flask_app(value, cwd);
    }
    let packages = find_wsgi_modules(cwd);
    match packages.as_slice() {
        [one] => {
            let dir = one.trim_end_matches(".wsgi");
            let file = format!("{dir}/wsgi.py");
            // Django's is `application`, which gunicorn also looks for by
            // default; a Flask package's wsgi.py may hold `app` instead.
            // What the scan cannot see stays `application`.
            let name = read_source(cwd, Path::new(&file))
                .map(|text| scan(&text))
                .ok()
                .filter(|top| !top.names.iter().any(|n| n == "application"))
                .and_then(|top| callable(&top).ok())
                .unwrap_or_else(|| "application".to_string());
            let rule = if name == "application" {
                format!("the one */wsgi.py, {file} (Django's layout)")
            } else {
                format!("the one */wsgi.py, {file}, its {}", describe(&name))
            };
            return Ok(Found {
                target: format!("{one}:{name}"),
                rule,
            });
        }
        [] => {}
        several => {
            return Err(WsgiError::Several {
                cwd: cwd.to_path_buf(),
                found: several
                    .iter()
                    .map(|m| {
                        (
                            format!("{m}:application"),
                            format!("{}/wsgi.py", m.trim_end_matches(".wsgi")),
                        )
                    })
                    .collect(),
            });
        }
    }
    root_module(cwd)
}

/// Rule 3: `wsgi.py` and `app.py` at the root.
fn root_module(cwd: &Path) -> Result<Found, WsgiError> {
    let mut candidates: Vec<(&str, String, TopLevel, String)> = Vec::new();
    let mut notes = Vec::new();
    for module in ["wsgi", "app"] {
        // Flask imports the module by name, so an `app/` package counts
        // where there is no app.py.
        let file = [format!("{module}.py"), format!("{module}/__init__.py")]
            .into_iter()
            .find(|file| std::fs::symlink_metadata(cwd.join(file)).is_ok());
        let Some(file) = file else { continue };
        let top = match read_source(cwd, Path::new(&file)) {
            Ok(text) => scan(&text),
            Err(why) => {
                notes.push(format!("{file} {why}"));
                continue;
            }
        };
        match callable(&top) {
            Ok(name) => candidates.push((module, name, top, file)),
            Err(why) => notes.push(format!("{file} has {why}")),
        }
    }
    // The usual Flask pair: app.py makes the app and wsgi.py imports it to
    // serve it. That is one app, and wsgi.py is its entry point (Flask
    // tries wsgi.py first too).
    if let [(_, _, wsgi, _), (app, _, _, _)] = candidates.as_slice()
        && wsgi.imports.iter().any(|m| m == app || m.starts_with("app."))
    {
        candidates.truncate(1);
    }
    match candidates.as_slice() {
        [] => Err(WsgiError::NoApp {
            cwd: cwd.to_path_buf(),
            detail: if notes.is_empty() {
                String::new()
            } else {
                format!(" with an app ({})", notes.join("; "))
            },
        }),
        [(module, name, _, file)] => Ok(Found {
            target: format!("{module}:{name}"),
            rule: format!("{file} at the root, its {}", describe(name)),
        }),
        several => Err(WsgiError::Several {
            cwd: cwd.to_path_buf(),
            found: several
                .iter()
                .map(|(module, name, _, file)| (format!("{module}:{name}"), file.clone()))
                .collect(),
        }),
    }
}

fn describe(name: &str) -> String {
    if name.ends_with(')') {
        format!("factory {name}")
    } else {
        format!("`{name}`")
    }
}

/// The fix for a FLASK_APP that cannot be translated.
const FLASK_APP_FORMS: &str = "set it as `flask run` takes it (module, module:name or \
                               module:create_app()), or set INITD_APP=module:callable";

/// Rule 1: FLASK_APP, translated.
fn from_flask_app(value: &str, cwd: &Path) -> Result<Found, WsgiError> {
    let fail = |reason: String| WsgiError::FlaskApp {
        value: value.to_string(),
        reason,
    };
    let trimmed = value.trim();
    let (path, attr) = match trimmed.split_once(':') {
        Some((path, attr)) => (path.trim(), Some(attr.trim())),
        None => (trimmed, None),
    };
    let module = module_name(path, cwd).map_err(fail)?;
    let rule = format!("FLASK_APP={trimmed}");
    if let Some(attr) = attr {
        let name = attr.split('(').next().unwrap_or("").trim();
        let call = &attr[name.len()..].trim_start();
        if !is_identifier(name) || !(call.is_empty() || (call.starts_with('(') && call.ends_with(')'))) {
            return Err(fail(format!(
                "{attr:?} is neither a name nor a call such as create_app(); {FLASK_APP_FORMS}"
            )));
        }
        // Flask calls a function named without parentheses to get the app
        // (`FLASK_APP=hello:create_app`); gunicorn would serve the function
        // itself, so the call is spelt out.
        if call.is_empty()
            && let Some(file) = module_file(&module, cwd)
            && let Ok(text) = read_source(cwd, &file)
            && scan(&text).factories.iter().any(|f| f == name)
        {
            return Ok(Found {
                target: format!("{module}:{name}()"),
                rule: format!("{rule} (a factory in {}, called as Flask does)", file.display()),
            });
        }
        return Ok(Found {
            target: format!("{module}:{attr}"),
            rule,
        });
    }
    // Only the module: look for the callable the way Flask would.
    let Some(file) = module_file(&module, cwd) else {
        // Installed elsewhere (site-packages): Flask's first choice.
        return Ok(Found {
            target: format!("{module}:app"),
            rule: format!("{rule} (not in {}, so its `app` is assumed)", cwd.display()),
        });
    };
    let shown = file.display().to_string();
    let fix = format!("set FLASK_APP={module}:NAME, naming the app or its factory");
    let text = read_source(cwd, &file).map_err(|why| fail(format!("{shown} {why}; {fix}")))?;
    let name = callable(&scan(&text)).map_err(|why| fail(format!("{shown} has {why}; {fix}")))?;
    Ok(Found {
        target: format!("{module}:{name}"),
        rule: format!("{rule}, its {}", describe(&name)),
    })
}

/// The module's source file, relative to `cwd`, when it is there.
fn module_file(module: &str, cwd: &Path) -> Option<PathBuf> {
    let relative: PathBuf = module.split('.').collect();
    [relative.with_extension("py"), relative.join("__init__.py")]
        .into_iter()
        .find(|f| cwd.join(f).is_file())
}

/// The dotted module for FLASK_APP's module part: `hello`, `pkg.mod`,
/// `hello.py`, `pkg/mod.py` or `pkg/__init__.py`. A path must go through
/// packages only, since gunicorn imports from the working directory.
fn module_name(path: &str, cwd: &Path) -> Result<String, String> {
    if path.is_empty() {
        return Err(format!("no module is named; {FLASK_APP_FORMS}"));
    }
    let is_path = path.contains('/') || path.ends_with(".py");
    if !is_path {
        return if path.split('.').all(is_identifier) {
            Ok(path.to_string())
        } else {
            Err(format!("{path:?} is not a Python module name; {FLASK_APP_FORMS}"))
        };
    }
    if path.starts_with('/') {
        return Err(format!(
            "{path} is an absolute path; name the module relative to {}",
            cwd.display()
        ));
    }
    let stripped = path.strip_suffix(".py").unwrap_or(path);
    let mut parts: Vec<&str> = stripped
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.last() == Some(&"__init__") {
        parts.pop();
    }
    if parts.is_empty() || !parts.iter().all(|p| is_identifier(p)) {
        return Err(format!("{path} does not name a Python module; {FLASK_APP_FORMS}"));
    }
    let mut dir = cwd.to_path_buf();
    for package in &parts[..parts.len() - 1] {
        dir.push(package);
        if !dir.join("__init__.py").is_file() {
            let shown = dir.strip_prefix(cwd).unwrap_or(&dir).display().to_string();
            return Err(format!(
                "{shown} is not a package (no __init__.py), so gunicorn cannot import {path} from \
                 {}; add {shown}/__init__.py, or set INITD_APP={}:app (naming its app) and \
                 GUNICORN_ARGUMENTS=--pythonpath {shown}",
                cwd.display(),
                parts[parts.len() - 1],
            ));
        }
    }
    Ok(parts.join("."))
}

/// The WSGI modules directly below `cwd`: `mysite.wsgi` for each
/// `mysite/wsgi.py` (Django's layout), sorted. Directories that cannot be
/// imported as a package (`my-site`, `.venv`) are skipped.
pub fn find_wsgi_modules(cwd: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(cwd) else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_identifier(name) && cwd.join(name).join("wsgi.py").is_file())
        .map(|name| format!("{name}.wsgi"))
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Project(PathBuf);

    impl Project {
        fn new(tag: &str) -> Project {
            let dir = std::env::temp_dir().join(format!("initd-wsgi-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Project(dir)
        }

        fn file(&self, path: &str, text: &str) -> &Project {
            let path = self.0.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
            self
        }

        fn discover(&self, flask_app: Option<&str>) -> Result<Found, String> {
            discover(flask_app, &self.0).map_err(|e| e.to_string())
        }

        fn target(&self, flask_app: Option<&str>) -> String {
            self.discover(flask_app).unwrap().target
        }
    }

    impl Drop for Project {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const FLASK: &str = "from flask import Flask\n\napp = Flask(__name__)\n\n\
                         @app.route('/')\ndef index():\n    return 'hi'\n";
    const FACTORY: &str = "from flask import Flask\n\n\
                           def create_app(config=None):\n    app = Flask(__name__)\n    return app\n";

    #[test]
    fn scan_sees_top_level_bindings_only() {
        let top = scan(
            "\"\"\"The app.\n\napp = not_this()\n\"\"\"\nimport os, flask as f\n\
             from .views import (\n    index,\n    about as about_page,  # comment\n)\n\
             from app import app\nserver: Flask = Flask(__name__)\nif x == 1:\n    application = 1\n\
             def make_app(*, testing=False):\n    inner = 2\nclass Config:\n    app = 3\n\
             def application(environ, start_response):\n    pass\n# create_app = 1\n\
             x == y\nflag = 'a'  # app = 1\n",
        );
        assert_eq!(
            top.names,
            [
                "os",
                "f",
                "index",
                "about_page",
                "app",
                "server",
                "make_app",
                "Config",
                "application",
                "flag"
            ]
        );
        assert_eq!(top.flask_instances, ["server"]);
        assert_eq!(top.imports, ["os", "flask", ".views", "app"]);
        assert_eq!(top.factories, ["make_app"]);
    }

    #[test]
    fn callable_follows_flasks_order() {
        let pick = |text: &str| callable(&scan(text));
        assert_eq!(
            pick("app = 1\napplication = 2\ndef create_app(): pass\n").unwrap(),
            "app"
        );
        assert_eq!(
            pick("def application(environ, start_response): pass\n").unwrap(),
            "application"
        );
        assert_eq!(pick(FACTORY).unwrap(), "create_app()");
        assert_eq!(pick("def make_app():\n    pass\n").unwrap(), "make_app()");
        assert_eq!(pick("web = Flask(__name__)\n").unwrap(), "web");
        assert_eq!(
            pick("a = Flask('a')\nb = flask.Flask('b')\n").unwrap_err(),
            "several Flask apps (a, b) and none named app"
        );
        assert_eq!(
            pick("import os\n").unwrap_err(),
            "no top-level app, application, create_app() or make_app()"
        );
    }

    #[test]
    fn flask_app_forms_translate_to_gunicorn() {
        let p = Project::new("flask-app");
        p.file("hello.py", FLASK)
            .file("factory.py", FACTORY)
            .file("pkg/__init__.py", FACTORY)
            .file("pkg/web.py", "server = Flask(__name__)\n")
            .file("src/loose.py", FLASK);
        assert_eq!(p.target(Some("hello")), "hello:app");
        assert_eq!(p.target(Some("hello.py")), "hello:app");
        assert_eq!(p.target(Some("./hello.py")), "hello:app");
        assert_eq!(p.target(Some("factory")), "factory:create_app()");
        assert_eq!(p.target(Some("factory:create_app()")), "factory:create_app()");
        assert_eq!(
            p.target(Some("factory:create_app('testing', debug=True)")),
            "factory:create_app('testing', debug=True)"
        );
        // Flask calls a function it is pointed at; gunicorn must be told to.
        assert_eq!(p.target(Some("factory:create_app")), "factory:create_app()");
        assert_eq!(p.target(Some("hello:app")), "hello:app");
        assert_eq!(p.target(Some("pkg")), "pkg:create_app()");
        assert_eq!(p.target(Some("pkg/__init__.py")), "pkg:create_app()");
        assert_eq!(p.target(Some("pkg.web")), "pkg.web:server");
        assert_eq!(p.target(Some("pkg/web.py:server")), "pkg.web:server");
        assert_eq!(p.target(Some(" hello : app ")), "hello:app");
        // Installed rather than in the project: Flask's first guess.
        let found = p.discover(Some("elsewhere.wsgi")).unwrap();
        assert_eq!(found.target, "elsewhere.wsgi:app");
        assert!(found.rule.contains("its `app` is assumed"), "{}", found.rule);
        let found = p.discover(Some("factory")).unwrap();
        assert_eq!(found.rule, "FLASK_APP=factory, its factory create_app()");
        // FLASK_APP wins over every file convention.
        p.file("mysite/wsgi.py", "application = 1\n")
            .file("app.py", FLASK);
        assert_eq!(p.target(Some("hello")), "hello:app");
        // Empty counts as unset.
        assert_eq!(p.target(Some(" ")), "mysite.wsgi:application");
    }

    #[test]
    fn bad_flask_app_values_say_what_to_do() {
        let p = Project::new("flask-bad");
        p.file("src/loose.py", FLASK).file("empty.py", "import os\n");
        let err = |v: &str| p.discover(Some(v)).unwrap_err();
        assert_eq!(
            err("src/loose.py"),
            format!(
                "FLASK_APP=\"src/loose.py\": src is not a package (no __init__.py), so gunicorn \
                 cannot import src/loose.py from {}; add src/__init__.py, or set INITD_APP=loose:app \
                 (naming its app) and GUNICORN_ARGUMENTS=--pythonpath src",
                p.0.display()
            )
        );
        assert_eq!(
            err("empty"),
            "FLASK_APP=\"empty\": empty.py has no top-level app, application, create_app() or \
             make_app(); set FLASK_APP=empty:NAME, naming the app or its factory"
        );
        assert_eq!(
            err("my-app"),
            "FLASK_APP=\"my-app\": \"my-app\" is not a Python module name; set it as `flask run` \
             takes it (module, module:name or module:create_app()), or set INITD_APP=module:callable"
        );
        assert!(err("hello:1app").contains("\"1app\" is neither a name nor a call"));
        assert!(err("hello:create_app(").contains("is neither a name nor a call"));
        assert!(err("/abs/app.py").contains("/abs/app.py is an absolute path"));
        assert!(
            err("empty").starts_with(
                "FLASK_APP=\"empty\": empty.py has no top-level app, application, create_app() or make_app(); "
            ),
            "{}",
            err("empty")
        );
    }

    #[test]
    fn django_layout_then_root_modules() {
        let p = Project::new("layout");
        p.file("mysite/wsgi.py", "application = get_wsgi_application()\n")
            .file("app.py", FLASK);
        let found = p.discover(None).unwrap();
        assert_eq!(found.target, "mysite.wsgi:application");
        assert_eq!(found.rule, "the one */wsgi.py, mysite/wsgi.py (Django's layout)");
        // A Flask package's wsgi.py names its app otherwise.
        p.file(
            "mysite/wsgi.py",
            "from mysite import create_app\n\napp = create_app()\n",
        );
        let found = p.discover(None).unwrap();
        assert_eq!(found.target, "mysite.wsgi:app");
        assert_eq!(found.rule, "the one */wsgi.py, mysite/wsgi.py, its `app`");
        p.file(
            "mysite/wsgi.py",
            "try:\n    application = make()\nexcept ImportError:\n    raise\n",
        );
        assert_eq!(p.target(None), "mysite.wsgi:application");
        fs::remove_dir_all(p.0.join("mysite")).unwrap();
        let found = p.discover(None).unwrap();
        assert_eq!(found.target, "app:app");
        assert_eq!(found.rule, "app.py at the root, its `app`");
        // The usual pair: wsgi.py imports app.py's app.
        p.file("wsgi.py", "from app import app\n");
        assert_eq!(p.target(None), "wsgi:app");
        p.file(
            "wsgi.py",
            "from app import create_app\n\napplication = create_app()\n",
        );
        assert_eq!(p.target(None), "wsgi:application");
        p.file("app.py", FACTORY);
        fs::remove_file(p.0.join("wsgi.py")).unwrap();
        let found = p.discover(None).unwrap();
        assert_eq!(found.target, "app:create_app()");
        assert_eq!(found.rule, "app.py at the root, its factory create_app()");
        // A package named app, as Flask's import of `app` finds it.
        fs::remove_file(p.0.join("app.py")).unwrap();
        p.file("app/__init__.py", FACTORY);
        let found = p.discover(None).unwrap();
        assert_eq!(found.target, "app:create_app()");
        assert_eq!(
            found.rule,
            "app/__init__.py at the root, its factory create_app()"
        );
    }

    #[test]
    fn two_candidates_are_an_error_naming_both() {
        let p = Project::new("two");
        p.file("wsgi.py", "def application(environ, start_response):\n    pass\n")
            .file("app.py", FLASK);
        assert_eq!(
            p.discover(None).unwrap_err(),
            format!(
                "INITD_APP is unset and {} holds several WSGI apps (wsgi:application in wsgi.py, \
                 app:app in app.py); set INITD_APP to the one to run, e.g. INITD_APP=wsgi:application",
                p.0.display()
            )
        );
        let p = Project::new("two-django");
        p.file("api/wsgi.py", "").file("admin/wsgi.py", "");
        assert!(
            p.discover(None)
                .unwrap_err()
                .contains("(admin.wsgi:application in admin/wsgi.py, api.wsgi:application in api/wsgi.py)")
        );
    }

    #[test]
    fn nothing_found_says_what_was_looked_at() {
        let p = Project::new("none");
        let cwd = p.0.display().to_string();
        assert_eq!(
            p.discover(None).unwrap_err(),
            format!(
                "no WSGI app to run: INITD_APP and FLASK_APP are unset and {cwd} has no */wsgi.py, \
                 wsgi.py or app.py; set INITD_APP to the app, e.g. INITD_APP=mysite.wsgi:application \
                 or INITD_APP=app:app"
            )
        );
        p.file("app.py", "import os\nprint('hello')\n");
        assert!(p.discover(None).unwrap_err().contains(&format!(
            "{cwd} has no */wsgi.py, wsgi.py or app.py with an app (app.py has no top-level \
                 app, application, create_app() or make_app());"
        )));
    }

    #[test]
    fn finds_wsgi_modules_one_level_down() {
        let p = Project::new("find");
        for module in ["mysite", "other", "my-site", ".hidden", "_private"] {
            p.file(&format!("{module}/wsgi.py"), "application = None\n");
        }
        p.file("nowsgi/settings.py", "")
            .file("deep/er/wsgi.py", "")
            .file("wsgi.py", "");
        fs::create_dir_all(p.0.join("dir").join("wsgi.py")).unwrap();
        assert_eq!(
            find_wsgi_modules(&p.0),
            ["_private.wsgi", "mysite.wsgi", "other.wsgi"]
        );
        assert!(find_wsgi_modules(&p.0.join("missing")).is_empty());
    }

    #[test]
    fn a_fifo_or_a_huge_file_is_not_read() {
        let p = Project::new("fifo");
        nix::unistd::mkfifo(
            &p.0.join("app.py"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        // Returns at once instead of waiting for a writer.
        let err = p.discover(None).unwrap_err();
        assert!(err.contains("(app.py is not a regular file)"), "{err}");
        fs::remove_file(p.0.join("app.py")).unwrap();
        p.file("app.py", &format!("app = 1\n{}", "#\n".repeat(1 << 20)));
        assert!(
            p.discover(None)
                .unwrap_err()
                .contains("(app.py is larger than 1 MiB)")
        );
    }

    #[test]
    fn as_root_a_link_is_not_followed() {
        let p = Project::new("link");
        p.file("real.py", FLASK);
        std::os::unix::fs::symlink(p.0.join("real.py"), p.0.join("app.py")).unwrap();
        let result = p.discover(None);
        if nix::unistd::geteuid().is_root() {
            let err = result.unwrap_err();
            assert!(
                err.contains(
                    "(app.py is or goes through a symbolic link, which initd does not follow as root)"
                ),
                "{err}"
            );
        } else {
            assert_eq!(result.unwrap().target, "app:app");
        }
        // A linked directory on the way counts too.
        fs::remove_file(p.0.join("app.py")).unwrap();
        p.file("real/__init__.py", "").file("real/web.py", FLASK);
        std::os::unix::fs::symlink(p.0.join("real"), p.0.join("pkg")).unwrap();
        let result = p.discover(Some("pkg.web"));
        if nix::unistd::geteuid().is_root() {
            let err = result.unwrap_err();
            assert!(
                err.contains("pkg/web.py is or goes through a symbolic link"),
                "{err}"
            );
        } else {
            assert_eq!(result.unwrap().target, "pkg.web:app");
        }
    }
}
