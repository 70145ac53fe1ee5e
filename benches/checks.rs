//! The cost of two of step 8's checks, each against a baseline measured in the same run:
//! - searching 10 MiB (the default `max_file_size`, every line with a `%`) for a secret in
//!   all its forms (raw, base64 at every offset in both alphabets, hex, URL-encoded), in
//!   1 MiB pieces as `collect` reads a file, against one plain `memmem` count of the raw
//!   value over the same bytes;
//! - resolving every link of a 100,000-file change in which every file is a link (a third
//!   through a chain of two more), against `git ls-tree -r` listing a tree of those links.
//!
//! Run: `cargo bench --bench checks`.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git_chant::secrets::SecretFinder;
use git_chant::work::links;

const RUNS: usize = 5;

fn main() {
    secret_search();
    link_resolution();
}

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..RUNS).map(|_| f()).min().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn secret_search() {
    const VALUE: &str = "sk-live-Zq9/x+Tw";
    let finder = SecretFinder::new(&[("API_KEY".to_string(), VALUE.to_string())]);
    let mut text = Vec::with_capacity(10 << 20);
    while text.len() < 10 << 20 {
        text.extend_from_slice(b"fn main() { let x = 42; println!(\"{x}\"); } // 50%\n");
    }
    let search = best(|| {
        let started = Instant::now();
        let mut stream = finder.stream();
        for piece in text.chunks(1 << 20) {
            stream.push(piece);
        }
        assert!(stream.finish().is_empty());
        started.elapsed()
    });
    let plain = best(|| {
        let started = Instant::now();
        let n = memchr::memmem::find_iter(&text, VALUE.as_bytes()).count();
        assert_eq!(n, 0);
        started.elapsed()
    });
    println!(
        "secret search, 10 MiB, best of {RUNS}: every form {:.1} ms, memmem of the raw value {:.1} ms, ratio {:.1}x",
        ms(search),
        ms(plain),
        ms(search) / ms(plain)
    );
}

fn link_resolution() {
    let mut links = HashMap::new();
    for i in 0..100_000 {
        let dir = format!("d{}/e{}", i % 100, i % 7);
        let target = match i % 3 {
            0 => "../../README.md".to_string(),
            1 => format!("../../d{}/e{}/l{}", (i + 1) % 100, (i + 1) % 7, i + 1),
            _ => "./sibling/../x".to_string(),
        };
        links.insert(format!("{dir}/l{i}"), target);
    }
    let mut refused = 0;
    let resolve = best(|| {
        let started = Instant::now();
        refused = links
            .keys()
            .filter(|p| links::resolve(p, &links).is_err())
            .count();
        started.elapsed()
    });
    let repo = tempfile::tempdir().expect("tmp");
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(repo.path())
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        cmd
    };
    assert!(git(&["init", "-q"]).status().expect("git init").success());
    let mut import = git(&["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    {
        let mut stream = std::io::BufWriter::new(import.stdin.take().expect("stdin"));
        let _ = writeln!(
            stream,
            "commit refs/heads/links\ncommitter b <b@example.com> 0 +0000\ndata 0"
        );
        for (path, target) in &links {
            let _ = write!(
                stream,
                "M 120000 inline {path}\ndata {}\n{target}\n",
                target.len()
            );
        }
        let _ = writeln!(stream);
    }
    assert!(import.wait().expect("fast-import").success());
    let listing = best(|| {
        let started = Instant::now();
        let out = git(&["ls-tree", "-r", "links"]).output().expect("ls-tree");
        assert_eq!(
            out.stdout.iter().filter(|b| **b == b'\n').count(),
            links.len()
        );
        started.elapsed()
    });
    println!(
        "link resolution, 100,000 links ({refused} refused), best of {RUNS}: {:.1} ms, git ls-tree -r of the same tree {:.1} ms, ratio {:.2}x",
        ms(resolve),
        ms(listing),
        ms(resolve) / ms(listing)
    );
}
