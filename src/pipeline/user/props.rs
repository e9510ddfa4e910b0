//! Property tests: the account files and `INITD_USER` come from the image
//! and its configuration, so arbitrary bytes must never panic the parser,
//! and no input may make initd run the app as root without permission.
//! `PROPTEST_CASES=100000 cargo test --lib props` runs them longer.

use super::renumber::remap;
use super::*;
use crate::config::parse::{HostIdError, MAX_HOST_ID, parse_host_id};
use proptest::prelude::*;

/// An account-file field: mostly plausible, sometimes hostile.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_.-]{0,8}",
        "[0-9]{1,11}",
        Just(String::new()),
        "[ -~]{0,12}",
        Just("4294967295".to_string()),
        Just("0".to_string()),
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..3000).prop_map(|n| n.to_string()),
        Just("0".to_string()),
        Just("4294967295".to_string()),
        Just("4294967296".to_string()),
        "[0-9]{0,12}",
        "-?[0-9a-z]{0,4}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("app".to_string()),
        Just("root".to_string()),
        Just("toor".to_string()),
        "[a-z]{1,6}",
        field(),
    ]
}

fn passwd_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (name(), id(), id(), field(), field(), field())
            .prop_map(|(n, u, g, gecos, home, shell)| format!("{n}:x:{u}:{g}:{gecos}:/{home}:{shell}")),
        1 => proptest::collection::vec(field(), 0..10).prop_map(|f| f.join(":")),
        1 => "[#+-][ -~]{0,20}",
    ]
}

fn group_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (name(), id(), proptest::collection::vec(name(), 0..4))
            .prop_map(|(n, g, m)| format!("{n}:x:{g}:{}", m.join(","))),
        1 => proptest::collection::vec(field(), 0..6).prop_map(|f| f.join(":")),
    ]
}

fn file(line: impl Strategy<Value = String>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(line, 0..12),
        prop_oneof![Just("\n"), Just("\r\n")],
    )
        .prop_map(|(lines, end)| lines.join(end).into_bytes())
}

/// What a user types into INITD_USER.
fn spec() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        id(),
        (name(), name()).prop_map(|(u, g)| format!("{u}:{g}")),
        (id(), id()).prop_map(|(u, g)| format!("{u}:{g}")),
        "[ -~]{0,16}",
    ]
}

proptest! {
    #![proptest_config(crate::props::config())]
    #[test]
    fn arbitrary_bytes_never_panic_the_parser(
        passwd in proptest::collection::vec(any::<u8>(), 0..512),
        group in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let db = Db::parse(&passwd, &group);
        let lines = passwd.split(|&b| b == b'\n').count() + group.split(|&b| b == b'\n').count();
        prop_assert!(db.users.len() + db.groups.len() + db.malformed.len() <= lines);
        for u in &db.users {
            prop_assert!(!u.name.is_empty() && !u.name.contains([':', '\n']));
            prop_assert!(u.uid != u32::MAX && u.gid != u32::MAX);
        }
    }

    #[test]
    fn well_formed_lines_read_back_as_written(
        entries in proptest::collection::vec(("[a-z_][a-z0-9_]{0,8}", 0u32..u32::MAX, 0u32..u32::MAX), 0..8),
    ) {
        let text: String = entries
            .iter()
            .map(|(n, u, g)| format!("{n}:x:{u}:{g}:gecos:/home/{n}:/bin/sh\n"))
            .collect();
        let db = Db::parse(text.as_bytes(), b"");
        prop_assert!(db.malformed.is_empty());
        let got: Vec<(String, u32, u32)> = db.users.iter().map(|u| (u.name.clone(), u.uid, u.gid)).collect();
        prop_assert_eq!(got, entries);
    }

    /// The one rule that matters most: started as root without
    /// INITD_ALLOW_ROOT, whatever the files and INITD_USER say, initd
    /// either refuses or drops to a uid other than 0.
    #[test]
    fn the_app_never_runs_as_root_unless_allowed(
        passwd in file(passwd_line()),
        group in file(group_line()),
        requested in proptest::option::of(spec()),
    ) {
        let db = Db::parse(&passwd, &group);
        match plan_drop(0, 0, requested.as_deref(), &db, false) {
            Ok(decision) => {
                let user = match &decision {
                    DropDecision::Skip(u) | DropDecision::Drop(u) => u,
                };
                prop_assert_ne!(user.uid, 0, "{:?} -> {:?}", requested, decision);
                prop_assert!(matches!(decision, DropDecision::Drop(_)));
            }
            Err(e) => {
                // Every refusal reads as a sentence naming what to fix.
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn remapping_changes_only_the_app_user(
        passwd in file(passwd_line()),
        group in file(group_line()),
        new_uid in proptest::option::of(0u32..5000),
        new_gid in proptest::option::of(0u32..5000),
    ) {
        let before = Db::parse(&passwd, &group);
        let Ok(r) = remap(&passwd, &group, "app", new_uid, new_gid) else {
            return Ok(());
        };
        prop_assert!(r.new_uid != 0 || new_uid.is_none());
        let after = Db::parse(&r.passwd, &r.group);
        prop_assert_eq!(after.users.len(), before.users.len());
        prop_assert_eq!(after.groups.len(), before.groups.len());
        prop_assert_eq!(
            r.passwd.iter().filter(|&&b| b == b'\n').count(),
            passwd.iter().filter(|&&b| b == b'\n').count()
        );
        let app = after.user_by_name("app").unwrap();
        prop_assert_eq!(app.uid, r.new_uid);
        prop_assert_eq!(app.gid, r.new_gid);
        // Nobody else got or lost a uid, and nobody shares the new one.
        for (b, a) in before.users.iter().zip(&after.users) {
            prop_assert_eq!(&b.name, &a.name);
            if b.name != "app" {
                prop_assert_eq!(b.uid, a.uid);
                prop_assert!(a.uid != r.new_uid || r.new_uid == r.old_uid);
            }
            // Root's accounts keep their lines whole, group included.
            if b.uid == 0 {
                prop_assert_eq!(b, a);
            }
        }
        // Group 0 is never renumbered.
        for (b, a) in before.groups.iter().zip(&after.groups) {
            if b.gid == 0 {
                prop_assert_eq!(b, a);
            }
        }
    }

    #[test]
    fn every_id_in_range_reads_back_and_none_above(id in any::<u32>()) {
        let parsed = parse_host_id(&id.to_string());
        if id <= MAX_HOST_ID {
            prop_assert_eq!(parsed, Ok(id));
            // And what remap writes, initd reads back.
            if id != 0 {
                let r = remap(b"app:x:1000:1000::/app:/bin/sh\n", b"app:x:1000:\n", "app", Some(id), Some(id)).unwrap();
                let db = Db::parse(&r.passwd, &r.group);
                prop_assert!(db.malformed.is_empty());
                prop_assert_eq!(db.user_by_name("app").map(|u| (u.uid, u.gid)), Some((id, id)));
            }
        } else {
            prop_assert_eq!(parsed, Err(HostIdError::TooLarge));
        }
    }
}
