//! CPU per poll round of the reload poller, without a process around it:
//! `cargo bench --bench poll_round` (FILES=10000 by default). Builds the
//! same tree as benches/poll.sh (wanted files in directories of 100, each
//! with a __pycache__, plus node_modules and .git), then times ROUNDS polls
//! with the thread's own CPU clock. benches/poll.sh measures the whole
//! initd; this isolates the poller for working on it.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use initd::filter::Filter;
use initd::poller::Poller;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn make_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("pkg/sub{}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(dir.join("__pycache__")).unwrap();
        }
        fs::write(dir.join(format!("mod{i}.py")), format!("X = {i}\n")).unwrap();
        fs::write(dir.join(format!("__pycache__/mod{i}.cpython-311.pyc")), [0u8; 64]).unwrap();
    }
    for i in 0..5000 {
        let dir = root.join(format!("node_modules/lib{}", i / 50));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("index{i}.js")), "module.exports = 1;\n").unwrap();
    }
    for i in 0..2000 {
        let dir = root.join(format!(".git/objects/{:02x}", i % 256));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("{i:038x}")), "x").unwrap();
    }
}

fn main() {
    let files: usize = std::env::var("FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // TREE: an existing tree to poll (kept), for profiling the rounds alone.
    let given = std::env::var_os("TREE").map(PathBuf::from);
    let root = given
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("initd-poll-round-{}", std::process::id())));
    if given.is_none() {
        let _ = fs::remove_dir_all(&root);
        make_tree(&root, files);
    }
    let roots = vec![root.clone()];
    let t0 = thread_cpu();
    let mut poller = Poller::new(&roots, &Filter::default());
    let first = thread_cpu() - t0;
    assert_eq!(
        poller.files(),
        files,
        "the poller should watch exactly the wanted files"
    );
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = thread_cpu();
        let changed = poller.poll();
        samples.push(thread_cpu() - t);
        assert!(changed.is_empty(), "nothing changed, yet: {changed:?}");
    }
    let total: Duration = samples.iter().sum();
    samples.sort();
    let median = samples[samples.len() / 2];
    let mean = total / rounds as u32;
    println!(
        "poll_round: {files} files: first look {:.2} ms; per round over {rounds} rounds: median {:.2} ms, mean {:.2} ms (every 10th lists all directories), max {:.2} ms",
        first.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        samples[rounds - 1].as_secs_f64() * 1e3
    );
    if given.is_none() {
        fs::remove_dir_all(&root).unwrap();
    }
}
