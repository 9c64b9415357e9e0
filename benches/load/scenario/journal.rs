//! `journal`: what the durable journal (feature `journal`) costs, journal on vs off,
//! interleaved round by round: many small downloads to files, one large download, thousands
//! of open transfers (RSS and the journal's size, each side in a fresh child process), and the
//! start of an engine on a journal of many ended transfers.

#[cfg(not(feature = "journal"))]
pub async fn run(
    _o: &crate::opts::Opts,
    _base: &str,
    _dir: &std::path::Path,
    _report: &mut crate::report::Report,
) {
    eprintln!("scenario journal: needs the `journal` feature (--features journal); skipped");
}

#[cfg(not(feature = "journal"))]
pub fn open_side(_args: &[String]) {}

#[cfg(feature = "journal")]
pub use on::{open_side, run};

#[cfg(feature = "journal")]
mod on {
    use std::{
        path::{Path, PathBuf},
        process::{Command, Stdio},
        time::{Duration, Instant},
    };

    use actix::Addr;
    use actix_transfer::{
        Cancel, Conflict, Download, Engine, List, RetryPolicy, Shutdown, Status, Subscribe,
        TransferId, TransferState, Wait,
    };

    use crate::{
        metrics::{flush_disks, median, rss},
        opts::Opts,
        recorder::{Ends, EndsActor},
        report::Report,
    };

    /// An engine like the other scenarios' (one worker, no retries), with a journal at
    /// `journal` when given, and a recorder of every `Ended`.
    async fn engine(
        dir: &Path,
        journal: Option<&Path>,
        max_active: usize,
    ) -> (Addr<Engine>, Ends, Addr<EndsActor>) {
        use actix::Actor;
        let mut b = Engine::builder()
            .workers(1)
            .download_dir(dir)
            .max_active(max_active)
            .retry(RetryPolicy::never())
            .progress_interval(Duration::from_millis(250));
        if let Some(j) = journal {
            b = b.journal(j);
        }
        let engine = b.try_start().expect("the engine starts");
        let ends = Ends::default();
        let actor = EndsActor(ends.clone()).start();
        engine
            .send(Subscribe::all(actor.clone().recipient()))
            .await
            .unwrap()
            .unwrap();
        (engine, ends, actor)
    }

    /// The size of the journal's files (the database, its WAL and shared-memory index).
    fn journal_bytes(path: &Path) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .map(|s| {
                let mut p = path.as_os_str().to_owned();
                p.push(s);
                std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.len())
            })
            .sum()
    }

    pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
        files(o, base, dir, report).await;
        large(o, base, dir, report).await;
        open(o, base, report);
        start(o, base, dir, report).await;
    }

    /// Many 16 KiB downloads to files, on vs off; the side that goes first alternates.
    async fn files(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
        let n: usize = if o.quick { 500 } else { 2_000 };
        let url = format!("{base}/bytes/16384");
        let (mut on, mut off) = (Vec::new(), Vec::new());
        let mut journal_size = 0;
        for round in 0..o.rounds {
            for with in if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            } {
                let sub = dir.join(format!("journal-files-{round}-{with}"));
                std::fs::create_dir_all(&sub).unwrap();
                let journal = sub.join("journal.db");
                flush_disks();
                let (engine, ends, _a) = engine(&sub, with.then_some(&*journal), 256).await;
                let start = Instant::now();
                for i in 0..n {
                    engine
                        .send(Download::new(&url).to(format!("f{i}")))
                        .await
                        .unwrap()
                        .unwrap();
                }
                ends.wait_for(n, Duration::from_secs(300)).await;
                let rate = n as f64 / start.elapsed().as_secs_f64();
                engine.send(Shutdown).await.unwrap();
                if with {
                    journal_size = journal_bytes(&journal);
                    on.push(rate);
                } else {
                    off.push(rate);
                }
                let _ = std::fs::remove_dir_all(&sub);
            }
        }
        let (on, off) = (median(on), median(off));
        let s = "journal";
        report.add(s, &format!("{n} x 16 KiB to files: journal on"), on, "/s");
        report.add(s, &format!("{n} x 16 KiB to files: journal off"), off, "/s");
        report.ratio(s, "files/s, journal on vs off", "off", on / off, 0.9, true);
        report.add(
            s,
            &format!("journal size after {n} downloads"),
            journal_size as f64 / 1024.0,
            "KiB",
        );
    }

    /// One large download, on vs off; the side that goes first alternates.
    async fn large(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
        let size: u64 = if o.quick { 64 << 20 } else { 1 << 30 };
        let url = format!("{base}/bytes/{size}");
        let journal = dir.join("journal-large.db");
        let (plain, _e1, _a1) = engine(dir, None, 16).await;
        let (journaled, _e2, _a2) = engine(dir, Some(&journal), 16).await;
        let download = |engine: Addr<Engine>, name: String| {
            let url = url.clone();
            async move {
                flush_disks();
                let start = Instant::now();
                let d = Download::new(&url).to(name).conflict(Conflict::Overwrite);
                let id = engine.send(d).await.unwrap().unwrap();
                let out = engine.send(Wait(id)).await.unwrap().unwrap();
                assert!(out.is_completed(), "{out:?}");
                let rate = size as f64 / start.elapsed().as_secs_f64() / 1e6;
                let _ = std::fs::remove_file(out.path().unwrap());
                rate
            }
        };
        // Untimed: whoever writes the first large file pays for evicting the page cache.
        download(plain.clone(), "journal-warm-up".into()).await;
        let (mut on, mut off) = (Vec::new(), Vec::new());
        // One 1 GiB download varies by several per cent from one to the next on this kind of
        // machine (the page cache, the disk), more than the journal's few row writes could
        // cost: the median needs more than 3 of each.
        let rounds = if o.quick { o.rounds } else { o.rounds.max(9) };
        for round in 0..rounds {
            if round % 2 == 1 {
                on.push(download(journaled.clone(), format!("journal-on-{round}")).await);
            }
            off.push(download(plain.clone(), format!("journal-off-{round}")).await);
            if round % 2 == 0 {
                on.push(download(journaled.clone(), format!("journal-on-{round}")).await);
            }
        }
        plain.send(Shutdown).await.unwrap();
        journaled.send(Shutdown).await.unwrap();
        let (on, off) = (median(on), median(off));
        let s = "journal";
        let mib = size >> 20;
        report.add(s, &format!("{mib} MiB download: journal on"), on, "MB/s");
        report.add(s, &format!("{mib} MiB download: journal off"), off, "MB/s");
        report.ratio(
            s,
            "large MB/s, journal on vs off",
            "off",
            on / off,
            0.97,
            true,
        );
    }

    /// Thousands of open slow downloads, each side in a fresh child process (the RSS a side
    /// grows by depends on what the heap held before): RSS per transfer, and the journal's
    /// size with all of them open.
    fn open(o: &Opts, base: &str, report: &mut Report) {
        let n: usize = if o.quick { 500 } else { 5_000 };
        let url = format!("{base}/slow/100000000");
        let side = |which: &str| {
            let out = Command::new(std::env::current_exe().unwrap())
                .args(["--journal-open-side", which, &n.to_string(), &url])
                .stderr(Stdio::inherit())
                .output()
                .expect("run a journal open side");
            assert!(out.status.success(), "the {which} side of `journal` failed");
            let line = String::from_utf8_lossy(&out.stdout);
            serde_json::from_str::<serde_json::Value>(line.trim()).expect("one JSON line")
        };
        let off = side("off");
        let on = side("on");
        let per = |v: &serde_json::Value| v["rss_per"].as_f64().unwrap() / 1024.0;
        let s = "journal";
        report.add(
            s,
            &format!("{n} open downloads: RSS per transfer, journal on"),
            per(&on),
            "KiB",
        );
        report.add(
            s,
            &format!("{n} open downloads: RSS per transfer, journal off"),
            per(&off),
            "KiB",
        );
        report.add(
            s,
            &format!("{n} open downloads: journal size"),
            on["journal_bytes"].as_f64().unwrap() / (1 << 20) as f64,
            "MiB",
        );
    }

    /// Child entry: `load --journal-open-side on|off N URL`; prints one JSON line.
    pub fn open_side(args: &[String]) {
        let (with, n, url) = (args[0] == "on", args[1].parse().unwrap(), args[2].clone());
        let out = actix_rt::System::new().block_on(async move {
            let tmp = tempfile::tempdir().unwrap();
            let journal = tmp.path().join("journal.db");
            let (engine, ends, _a) = engine(tmp.path(), with.then_some(&*journal), n).await;
            let before = rss();
            let mut ids = Vec::with_capacity(n);
            for i in 0..n {
                let d = Download::new(&url).to(format!("slow-{i}"));
                ids.push(engine.send(d).await.unwrap().unwrap());
            }
            // Wait (bounded) until every transfer has bytes flowing.
            let start = Instant::now();
            loop {
                let active = engine
                    .send(List::in_state(TransferState::Active))
                    .await
                    .unwrap();
                if active.iter().filter(|s| s.bytes_transferred > 0).count() == n
                    || start.elapsed() > Duration::from_secs(60)
                {
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            actix_rt::time::sleep(Duration::from_secs(1)).await;
            let rss_per = rss().saturating_sub(before) as f64 / n as f64;
            let journal_bytes = journal_bytes(&journal);
            futures::future::join_all(ids.iter().map(|id| engine.send(Cancel(*id)))).await;
            ends.wait_for(n, Duration::from_secs(120)).await;
            engine.send(Shutdown).await.unwrap();
            serde_json::json!({ "rss_per": rss_per, "journal_bytes": journal_bytes })
        });
        println!("{out}");
    }

    /// The start of an engine on a journal of many ended transfers: kept (a `journal_keep`
    /// above their number), and pruned by the default retention at that start.
    async fn start(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
        let n: u64 = if o.quick { 20_000 } else { 100_000 };
        let sub = dir.join("journal-start");
        std::fs::create_dir_all(&sub).unwrap();
        let journal = sub.join("journal.db");
        // One real ended download, then copies of its row (new ids, URLs, times) up to `n`.
        let (engine, _e, _a) = engine(&sub, Some(&journal), 16).await;
        let d = Download::new(format!("{base}/bytes/1024")).to("one");
        let id = engine.send(d).await.unwrap().unwrap();
        assert!(engine.send(Wait(id)).await.unwrap().unwrap().is_completed());
        engine.send(Shutdown).await.unwrap();
        fill(&journal, id.get(), n);
        let pruned = sub.join("pruned.db");
        std::fs::copy(&journal, &pruned).unwrap();

        let time_start = |path: PathBuf, keep: Option<u64>| async move {
            flush_disks();
            let started = Instant::now();
            let mut b = Engine::builder()
                .download_dir(sub_dir(&path))
                .journal(&path);
            if let Some(k) = keep {
                b = b.journal_keep(k, Duration::from_secs(3650 * 24 * 3600));
            }
            let engine = b.try_start().expect("the engine starts on the journal");
            // Running: it answers (from the journal: the row is not in memory).
            let last = TransferId::new(id.get() + n - 1).unwrap();
            let status = engine.send(Status(last)).await.unwrap();
            let took = started.elapsed();
            engine.send(Shutdown).await.unwrap();
            (took, status.is_some())
        };
        let (kept, found) = time_start(journal.clone(), Some(2 * n)).await;
        assert!(found, "the newest ended transfer is answered");
        let (pruning, _) = time_start(pruned, None).await;
        let s = "journal";
        report.target(
            s,
            &format!("engine start on {n} ended transfers (kept)"),
            kept.as_secs_f64() * 1e3,
            "ms",
            1000.0,
            false,
        );
        report.add(
            s,
            &format!("engine start on {n} ended transfers, pruned to 10,000 at start"),
            pruning.as_secs_f64() * 1e3,
            "ms",
        );
        report.add(
            s,
            &format!("journal size with {n} ended transfers"),
            journal_bytes(&journal) as f64 / (1 << 20) as f64,
            "MiB",
        );
        let _ = std::fs::remove_dir_all(&sub);
    }

    fn sub_dir(journal: &Path) -> PathBuf {
        journal.parent().unwrap().to_owned()
    }

    /// Copies of row `id` in the journal at `path` up to `n` rows: ids after it, distinct
    /// URLs, recent end times (one transaction).
    fn fill(path: &Path, id: u64, n: u64) {
        let conn = rusqlite::Connection::open(path).unwrap();
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('transfers')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let values: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "id" => "n.i".into(),
                "url" => "t.url || '?n=' || n.i".into(),
                "created_ms" | "started_ms" | "ended_ms" => format!("t.{c} - (?1 - n.i)"),
                other => format!("t.{other}"),
            })
            .collect();
        let sql = format!(
            "WITH RECURSIVE n(i) AS (SELECT ?2 + 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2 + ?1 - 1)
             INSERT INTO transfers ({}) SELECT {} FROM n, transfers t WHERE t.id = ?2",
            columns.join(", "),
            values.join(", ")
        );
        conn.execute_batch("BEGIN").unwrap();
        let added = conn
            .execute(&sql, rusqlite::params![n as i64, id as i64])
            .unwrap();
        assert_eq!(added as u64, n - 1);
        conn.execute_batch("COMMIT").unwrap();
        drop(conn);
    }
}
