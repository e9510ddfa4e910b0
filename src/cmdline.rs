//! Command lines given as text (`INITD_MIGRATE`, `INITD_PRESTART`,
//! `INITD_SERVER`): split the way a shell would split words, quotes
//! respected, but never run through a shell — no expansion, no injection.

/// Splits one command line into its words.
pub fn split(line: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(line).map_err(|_| "unbalanced quotes".to_string())?;
    if words.is_empty() {
        return Err("empty command".into());
    }
    Ok(words)
}

/// Splits text holding several command lines at each `;` that is not inside
/// quotes or escaped.
pub fn split_commands(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, ';') => lines.push(std::mem::take(&mut current)),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (q, '\\') if q != Some('\'') => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            _ => current.push(c),
        }
    }
    lines.push(current);
    lines
        .into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Quotes words back into a line a user can paste into a shell, for logs
/// and `initd config`.
pub fn join(argv: &[String]) -> String {
    shell_words::join(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_with_quotes() {
        assert_eq!(
            split("python manage.py shell -c 'print(1)'").unwrap(),
            ["python", "manage.py", "shell", "-c", "print(1)"]
        );
        assert_eq!(split("echo \"a b\" c\\ d").unwrap(), ["echo", "a b", "c d"]);
        assert_eq!(split("echo 'open").unwrap_err(), "unbalanced quotes");
        assert_eq!(split("   ").unwrap_err(), "empty command");
    }

    #[test]
    fn splits_commands_at_unquoted_semicolons() {
        assert_eq!(
            split_commands("python manage.py migrate; python manage.py collectstatic --noinput"),
            [
                "python manage.py migrate",
                "python manage.py collectstatic --noinput"
            ]
        );
        assert_eq!(
            split_commands("echo 'a;b'; echo \"c;d\"; echo e\\;f"),
            ["echo 'a;b'", "echo \"c;d\"", "echo e\\;f"]
        );
        assert_eq!(split_commands(" ; ;"), Vec::<String>::new());
    }

    #[test]
    fn join_round_trips() {
        let argv = vec!["echo".to_string(), "a b".to_string(), "it's".to_string()];
        assert_eq!(split(&join(&argv)).unwrap(), argv);
    }
}

/// Property tests: command settings are free text; splitting never panics,
/// and what initd prints (`join`) splits back into the same words.
/// `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_text_splits_or_is_refused(text in any::<String>()) {
            let _ = split(&text);
            for line in split_commands(&text) {
                prop_assert!(!line.is_empty() && line == line.trim());
            }
        }

        #[test]
        fn joined_words_split_back(words in proptest::collection::vec(any::<String>(), 1..6)) {
            prop_assert_eq!(split(&join(&words)), Ok(words));
        }

        #[test]
        fn quoted_semicolons_do_not_split(
            words in proptest::collection::vec("[a-z;' \"]{1,6}", 1..4),
            more in "[a-z]{1,6}",
        ) {
            let text = format!("{} ; {more}", join(&words));
            let lines = split_commands(&text);
            prop_assert_eq!(lines.len(), 2, "{:?}", lines);
            prop_assert_eq!(split(&lines[0]), Ok(words));
        }
    }
}
