//! The command line: `--quick`, `--rounds N`, `--scenario a,b`, `--json PATH`.

use std::path::PathBuf;

pub struct Opts {
    pub quick: bool,
    pub rounds: usize,
    pub scenarios: Vec<String>,
    pub json: PathBuf,
}

pub const ALL: [&str; 12] = [
    "file", "segments", "small", "files", "upload", "open", "queue", "cancel", "rate", "journal",
    "loadgen", "fleet",
];

pub fn opts() -> Opts {
    let mut o = Opts {
        quick: false,
        rounds: 0,
        scenarios: ALL.iter().map(|s| s.to_string()).collect(),
        json: PathBuf::from("target/load-bench.json"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(3),
            "--scenario" => {
                o.scenarios = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            "--json" => o.json = args.next().map(PathBuf::from).unwrap_or(o.json),
            _ => {} // cargo bench passes `--bench`; ignore what we do not know
        }
    }
    if o.rounds == 0 {
        o.rounds = if o.quick { 1 } else { 3 };
    }
    o
}
