//! examples/transfer.rs as a user runs it: the built binary as a process (real signals, a real
//! `kill -9`, a real terminal for the bars) against loopback servers.

#![cfg(all(unix, feature = "journal"))]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::ranged::{self, Act};
use crate::support::{self, exit_status, LIMIT};

/// The example binary, next to this test binary (`cargo test` builds the examples).
fn example() -> PathBuf {
    example_named("transfer")
}

/// The binary of `examples/{name}.rs`, built no earlier than its source.
fn example_named(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/it-… → target/debug/examples/{name}
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "\n\n*** {} IS MISSING: these tests run the example as a process. `cargo test` builds \
         it; a filtered run may not: `cargo build --all-features --example {name}` first. ***\n",
        path.display()
    );
    // `cargo test --test it` alone does not rebuild examples: never test a stale binary.
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).unwrap();
    assert!(
        modified(&path) >= modified(&source),
        "\n\n*** {} IS OLDER THAN examples/{name}.rs: `cargo build --all-features --example \
         {name}` first (`cargo test` builds it). ***\n",
        path.display()
    );
    path
}

/// The variables the examples read that this test process may hold: removed from every
/// child's environment, so that neither the machine's own proxy settings reach a test's
/// loopback servers nor its log level or embed's options change what a test sees; a test sets
/// the ones it means.
const INHERITED_VARS: [&str; 12] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "RUST_LOG",
    "TOKEN",
    "PORT",
    "DOWNLOAD_DIR",
];

/// A running `transfer`: its stdout lines as they come, its stderr at the end.
struct Cli {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Cli {
    fn start(args: &[&str]) -> Cli {
        Cli::start_with("transfer", args, &[])
    }

    /// `examples/{name}` with `args`, and `env` set on top of this environment (without the
    /// [`INHERITED_VARS`]).
    fn start_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> Cli {
        let mut command = Command::new(example_named(name));
        command.args(args);
        for var in INHERITED_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Cli {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The first JSON line for which `pred` holds (bounded wait).
    async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        let mut checked = 0;
        loop {
            self.drain();
            for line in &self.seen[checked..] {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if pred(&v) {
                        return v;
                    }
                }
            }
            checked = self.seen.len();
            assert!(
                start.elapsed() < LIMIT,
                "{what}: never printed; stdout:\n{}",
                self.seen.join("\n")
            );
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The exit code (bounded wait), with stdout complete.
    async fn exit(&mut self) -> Option<i32> {
        let status = exit_status(&mut self.child, "the example").await;
        // The reader thread ends with the pipe.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status.code()
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    }

    fn json(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// `--serve`: the server's base URL (`http://ADDR`), from the `open http://ADDR/ ..` line
    /// (bounded wait).
    async fn served_at(&mut self) -> String {
        let start = Instant::now();
        loop {
            self.drain();
            if let Some(line) = self.seen.iter().find(|l| l.starts_with("open http://")) {
                return line["open ".len()..]
                    .split('/')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("/");
            }
            assert!(start.elapsed() < LIMIT, "no URL printed: {:?}", self.seen);
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: `kill` on our own child's pid, which has not been reaped yet.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slow() -> Act {
    Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(5),
    }
}

fn bytes_of(v: &Value) -> u64 {
    v["bytes_transferred"].as_u64().unwrap_or(0)
}

/// `kill -9` in the middle of a download, then a rerun with the same journal and no URL: the
/// rerun prints a `restored` line for the same id with its bytes on disk, asks the server for
/// the rest with `Range`, completes the file byte-exact and exits 0.
#[actix_rt::test]
async fn a_download_killed_mid_way_continues_when_rerun_with_the_journal() {
    let content = support::content(8 << 20, 3);
    let server = ranged::start(content.clone());
    server.script([slow()]);
    let dir = tempfile::tempdir().unwrap();
    let (journal, dl) = (dir.path().join("j.db"), dir.path().join("dl"));
    let (journal_s, dl_s) = (journal.to_str().unwrap(), dl.to_str().unwrap());
    let url = format!("{}/file", server.url);

    let mut first = Cli::start(&["--journal", journal_s, "--dir", dl_s, "--json", &url]);
    let queued = first.until("queued", |v| v["event"] == "queued").await;
    let id = queued["id"].as_u64().unwrap();
    first
        .until("256 KiB", |v| {
            v["event"] == "progress" && bytes_of(v) >= 256 << 10
        })
        .await;
    // Killed once some bytes are in the `.part` (the engine writes in batches).
    let start = Instant::now();
    while std::fs::metadata(dl.join("file.part")).map_or(0, |m| m.len()) == 0 {
        assert!(start.elapsed() < LIMIT, "nothing was written to the .part");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal(libc::SIGKILL);
    assert_eq!(first.exit().await, None, "killed by the signal");
    assert!(!dl.join("file").exists(), "no file under its final name");
    let part = std::fs::metadata(dl.join("file.part")).unwrap().len();
    assert!(part > 0 && part < content.len() as u64, "{part}");

    let mut second = Cli::start(&["--journal", journal_s, "--dir", dl_s, "--json"]);
    let code = second.exit().await;
    let stderr = second.stderr();
    assert_eq!(
        code,
        Some(0),
        "stdout:\n{}\nstderr:\n{stderr}",
        second.seen.join("\n")
    );
    let events = second.json();
    let restored = events
        .iter()
        .find(|v| v["event"] == "restored")
        .unwrap_or_else(|| panic!("no restored line: {:?}", second.seen));
    assert_eq!(restored["id"].as_u64(), Some(id));
    assert!(restored["bytes_on_disk"].is_u64(), "{restored}");
    assert_eq!(restored["url"].as_str(), Some(&*url));
    assert!(events.iter().any(|v| v["id"].as_u64() == Some(id)
        && v["event"] == "ended"
        && v["outcome"] == "completed"));
    assert_eq!(std::fs::read(dl.join("file")).unwrap(), content);
    assert!(!dl.join("file.part").exists());
    let resumed = server.seen().last().cloned().unwrap();
    let range = resumed.range.expect("the rerun asked for a range");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{range}"));
    assert!(
        from > 0 && from <= part,
        "Range {range} with {part} bytes on disk"
    );
    // The restored line says the bytes the resume continues from, not the journal's figure.
    assert_eq!(restored["bytes_on_disk"].as_u64(), Some(from), "{restored}");
    assert_eq!(resumed.if_range.as_deref(), Some("\"v1\""));
}

/// Ctrl-C (SIGINT) with a journal stops the download resumably: exit code 130, the `.part`
/// kept; the next run with the same journal asks for the rest with `Range` and completes it.
#[actix_rt::test]
async fn ctrl_c_with_a_journal_exits_130_and_the_next_run_resumes() {
    let content = support::content(6 << 20, 4);
    let server = ranged::start(content.clone());
    server.script([slow()]);
    let dir = tempfile::tempdir().unwrap();
    let (journal, dl) = (dir.path().join("j.db"), dir.path().join("dl"));
    let (journal_s, dl_s) = (journal.to_str().unwrap(), dl.to_str().unwrap());
    let url = format!("{}/file", server.url);

    let mut first = Cli::start(&["--journal", journal_s, "--dir", dl_s, "--json", &url]);
    first
        .until("256 KiB", |v| {
            v["event"] == "progress" && bytes_of(v) >= 256 << 10
        })
        .await;
    first.signal(libc::SIGINT);
    assert_eq!(first.exit().await, Some(130), "{}", first.stderr());
    assert!(!dl.join("file").exists());
    let part = std::fs::metadata(dl.join("file.part")).unwrap().len();
    assert!(part > 0 && part < content.len() as u64, "{part}");

    let mut second = Cli::start(&["--journal", journal_s, "--dir", dl_s, "--json"]);
    assert_eq!(second.exit().await, Some(0), "{}", second.stderr());
    assert_eq!(std::fs::read(dl.join("file")).unwrap(), content);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[1].range.as_deref(),
        Some(&*format!("bytes={part}-")),
        "the rerun continues from the .part"
    );
}

/// With `--json`, every `queued` line carries the URL it was given for.
#[actix_rt::test]
async fn json_queued_lines_carry_the_url() {
    let server = ranged::start(support::content(64 << 10, 5));
    let dir = tempfile::tempdir().unwrap();
    let urls = [
        format!("{}/file?n=1", server.url),
        format!("{}/file?n=2", server.url),
    ];
    let mut cli = Cli::start(&[
        "--dir",
        dir.path().to_str().unwrap(),
        "--json",
        &urls[0],
        &urls[1],
    ]);
    assert_eq!(cli.exit().await, Some(0), "{}", cli.stderr());
    let queued: Vec<Value> = cli
        .json()
        .into_iter()
        .filter(|v| v["event"] == "queued")
        .collect();
    assert_eq!(queued.len(), 2, "{:?}", cli.seen);
    let mut got: Vec<&str> = queued.iter().map(|v| v["url"].as_str().unwrap()).collect();
    got.sort();
    assert_eq!(got, [&*urls[0], &*urls[1]]);
}

/// `-H 'Name: value'` is sent with the request; a header without a colon is a usage error
/// (exit code 2, a sentence on stderr) and nothing is requested.
#[actix_rt::test]
async fn a_header_option_reaches_the_server_and_a_bad_one_is_a_usage_error() {
    let server = ranged::start(support::content(64 << 10, 6));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/file", server.url);
    let d = dir.path().to_str().unwrap();

    let mut bad = Cli::start(&["--dir", d, "--json", "-H", "Authorization Bearer x", &url]);
    assert_eq!(bad.exit().await, Some(2));
    let stderr = bad.stderr();
    assert!(stderr.contains("'Name: value'"), "{stderr}");
    assert!(server.seen().is_empty(), "nothing was requested");

    let mut cli = Cli::start(&[
        "--dir",
        d,
        "--json",
        "-H",
        "Authorization: Bearer s3cret",
        &url,
    ]);
    assert_eq!(cli.exit().await, Some(0), "{}", cli.stderr());
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer s3cret"));
}

/// `-o NAME` names the file (whatever the URL says); with two URLs it is a usage error.
#[actix_rt::test]
async fn an_output_option_names_the_file_for_one_url_only() {
    let content = support::content(64 << 10, 7);
    let server = ranged::start(content.clone());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/file?token=secret", server.url);
    let d = dir.path().to_str().unwrap();

    let mut two = Cli::start(&["--dir", d, "-o", "x.bin", &url, &url]);
    assert_eq!(two.exit().await, Some(2));
    assert!(two.stderr().contains("exactly one URL"));

    let mut cli = Cli::start(&["--dir", d, "--json", "-o", "named.bin", &url]);
    assert_eq!(cli.exit().await, Some(0), "{}", cli.stderr());
    assert_eq!(
        std::fs::read(dir.path().join("named.bin")).unwrap(),
        content
    );
    assert_eq!(support::files(dir.path()).len(), 1, "only that file");
}

/// The bars as a terminal of 80 columns shows them (the example runs under `script`, which
/// gives it a pseudo-terminal: indicatif draws only to a terminal): every line fits in 80
/// columns, the bar is named after the file and never shows the URL's query (a token), and it
/// shows an ETA while the download runs.
#[actix_rt::test]
async fn the_bars_fit_80_columns_show_an_eta_and_never_the_query() {
    let script = Path::new("/usr/bin/script");
    if !script.exists() {
        let msg = "*** /usr/bin/script (util-linux) is missing: the bars cannot be checked ***";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("{msg}");
        return;
    }
    let content = support::content(3 << 20, 8);
    let server = ranged::start(content.clone());
    server.script([slow()]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/file?token=SECRET", server.url);
    let command = format!(
        "stty cols 80 rows 24; exec {} --dir {} '{url}'",
        example().display(),
        dir.path().display()
    );
    let mut cli = Cli {
        child: Command::new(script)
            .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        lines: mpsc::channel().1,
        seen: Vec::new(),
    };
    let mut out = String::new();
    let mut stdout = cli.child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut bytes);
        bytes
    });
    assert_eq!(cli.exit().await, Some(0), "{}", cli.stderr());
    out.push_str(&String::from_utf8_lossy(&reader.join().unwrap()));
    assert_eq!(std::fs::read(dir.path().join("file")).unwrap(), content);

    let screen = strip_ansi(&out);
    let lines: Vec<&str> = screen.split(['\r', '\n']).collect();
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(
        widest <= 80,
        "a line of {widest} columns:\n{}",
        lines
            .iter()
            .filter(|l| l.chars().count() > 80)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!screen.contains("SECRET"), "the token is on screen");
    assert!(!screen.contains("token="), "the query is on screen");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("file ") && l.contains("eta ")),
        "no bar named `file` with an ETA:\n{screen}"
    );
    // What is left on the terminal at the end: the summary, and no bar above it (a bar wider
    // than the terminal wraps, and the redraws that clear it then miss its other rows).
    let last = final_screen(&out, 80);
    assert!(
        last.iter().any(|l| l.starts_with("saved under")),
        "no summary:\n{}",
        last.join("\n")
    );
    assert!(
        !last.iter().any(|l| l.contains('█') || l.contains('░')),
        "a bar is left on the screen:\n{}",
        last.join("\n")
    );
}

/// The rows a terminal `cols` wide shows once `out` was written to it (a minimal emulator of
/// what indicatif and the summary use: text with pending wrap at the right margin, CR, LF,
/// and the CSI sequences that move the cursor and erase; others are ignored).
fn final_screen(out: &str, cols: usize) -> Vec<String> {
    let mut rows: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
            }
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    chars.next();
                    continue;
                }
                chars.next();
                let mut param = String::new();
                let mut end = ' ';
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        end = c;
                        break;
                    }
                    param.push(c);
                }
                let n = param.parse::<usize>().unwrap_or(1).max(1);
                while rows.len() <= row {
                    rows.push(Vec::new());
                }
                match end {
                    'A' => row = row.saturating_sub(n),
                    'B' => row += n,
                    'C' => col = (col + n).min(cols - 1),
                    'D' => col = col.saturating_sub(n),
                    'G' => col = n - 1,
                    'K' => match param.as_str() {
                        "2" => rows[row].clear(),
                        "1" => {
                            for x in rows[row].iter_mut().take(col + 1) {
                                *x = ' ';
                            }
                        }
                        _ => rows[row].truncate(col),
                    },
                    'J' => {
                        rows[row].truncate(col);
                        rows.truncate(row + 1);
                    }
                    _ => {}
                }
            }
            c if c.is_control() => {}
            c => {
                if col >= cols {
                    row += 1;
                    col = 0;
                }
                while rows.len() <= row {
                    rows.push(Vec::new());
                }
                let line = &mut rows[row];
                while line.len() < col {
                    line.push(' ');
                }
                if col < line.len() {
                    line[col] = c;
                } else {
                    line.push(c);
                }
                col += 1;
            }
        }
    }
    rows.into_iter()
        .map(|r| r.into_iter().collect::<String>().trim_end().to_owned())
        .collect()
}

/// The text a terminal shows, without its escape sequences (CSI and OSC).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                for c in chars.by_ref() {
                    if c == '\x07' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// `--serve --journal`: a download added through the API and interrupted by SIGTERM continues
/// when the server is started again on the same journal (same id, `Range` from the `.part`),
/// and completes byte-exact.
#[actix_rt::test]
async fn serve_with_a_journal_continues_after_sigterm_and_a_restart() {
    let content = support::content(8 << 20, 9);
    let server = ranged::start(content.clone());
    server.script([slow()]);
    let dir = tempfile::tempdir().unwrap();
    let (journal, dl) = (dir.path().join("j.db"), dir.path().join("dl"));
    let args = [
        "--serve",
        "127.0.0.1:0",
        "--token",
        "tk",
        "--journal",
        journal.to_str().unwrap(),
        "--dir",
        dl.to_str().unwrap(),
    ];
    let client = awc::Client::new();
    let status = |base: String, id: u64| {
        let client = client.clone();
        async move {
            let mut res = client
                .get(format!("{base}/api/transfers/{id}"))
                .bearer_auth("tk")
                .send()
                .await
                .unwrap();
            res.json::<Value>().await.unwrap()
        }
    };

    let mut first = Cli::start(&args);
    let b = first.served_at().await;
    let mut res = client
        .post(format!("{b}/api/transfers"))
        .bearer_auth("tk")
        .send_json(&serde_json::json!({ "url": format!("{}/file", server.url) }))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let start = Instant::now();
    while std::fs::metadata(dl.join("file.part")).map_or(0, |m| m.len()) == 0 {
        assert!(start.elapsed() < LIMIT, "nothing was written to the .part");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    first.signal(libc::SIGTERM);
    assert_eq!(first.exit().await, Some(0), "{}", first.stderr());
    assert!(!dl.join("file").exists());
    let part = std::fs::metadata(dl.join("file.part")).unwrap().len();
    assert!(part > 0 && part < content.len() as u64, "{part}");

    let mut second = Cli::start(&args);
    let b = second.served_at().await;
    let start = Instant::now();
    loop {
        let s = status(b.clone(), id).await;
        if s["state"] == "ended" {
            assert_eq!(s["outcome"], "completed", "{s}");
            break;
        }
        assert!(start.elapsed() < LIMIT, "never ended: {s}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(dl.join("file")).unwrap(), content);
    let seen = server.seen();
    assert_eq!(
        seen.last().unwrap().range.as_deref(),
        Some(&*format!("bytes={part}-"))
    );
}

/// Ctrl-C with a journal, seen on an 80-column terminal: once the program has exited, the
/// terminal shows the summary (which transfer stopped, how to continue) and no bar: a bar
/// left running (its transfer kept resumable, without an end) would be drawn again.
#[actix_rt::test]
async fn ctrl_c_with_a_journal_leaves_the_summary_and_no_bar_on_the_terminal() {
    let script = Path::new("/usr/bin/script");
    if !script.exists() {
        let msg = "*** /usr/bin/script (util-linux) is missing: the bars cannot be checked ***";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("{msg}");
        return;
    }
    let content = support::content(8 << 20, 10);
    let server = ranged::start(content);
    server.script([slow()]);
    let dir = tempfile::tempdir().unwrap();
    let (journal, dl) = (dir.path().join("j.db"), dir.path().join("dl"));
    let command = format!(
        "stty cols 80 rows 24; exec {} --journal {} --dir {} '{}/file'",
        example().display(),
        journal.display(),
        dl.display(),
        server.url
    );
    let mut child = Command::new(script)
        .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut bytes);
        bytes
    });
    // The example is script's child (the shell execs it).
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let start = Instant::now();
    let pid = loop {
        let part = std::fs::metadata(dl.join("file.part")).map_or(0, |m| m.len());
        let pid = std::fs::read_to_string(&children).ok().and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|p| p.parse::<i32>().ok())
        });
        if let (Some(pid), true) = (pid, part > 0) {
            break pid;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the download never wrote to its .part"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    };
    // SAFETY: a signal to the example, which runs until it has handled it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = exit_status(&mut child, "the example").await;
    assert_eq!(status.code(), Some(130));
    let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let screen = final_screen(&out, 80);
    let text = screen.join("\n");
    assert!(
        screen
            .iter()
            .any(|l| l.contains("stopped at") && l.contains("--journal")),
        "no summary saying how to continue:\n{text}"
    );
    assert!(
        !screen.iter().any(|l| l.contains('█') || l.contains('░')),
        "a bar is left on the screen:\n{text}"
    );
}

/// `--serve` with event-stream clients, one still connected and one gone: SIGTERM stops the
/// server and the engine within 2 s, and ends the open stream. (A graceful stop waits for
/// every open response, up to actix-web's 30 s `shutdown_timeout`, unless the streams are
/// ended first.)
#[actix_rt::test]
async fn serve_exits_within_two_seconds_of_sigterm_with_event_clients_connected() {
    let server = ranged::start(support::content(8 << 20, 11));
    server.script([slow()]);
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl");
    let mut cli = Cli::start(&[
        "--serve",
        "127.0.0.1:0",
        "--token",
        "tk",
        "--dir",
        dl.to_str().unwrap(),
    ]);
    let base = cli.served_at().await;
    let client = awc::Client::builder().timeout(LIMIT).finish();
    // A download in progress, so that the streams carry events.
    let res = client
        .post(format!("{base}/api/transfers"))
        .bearer_auth("tk")
        .send_json(&serde_json::json!({ "url": format!("{}/file", server.url) }))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let open_stream = || async {
        let mut res = client
            .get(format!("{base}/api/events"))
            .bearer_auth("tk")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        // The first frame (`retry:`): the stream is established on the server's side.
        let first = actix_rt::time::timeout(LIMIT, futures::StreamExt::next(&mut res)).await;
        assert!(matches!(first, Ok(Some(Ok(_)))), "no first frame");
        res
    };
    let mut kept = open_stream().await;
    drop(open_stream().await);

    let start = Instant::now();
    cli.signal(libc::SIGTERM);
    let code = exit_status(&mut cli.child, "the example").await.code();
    let took = start.elapsed();
    eprintln!("exited {took:?} after SIGTERM");
    assert_eq!(code, Some(0), "{}", cli.stderr());
    assert!(
        took < Duration::from_secs(2),
        "SIGTERM to exit took {took:?}"
    );
    // The open stream ended (closed by the server, not cut by a timeout).
    let start = Instant::now();
    loop {
        match actix_rt::time::timeout(LIMIT, futures::StreamExt::next(&mut kept)).await {
            Ok(Some(Ok(_))) => assert!(start.elapsed() < LIMIT, "the stream never ended"),
            Ok(None | Some(Err(_))) => break,
            Err(_) => panic!("the open stream neither ended nor sent anything"),
        }
    }
}

/// `--serve` on an address beyond loopback says so and refuses URLs into private networks
/// (server-side request forgery), before anything is requested; on loopback it does not
/// (`serve_with_a_journal_continues_after_sigterm_and_a_restart` downloads from 127.0.0.1).
#[actix_rt::test]
async fn serve_beyond_loopback_refuses_urls_into_private_networks() {
    let server = ranged::start(support::content(1 << 10, 12));
    let dir = tempfile::tempdir().unwrap();
    let mut cli = Cli::start(&[
        "--serve",
        "0.0.0.0:0",
        "--token",
        "tk",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    // Requests go to loopback only, whatever the address listened on.
    let base = cli.served_at().await.replace("0.0.0.0", "127.0.0.1");
    let start = Instant::now();
    while !cli
        .seen
        .iter()
        .any(|l| l.contains("server-side request forgery"))
    {
        assert!(start.elapsed() < LIMIT, "no policy line: {:?}", cli.seen);
        actix_rt::time::sleep(Duration::from_millis(10)).await;
        cli.drain();
    }
    let client = awc::Client::builder().timeout(LIMIT).finish();
    for url in [
        format!("{}/file", server.url),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://localhost:9/".to_owned(),
    ] {
        let mut res = client
            .post(format!("{base}/api/transfers"))
            .bearer_auth("tk")
            .send_json(&serde_json::json!({ "url": url }))
            .await
            .unwrap();
        let v: Value = res.json().await.unwrap();
        assert_eq!(res.status().as_u16(), 403, "{url}: {v}");
        assert_eq!(v["error"]["kind"], "forbidden", "{v}");
    }
    assert!(server.seen().is_empty(), "nothing was requested");
    cli.signal(libc::SIGTERM);
    assert_eq!(cli.exit().await, Some(0), "{}", cli.stderr());
}

/// `--ca-cert FILE`: a TLS server whose certificate a CA made in the test signed is refused
/// without it (a summary line naming the TLS failure, exit code 1, no request got through),
/// and trusted with it: the file completes byte-exact; through `--proxy` too (a `CONNECT`
/// tunnel, the origin's certificate checked against the same root).
#[cfg(feature = "rustls")]
#[actix_rt::test]
async fn a_ca_cert_option_trusts_a_private_ca_directly_and_through_a_proxy() {
    let pki = crate::tls::pki();
    let server = support::tls_server(pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = ca.to_str().unwrap();
    let dl = dir.path().join("dl");
    let d = dl.to_str().unwrap();
    let url = server.url("/bytes/300000");

    let mut refused = Cli::start(&["--dir", d, "-o", "a.bin", &url]);
    let code = refused.exit().await;
    let stderr = refused.stderr();
    let stdout = refused.seen.join("\n");
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = refused
        .seen
        .iter()
        .find(|l| l.contains(" failed "))
        .unwrap_or_else(|| panic!("no failure line:\n{stdout}\nstderr:\n{stderr}"));
    assert!(
        line.ends_with(
            "failed after 0 bytes: TLS handshake failed: invalid peer certificate: unknown \
             issuer (tls)"
        ),
        "{line}"
    );
    support::assert_sentence(line);
    assert_eq!(server.requests(), 0, "no request got through");
    assert!(!dl.join("a.bin").exists());

    let mut trusted = Cli::start(&["--dir", d, "--json", "--ca-cert", ca, "-o", "a.bin", &url]);
    assert_eq!(trusted.exit().await, Some(0), "{}", trusted.stderr());
    assert!(trusted
        .json()
        .iter()
        .any(|v| v["event"] == "ended" && v["outcome"] == "completed"));
    assert_eq!(
        std::fs::read(dl.join("a.bin")).unwrap(),
        support::pattern(300_000)
    );
    assert_eq!(server.requests(), 1);

    let proxy = support::proxy::TestProxy::start(None);
    let mut tunnelled = Cli::start(&[
        "--dir",
        d,
        "--json",
        "--ca-cert",
        ca,
        "--proxy",
        &proxy.url,
        "-o",
        "b.bin",
        &url,
    ]);
    assert_eq!(tunnelled.exit().await, Some(0), "{}", tunnelled.stderr());
    assert_eq!(
        std::fs::read(dl.join("b.bin")).unwrap(),
        support::pattern(300_000)
    );
    let authority = server.base.trim_start_matches("https://");
    let seen: Vec<String> = proxy.seen().into_iter().map(|s| s.line).collect();
    assert_eq!(seen, [format!("CONNECT {authority} HTTP/1.1")]);
    assert_eq!(server.requests(), 2);
    server.stop().await;
}

/// Runs `transfer --dir DIR --json ARGS URL` with `env`; asserts exit code 0 and the file
/// `file` byte-exact; the temp dir.
async fn downloads_file(
    url: &str,
    content: &[u8],
    args: &[&str],
    env: &[(&str, &str)],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut argv = vec!["--dir", dir.path().to_str().unwrap(), "--json"];
    argv.extend_from_slice(args);
    argv.push(url);
    let mut cli = Cli::start_with("transfer", &argv, env);
    let code = cli.exit().await;
    assert_eq!(
        code,
        Some(0),
        "{args:?} {env:?}\nstdout:\n{}\nstderr:\n{}",
        cli.seen.join("\n"),
        cli.stderr()
    );
    assert_eq!(
        std::fs::read(dir.path().join("file")).unwrap(),
        content,
        "{args:?} {env:?}"
    );
    dir
}

/// `--proxy URL` sends the requests through that proxy (with its credentials); without it,
/// `http_proxy` from the environment does; `no_proxy` exempts the hosts it names, from either;
/// `--proxy` wins over the environment's proxy.
#[actix_rt::test]
async fn a_proxy_option_or_the_environments_proxy_is_used_and_no_proxy_honoured() {
    use support::proxy::{basic, dead_port, Seen, TestProxy};
    let content = support::content(100 << 10, 13);
    let server = ranged::start(content.clone());
    let url = format!("{}/file", server.url);
    let through = Seen {
        line: format!("GET {url} HTTP/1.1"),
        auth: None,
    };
    let dead = format!("http://127.0.0.1:{}", dead_port());

    // --proxy, with credentials.
    let guarded = TestProxy::start(Some(("u", "p")));
    downloads_file(
        &url,
        &content,
        &["--proxy", &guarded.url_with("u", "p")],
        &[],
    )
    .await;
    assert_eq!(
        guarded.seen(),
        [Seen {
            auth: Some(basic("u", "p")),
            ..through.clone()
        }]
    );
    assert_eq!(server.seen().len(), 1);

    // http_proxy from the environment, without --proxy.
    let proxy = TestProxy::start(None);
    downloads_file(&url, &content, &[], &[("http_proxy", &proxy.url)]).await;
    assert_eq!(proxy.seen(), std::slice::from_ref(&through));
    assert_eq!(server.seen().len(), 2);

    // no_proxy names the host: direct.
    let no_proxy = ("no_proxy", "example.invalid, 127.0.0.1");
    downloads_file(&url, &content, &[], &[("HTTP_PROXY", &proxy.url), no_proxy]).await;
    assert_eq!(proxy.seen().len(), 1, "{:?}", proxy.seen());
    assert_eq!(server.seen().len(), 3);

    // --proxy over the environment's (a dead one here): the proxy of the option.
    downloads_file(
        &url,
        &content,
        &["--proxy", &proxy.url],
        &[("http_proxy", &dead)],
    )
    .await;
    assert_eq!(proxy.seen(), [through.clone(), through.clone()]);
    assert_eq!(server.seen().len(), 4);

    // no_proxy applies to --proxy too.
    downloads_file(&url, &content, &["--proxy", &proxy.url], &[no_proxy]).await;
    assert_eq!(proxy.seen().len(), 2, "{:?}", proxy.seen());
    assert_eq!(server.seen().len(), 5);
}

/// `--mirror URL`: the URL given is dead (nothing listens on its port: connection refused);
/// the retry goes to the mirror, which serves the whole file: it completes byte-exact, exit
/// code 0, after one `retrying` line naming the refused connection.
#[actix_rt::test]
async fn a_mirror_serves_the_file_when_the_url_is_dead() {
    let content = support::content(256 << 10, 14);
    let server = ranged::start(content.clone());
    let dead = format!("http://127.0.0.1:{}/file", support::proxy::dead_port());
    let mirror = format!("{}/file", server.url);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut cli = Cli::start(&["--dir", d, "--json", "--mirror", &mirror, &dead]);
    assert_eq!(cli.exit().await, Some(0), "{}", cli.stderr());
    let events = cli.json();
    let retrying: Vec<&Value> = events.iter().filter(|v| v["event"] == "retrying").collect();
    assert_eq!(retrying.len(), 1, "{:?}", cli.seen);
    assert_eq!(retrying[0]["error"]["kind"], "connect", "{}", retrying[0]);
    assert!(events
        .iter()
        .any(|v| v["event"] == "ended" && v["outcome"] == "completed"));
    assert_eq!(std::fs::read(dir.path().join("file")).unwrap(), content);
    assert_eq!(support::files(dir.path()).len(), 1, "only that file");
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].range, None,
        "from zero: nothing came from the dead URL"
    );
}

/// `--help` of every example prints its usage to stdout, nothing to stderr, and exits 0.
/// `loadtest` is not run here: it is built as a test harness (`test = true`), so `cargo test`
/// leaves no binary of it to run; its own unit test checks that `--help` is clap's
/// `DisplayHelp` (stdout, exit code 0).
#[actix_rt::test]
async fn help_goes_to_stdout_with_exit_code_0_for_every_example() {
    for name in ["transfer", "fleet", "embed"] {
        let mut cli = Cli::start_with(name, &["--help"], &[]);
        let code = cli.exit().await;
        let stderr = cli.stderr();
        let stdout = cli.seen.join("\n");
        assert_eq!(
            code,
            Some(0),
            "{name}: stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(stdout.contains("Usage:"), "{name}: {stdout}");
        assert!(stdout.contains("--help"), "{name}: {stdout}");
        assert!(stderr.is_empty(), "{name}: {stderr}");
    }
}

/// examples/embed.rs reads its options from the environment (`TOKEN`, `PORT`, `DOWNLOAD_DIR`)
/// as from its flags: without a token it is a usage error (exit code 2); with `TOKEN` and
/// `PORT=0` it serves the application's route and the control plane (the token required) on
/// the port it prints, and SIGTERM stops it with exit code 0.
#[actix_rt::test]
async fn embed_takes_its_options_from_the_environment_or_its_flags() {
    // Without TOKEN, whatever this process's environment holds.
    let mut bare = Cli::start_with("embed", &["--port", "0"], &[]);
    let status = exit_status(&mut bare.child, "embed without a token").await;
    let stderr = bare.stderr();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let mut cli = Cli::start_with(
        "embed",
        &[],
        &[
            ("TOKEN", "s3cret"),
            ("PORT", "0"),
            ("DOWNLOAD_DIR", dir.path().to_str().unwrap()),
        ],
    );
    let start = Instant::now();
    let base = loop {
        cli.drain();
        if let Some(rest) = cli
            .seen
            .iter()
            .find_map(|l| l.strip_prefix("embed: http://"))
        {
            let addr = rest.split('/').next().unwrap();
            break format!("http://{addr}");
        }
        if start.elapsed() > LIMIT {
            let stderr = cli.stderr();
            panic!("no address printed: {:?}\n{stderr}", cli.seen);
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        cli.seen[0].contains(&*dir.path().display().to_string()),
        "DOWNLOAD_DIR is where files go: {}",
        cli.seen[0]
    );
    let client = awc::Client::builder().timeout(LIMIT).finish();
    let mut hello = client.get(format!("{base}/hello")).send().await.unwrap();
    assert_eq!(hello.status().as_u16(), 200);
    assert_eq!(&hello.body().await.unwrap()[..], b"hello from the app\n");
    let api = format!("{base}/transfers/api/transfers");
    let without = client.get(&api).send().await.unwrap();
    assert_eq!(without.status().as_u16(), 401);
    let with = client.get(&api).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(with.status().as_u16(), 200);
    cli.signal(libc::SIGTERM);
    assert_eq!(cli.exit().await, Some(0), "{}", cli.stderr());
}
