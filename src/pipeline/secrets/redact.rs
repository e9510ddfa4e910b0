//! Masking secret values in everything initd prints: the values as read,
//! and the forms they take once quoted in a command line, escaped in an
//! error message or in a JSON log line.

use std::borrow::Cow;
use std::fmt;

use super::{MIN_REDACT_LEN, Secret, SecretValue, wipe};

/// Masks secret values in text; build it once and use it on every log line.
pub struct Redactor {
    // Longest first, so a secret that contains another is masked whole.
    needles: Vec<SecretValue>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} needles)", self.needles.len())
    }
}

impl Redactor {
    pub fn new(secrets: &[Secret]) -> Redactor {
        let mut needles: Vec<SecretValue> = secrets
            .iter()
            .flat_map(|s| needles_of(s.value.expose()))
            .collect();
        needles.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        needles.dedup_by(|a, b| a.0 == b.0);
        Redactor { needles }
    }

    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.expose()) {
                out = Cow::Owned(out.replace(needle.expose(), "***"));
            }
        }
        out
    }
}

/// Every form in which a value can reach a line initd prints: the whole
/// value; each line of a multi-line one (a PEM key or a JSON credential
/// leaks one line at a time into logs); the value as command-line words
/// quoted anew (a `GUNICORN_ARGUMENTS` secret is logged inside the
/// server's command line); and each of those escaped the way `{:?}` quotes
/// a value in an error message and the JSON log format escapes a message,
/// alone and one inside the other.
fn needles_of(value: &str) -> Vec<SecretValue> {
    let mut forms = vec![SecretValue(value.to_owned())];
    if value.contains('\n') {
        forms.extend(value.lines().map(|l| SecretValue(l.trim().to_owned())));
    }
    if let Ok(words) = crate::cmdline::split(value) {
        forms.push(SecretValue(crate::cmdline::join(&words)));
        words.into_iter().for_each(|w| wipe(w.into_bytes()));
    }
    forms.retain(|f| f.0.len() >= MIN_REDACT_LEN);
    let mut all = Vec::with_capacity(forms.len() * 4);
    for form in forms {
        let debug = SecretValue(debug_escaped(form.expose()));
        all.push(SecretValue(json_escaped(debug.expose())));
        all.push(SecretValue(json_escaped(form.expose())));
        all.push(debug);
        all.push(form);
    }
    all
}

/// `text` as `{:?}` prints it, without the quotes around it.
fn debug_escaped(text: &str) -> String {
    let quoted = format!("{text:?}");
    quoted[1..quoted.len() - 1].to_owned()
}

/// `text` as a JSON string's content (serde_json's escapes).
pub(super) fn json_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_values_and_their_lines() {
        // Values as read: the file's one trailing newline already gone.
        let secrets = [
            Secret::for_test("A", "abcdef"),
            Secret::for_test("B", "abc"),
            Secret::for_test("C", "-----KEY-----\nline-two"),
        ];
        let line = "login abcdef ok abc; key line-two; pem -----KEY-----\nline-two";
        assert_eq!(
            Redactor::new(&secrets).redact(line),
            "login *** ok abc; key ***; pem ***"
        );
    }

    #[test]
    fn redact_masks_requoted_and_escaped_forms() {
        let secrets = [
            Secret::for_test("A", "--name  'top secret'"),
            Secret::for_test("B", "pa\"ss\\word"),
        ];
        let redactor = Redactor::new(&secrets);
        // Split into words and quoted anew, as in a logged command line.
        assert_eq!(
            redactor.redact("gunicorn app --name 'top secret' -w 2"),
            "gunicorn app *** -w 2"
        );
        // Quoted with {:?} in an error message.
        let message = format!("PORT={:?}: expected a port", "pa\"ss\\word");
        assert_eq!(redactor.redact(&message), "PORT=\"***\": expected a port");
        // That message in a JSON log line.
        assert_eq!(
            redactor.redact(r#"{"message":"PORT=\"pa\\\"ss\\\\word\": expected a port"}"#),
            r#"{"message":"PORT=\"***\": expected a port"}"#
        );
        assert_eq!(
            redactor.redact(r#"{"message":"x pa\"ss\\word"}"#),
            r#"{"message":"x ***"}"#
        );
    }

    #[test]
    fn redact_prefers_the_longest_secret() {
        let secrets = [Secret::for_test("A", "pass"), Secret::for_test("B", "password99")];
        assert_eq!(Redactor::new(&secrets).redact("x password99 pass"), "x *** ***");
        let redactor = Redactor::new(&secrets);
        assert!(matches!(redactor.redact("clean"), Cow::Borrowed("clean")));
        assert!(!format!("{redactor:?}").contains("pass"));
    }
}
