//! Reading the process table from /proc: which processes descend from initd
//! (to stop leftovers when initd is a subreaper rather than PID 1, where
//! `kill(-1)` would reach the whole host), which ones it adopted (orphans
//! that get the stop signal along with the main child), and zombie counts.

use std::collections::HashMap;
use std::fs;

/// The fields of /proc/PID/stat initd needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    /// The process group.
    pub pgrp: i32,
}

/// Parses a /proc/PID/stat line. The command name sits in parentheses and
/// may itself contain spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let mut rest = line.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some(Stat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// Every process visible in /proc (races with exits are simply skipped).
pub fn snapshot() -> Vec<Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|line| parse_stat(&line))
        .collect()
}

/// The children of `parent` other than `main`: as PID 1 or a subreaper,
/// the orphans the kernel re-parented to it (daemonised grandchildren).
/// `skip_group` leaves out members of that process group (they are
/// signalled through the group already).
pub fn adopted(table: &[Stat], parent: i32, main: i32, skip_group: Option<i32>) -> Vec<i32> {
    table
        .iter()
        .filter(|s| s.ppid == parent && s.pid != main && s.pid != parent)
        .filter(|s| skip_group != Some(s.pgrp))
        // A zombie can no longer act on a signal.
        .filter(|s| s.state != 'Z')
        .map(|s| s.pid)
        .collect()
}

/// The pids below `root` in the tree, excluding `root` itself.
pub fn descendants(table: &[Stat], root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for s in table {
        children.entry(s.ppid).or_default().push(s.pid);
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if child != root && !found.contains(&child) {
                found.push(child);
                stack.push(child);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let s = parse_stat("42 (my (weird) prog) S 7 40 42 0 -1 4194560").unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 42,
                state: 'S',
                ppid: 7,
                pgrp: 40,
            }
        );
        let z = parse_stat("9 (sleep) Z 1 9 9").unwrap();
        assert_eq!(z.state, 'Z');
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x)"), None);
        assert_eq!(parse_stat("1 (x) S 0"), None);
    }

    #[test]
    fn descendants_walks_the_tree_only_below_root() {
        let st = |pid, ppid| Stat {
            pid,
            state: 'S',
            ppid,
            pgrp: pid,
        };
        let table = [
            st(1, 0),
            st(10, 1),
            st(11, 10),
            st(12, 11),
            st(20, 1),
            st(30, 20),
            st(40, 11),
        ];
        let mut d = descendants(&table, 10);
        d.sort();
        assert_eq!(d, vec![11, 12, 40]);
        assert!(descendants(&table, 12).is_empty());
    }

    #[test]
    fn adopted_are_the_other_children_of_initd() {
        let st = |pid, ppid, pgrp, state| Stat {
            pid,
            state,
            ppid,
            pgrp,
        };
        let table = [
            st(1, 0, 1, 'S'),
            // The main child and one of its workers.
            st(10, 1, 10, 'S'),
            st(11, 10, 10, 'S'),
            // Daemons: one left in the main child's group, one in its own.
            st(20, 1, 10, 'S'),
            st(30, 1, 30, 'S'),
            st(40, 1, 40, 'Z'),
            st(50, 30, 30, 'S'),
        ];
        assert_eq!(adopted(&table, 1, 10, None), [20, 30]);
        assert_eq!(adopted(&table, 1, 10, Some(10)), [30]);
    }

    #[test]
    fn snapshot_sees_this_process() {
        let me = std::process::id() as i32;
        assert!(snapshot().iter().any(|s| s.pid == me));
    }
}

/// Property test: /proc/PID/stat holds the command name as the process set
/// it, parentheses, spaces and newlines included.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::props::config())]
        #[test]
        fn any_command_name_is_read_past(name in any::<String>(), pid in 1i32..i32::MAX, ppid in 0i32..i32::MAX) {
            let line = format!("{pid} ({name}) S {ppid} {pid} {pid} 0 -1 4194560 0 0");
            prop_assert_eq!(
                parse_stat(&line),
                Some(Stat { pid, state: 'S', ppid, pgrp: pid })
            );
        }

        #[test]
        fn any_text_never_panics(text in any::<String>()) {
            let _ = parse_stat(&text);
        }
    }
}
