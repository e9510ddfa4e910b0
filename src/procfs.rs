//! Reading the process table from /proc: which processes descend from initd
//! (to stop leftovers when initd is a subreaper rather than PID 1, where
//! `kill(-1)` would reach the whole host), and zombie counts.

use std::collections::HashMap;
use std::fs;

/// The fields of /proc/PID/stat initd needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
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
    Some(Stat { pid, state, ppid })
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
        let s = parse_stat("42 (my (weird) prog) S 7 42 42 0 -1 4194560").unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 42,
                state: 'S',
                ppid: 7
            }
        );
        let z = parse_stat("9 (sleep) Z 1 9 9").unwrap();
        assert_eq!(z.state, 'Z');
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x)"), None);
    }

    #[test]
    fn descendants_walks_the_tree_only_below_root() {
        let st = |pid, ppid| Stat {
            pid,
            state: 'S',
            ppid,
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
    fn snapshot_sees_this_process() {
        let me = std::process::id() as i32;
        assert!(snapshot().iter().any(|s| s.pid == me));
    }
}
