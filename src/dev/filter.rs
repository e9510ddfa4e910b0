//! Which changed paths count as the developer's edits: include patterns
//! for the names that matter, ignore patterns for directories and files
//! that never are, and the `*`/`?` matcher both use. Shared by the inotify
//! watcher and the poller.

use std::path::Path;

/// Python, templates and configuration: what a change to should restart
/// the dev server.
pub const DEFAULT_INCLUDE: &[&str] = &[
    "*.py", "*.pyi", "*.html", "*.jinja", "*.jinja2", "*.j2", "*.txt", "*.toml", "*.cfg", "*.ini", "*.yaml",
    "*.yml", "*.json", "*.env", ".env",
];

/// Version control, caches, dependencies and editor droppings: changes there
/// are never the developer's edit (vim writes `4913` to test a directory).
pub const DEFAULT_IGNORE: &[&str] = &[
    ".git",
    ".hg",
    "__pycache__",
    "node_modules",
    ".venv",
    ".mypy_cache",
    ".pytest_cache",
    "*.pyc",
    "*.pyo",
    "*.swp",
    "*.swx",
    "*.swo",
    "*~",
    ".#*",
    "#*#",
    "4913",
];

/// `*` and `?` wildcards over one path component (`?` is one byte).
///
/// Patterns come from the user (`INITD_RELOAD_INCLUDE`), names from the
/// disk: trying every split for every `*` would take exponential time on
/// `*a*a*a*a*b` against a long name, stalling the dev loop. Only the
/// last `*` seen needs to be retried, which bounds the work by the
/// pattern's length times the name's.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // The last `*` and how much of the name it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, taken)) => {
                    star = Some((sp, taken + 1));
                    pi = sp + 1;
                    ni = taken + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Which paths count as edits.
#[derive(Debug, Clone)]
pub struct Filter {
    pub include: Vec<String>,
    pub ignore: Vec<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            include: DEFAULT_INCLUDE.iter().map(|s| s.to_string()).collect(),
            ignore: DEFAULT_IGNORE.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl Filter {
    /// A directory (by its name) whose contents are never looked at.
    pub fn ignores_dir(&self, name: &str) -> bool {
        self.ignore.iter().any(|p| glob_match(p, name))
    }

    /// Whether a change to `path` (under one of the watched roots) should
    /// restart the server: no component ignored, and the name included.
    pub fn wants(&self, path: &Path) -> bool {
        let mut names = path.components().filter_map(|c| c.as_os_str().to_str());
        if names.clone().any(|n| self.ignores_dir(n)) {
            return false;
        }
        match names.next_back() {
            Some(name) => self.include.iter().any(|p| glob_match(p, name)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.py", "views.py"));
        assert!(!glob_match("*.py", "views.pyc"));
        assert!(glob_match("*.py?", "views.pyc"));
        assert!(glob_match(".#*", ".#views.py"));
        assert!(glob_match("*~", "views.py~"));
        assert!(glob_match("__pycache__", "__pycache__"));
        assert!(!glob_match("__pycache__", "pycache"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn the_default_filter_wants_code_and_templates_only() {
        let f = Filter::default();
        assert!(f.wants(Path::new("app/views.py")));
        assert!(f.wants(Path::new("templates/index.html")));
        assert!(f.wants(Path::new("pyproject.toml")));
        assert!(!f.wants(Path::new("app/__pycache__/views.cpython-311.pyc")));
        assert!(!f.wants(Path::new("node_modules/x/index.js")));
        assert!(!f.wants(Path::new(".git/HEAD")));
        assert!(!f.wants(Path::new("app/.views.py.swp")));
        assert!(!f.wants(Path::new("app/4913")));
        assert!(!f.wants(Path::new("static/app.css")));
        assert!(!f.wants(Path::new(".venv/lib/site.py")));
    }
}

/// Property tests for the reload patterns, which come from the user
/// (`INITD_RELOAD_INCLUDE`/`_IGNORE`): the matcher agrees with the
/// textbook definition and stays fast on any pattern.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// The definition, as a table over (pattern prefix, name prefix).
    fn reference(p: &[u8], n: &[u8]) -> bool {
        let mut m = vec![vec![false; n.len() + 1]; p.len() + 1];
        m[0][0] = true;
        for i in 1..=p.len() {
            for j in 0..=n.len() {
                m[i][j] = match p[i - 1] {
                    b'*' => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                    b'?' => j > 0 && m[i - 1][j - 1],
                    c => j > 0 && n[j - 1] == c && m[i - 1][j - 1],
                };
            }
        }
        m[p.len()][n.len()]
    }

    #[test]
    fn many_stars_against_a_long_name_answer_at_once() {
        // Exponential for a matcher that retries every star: 2^40 steps.
        let pattern = "*a".repeat(40) + "b";
        let name = "a".repeat(200);
        assert!(!glob_match(&pattern, &name));
        assert!(glob_match(&("*a".repeat(40) + "*"), &name));
    }

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn glob_agrees_with_the_definition(p in "[ab*?]{0,10}", n in "[ab]{0,12}") {
            prop_assert_eq!(glob_match(&p, &n), reference(p.as_bytes(), n.as_bytes()));
        }

        #[test]
        fn any_pattern_and_name_never_panic(p in any::<String>(), n in any::<String>()) {
            let _ = glob_match(&p, &n);
            prop_assert!(glob_match("*", &n));
            prop_assert!(glob_match(&n.replace(['*', '?'], ""), &n.replace(['*', '?'], "")));
        }
    }
}
