//! The two entry formats, as plain values: a job read from the jobs stream (validated here,
//! before anything is submitted) and the fields of a result entry. No Redis in here, so every
//! rule is unit-tested on maps.

use std::collections::HashMap;

use crate::{Conflict, Download, Fetch, Outcome, TransferError, Upload};

/// What a job asks for (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    Download,
    Upload,
    Fetch,
}

/// A job entry, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Job {
    /// The URL to use first, then the mirrors in order.
    pub(crate) urls: Vec<String>,
    pub(crate) kind: JobKind,
    pub(crate) path: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) priority: i32,
    pub(crate) sha256: Option<String>,
    pub(crate) key: String,
    /// Runs of this job that ended in a retryable failure and were queued again (the
    /// `fleet_attempts` field the node writes when it queues a job again).
    pub(crate) requeued: u32,
    /// The entry's fields as read, to queue the job again unchanged but for `fleet_attempts`.
    pub(crate) fields: Vec<(String, String)>,
}

/// Why a job entry cannot run: a sentence for the result's `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadJob {
    /// The key the result is written under (the entry's `key`, or its id).
    pub(crate) key: String,
    pub(crate) reason: String,
}

impl Job {
    /// Parse the fields of entry `entry_id`.
    pub(crate) fn parse(entry_id: &str, fields: &HashMap<String, String>) -> Result<Job, BadJob> {
        let key = match fields.get("key") {
            Some(k) if !k.is_empty() => k.clone(),
            _ => entry_id.to_string(),
        };
        let bad = |reason: String| BadJob {
            key: key.clone(),
            reason,
        };
        let url = match fields.get("url") {
            Some(u) if !u.is_empty() => u.clone(),
            _ => return Err(bad("the job has no `url` field".into())),
        };
        let kind = match fields.get("kind").map(String::as_str) {
            None | Some("") | Some("download") => JobKind::Download,
            Some("upload") => JobKind::Upload,
            Some("fetch") => JobKind::Fetch,
            Some(other) => {
                return Err(bad(format!(
                    "the job's `kind` is {other:?}; expected download, upload or fetch"
                )))
            }
        };
        let headers = match fields.get("headers") {
            None => Vec::new(),
            Some(text) => parse_headers(text).map_err(bad)?,
        };
        let priority = match fields.get("priority") {
            None => 0,
            Some(p) => p.trim().parse::<i32>().map_err(|_| {
                bad(format!(
                    "the job's `priority` is {p:?}; expected a whole number"
                ))
            })?,
        };
        let mut urls = vec![url];
        if let Some(text) = fields.get("mirrors") {
            let mirrors: Vec<String> = serde_json::from_str(text).map_err(|e| {
                bad(format!(
                    "the job's `mirrors` is not a JSON array of strings: {e}"
                ))
            })?;
            urls.extend(mirrors);
        }
        let path = fields.get("path").filter(|p| !p.is_empty()).cloned();
        if kind == JobKind::Upload && path.is_none() {
            return Err(bad("an upload job needs a `path` (the file to send)".into()));
        }
        let requeued = match fields.get("fleet_attempts") {
            None => 0,
            Some(n) => n.parse().unwrap_or(0),
        };
        let mut sorted: Vec<(String, String)> = fields
            .iter()
            .filter(|(k, _)| k.as_str() != "fleet_attempts")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sorted.sort();
        Ok(Job {
            urls,
            kind,
            path,
            headers,
            priority,
            sha256: fields.get("sha256").filter(|s| !s.is_empty()).cloned(),
            key,
            requeued,
            fields: sorted,
        })
    }

    /// The fields of this job queued again after `requeued` retryable failures in the fleet.
    pub(crate) fn requeue_fields(&self) -> Vec<(String, String)> {
        let mut f = self.fields.clone();
        if !f.iter().any(|(k, _)| k == "key") {
            f.push(("key".into(), self.key.clone()));
        }
        f.push(("fleet_attempts".into(), (self.requeued + 1).to_string()));
        f
    }

    /// The message for the engine, with the `n`th URL (0: `url`, then the mirrors). Upload
    /// paths are resolved under `dir` and must be relative and plain: a job cannot make a node
    /// send a file from outside its directory.
    pub(crate) fn submission(
        &self,
        n: usize,
        dir: Option<&std::path::Path>,
    ) -> Result<Submission, TransferError> {
        let url = self.urls[n].clone();
        Ok(match self.kind {
            JobKind::Download => {
                let mut d = Download::new(url).priority(self.priority);
                if let Some(p) = &self.path {
                    // A job run again (claimed from a node that died after placing the file)
                    // replaces what the earlier run left, instead of adding `name (1)`.
                    d = d.to(p.clone()).conflict(Conflict::Overwrite);
                }
                if let Some(h) = &self.sha256 {
                    d = d.expect_sha256(h.clone());
                }
                for (k, v) in &self.headers {
                    d = d.header(k.clone(), v.clone());
                }
                Submission::Download(d)
            }
            JobKind::Upload => {
                let rel = self.path.as_deref().unwrap_or_default();
                let plain = std::path::Path::new(rel)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !plain || rel.is_empty() {
                    return Err(TransferError::unsafe_path(
                        rel,
                        "an upload job's path must be relative, without `..`",
                    ));
                }
                let file = match dir {
                    Some(d) => d.join(rel),
                    None => std::path::PathBuf::from(rel),
                };
                let mut u = Upload::new(url, file).priority(self.priority);
                for (k, v) in &self.headers {
                    u = u.header(k.clone(), v.clone());
                }
                Submission::Upload(u)
            }
            JobKind::Fetch => {
                let mut f = Fetch::get(url).priority(self.priority);
                for (k, v) in &self.headers {
                    f = f.header(k.clone(), v.clone());
                }
                Submission::Fetch(f)
            }
        })
    }
}

/// One of the three submit messages.
pub(crate) enum Submission {
    Download(Download),
    Upload(Upload),
    Fetch(Fetch),
}

fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the job's `headers` is not JSON: {e}"))?;
    let Some(map) = value.as_object() else {
        return Err("the job's `headers` must be a JSON object of names to strings".into());
    };
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => Err(format!("the job's header {k:?} must have a string value")),
        })
        .collect()
}

/// The fields of one result entry (see the module docs for their meaning).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResultFields {
    pub(crate) key: String,
    pub(crate) job: String,
    pub(crate) node: String,
    pub(crate) outcome: &'static str,
    pub(crate) bytes: u64,
    pub(crate) status: Option<u16>,
    pub(crate) path: Option<String>,
    pub(crate) sha256: Option<String>,
    pub(crate) error_kind: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) attempts: u64,
    pub(crate) started_ms: u64,
    pub(crate) ended_ms: u64,
}

impl ResultFields {
    /// The result of a transfer that ended with `outcome`.
    pub(crate) fn of_outcome(base: ResultBase, outcome: &Outcome, sha256: Option<&str>) -> Self {
        let mut r = base.fields("completed");
        r.bytes = outcome.bytes();
        r.status = outcome.status();
        match outcome {
            Outcome::Completed { .. } => {
                r.path = outcome.path().map(|p| p.display().to_string());
                // The engine verified the file against it, so it is the file's digest.
                if outcome.path().is_some() {
                    r.sha256 = sha256.map(str::to_string);
                }
            }
            Outcome::Failed { error, .. } => {
                r.outcome = "failed";
                r.error_kind = Some(error.kind().as_str().to_string());
                r.error = Some(error.to_string());
            }
            _ => r.outcome = "cancelled",
        }
        r
    }

    /// The fields in the order they are written.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("key", self.key.clone()),
            ("job", self.job.clone()),
            ("node", self.node.clone()),
            ("outcome", self.outcome.to_string()),
            ("bytes", self.bytes.to_string()),
        ];
        if let Some(s) = self.status {
            v.push(("status", s.to_string()));
        }
        if let Some(p) = &self.path {
            v.push(("path", p.clone()));
        }
        if let Some(h) = &self.sha256 {
            v.push(("sha256", h.clone()));
        }
        if let Some(k) = &self.error_kind {
            v.push(("error_kind", k.clone()));
        }
        if let Some(e) = &self.error {
            v.push(("error", e.clone()));
        }
        v.push(("attempts", self.attempts.to_string()));
        v.push(("started_ms", self.started_ms.to_string()));
        v.push(("ended_ms", self.ended_ms.to_string()));
        v
    }
}

/// What every result of a job shares, whatever its outcome.
#[derive(Debug, Clone)]
pub(crate) struct ResultBase {
    pub(crate) key: String,
    pub(crate) job: String,
    pub(crate) node: String,
    pub(crate) attempts: u64,
    pub(crate) started_ms: u64,
}

impl ResultBase {
    pub(crate) fn fields(self, outcome: &'static str) -> ResultFields {
        ResultFields {
            key: self.key,
            job: self.job,
            node: self.node,
            outcome,
            bytes: 0,
            status: None,
            path: None,
            sha256: None,
            error_kind: None,
            error: None,
            attempts: self.attempts,
            started_ms: self.started_ms,
            ended_ms: now_ms(),
        }
    }

    /// A failure decided by the node itself (a bad job, a job that lost too many nodes).
    pub(crate) fn failed(self, kind: &str, error: String) -> ResultFields {
        let mut r = self.fields("failed");
        r.error_kind = Some(kind.to_string());
        r.error = Some(error);
        r
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_job_with_only_a_url_is_a_download_keyed_by_its_entry_id() {
        let job = Job::parse("1-0", &map(&[("url", "http://h/x")])).unwrap();
        assert_eq!(job.kind, JobKind::Download);
        assert_eq!(job.key, "1-0");
        assert_eq!(job.urls, vec!["http://h/x".to_string()]);
        assert_eq!(job.priority, 0);
        assert_eq!(job.requeued, 0);
    }

    #[test]
    fn every_field_is_read() {
        let job = Job::parse(
            "1-0",
            &map(&[
                ("url", "http://a/x"),
                ("kind", "fetch"),
                ("path", "d/x"),
                ("headers", r#"{"X-A":"1"}"#),
                ("priority", "-3"),
                ("mirrors", r#"["http://b/x","http://c/x"]"#),
                ("sha256", "ab"),
                ("key", "k1"),
                ("fleet_attempts", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(job.kind, JobKind::Fetch);
        assert_eq!(job.key, "k1");
        assert_eq!(job.urls.len(), 3);
        assert_eq!(job.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(job.priority, -3);
        assert_eq!(job.sha256.as_deref(), Some("ab"));
        assert_eq!(job.requeued, 2);
        let again = job.requeue_fields();
        assert!(again.contains(&("fleet_attempts".into(), "3".into())));
        assert_eq!(
            again.iter().filter(|(k, _)| k == "fleet_attempts").count(),
            1
        );
    }

    #[test]
    fn bad_jobs_are_refused_with_a_sentence_under_their_key() {
        for (fields, says) in [
            (map(&[("key", "k")]), "no `url`"),
            (map(&[("key", "k"), ("url", "u"), ("kind", "x")]), "`kind`"),
            (
                map(&[("key", "k"), ("url", "u"), ("headers", "[1]")]),
                "JSON object",
            ),
            (
                map(&[("key", "k"), ("url", "u"), ("headers", r#"{"a":1}"#)]),
                "string value",
            ),
            (
                map(&[("key", "k"), ("url", "u"), ("priority", "high")]),
                "whole number",
            ),
            (
                map(&[("key", "k"), ("url", "u"), ("mirrors", "x")]),
                "JSON array",
            ),
            (
                map(&[("key", "k"), ("url", "u"), ("kind", "upload")]),
                "`path`",
            ),
        ] {
            let err = Job::parse("1-0", &fields).unwrap_err();
            assert_eq!(err.key, "k");
            assert!(err.reason.contains(says), "{} lacks {says}", err.reason);
        }
    }

    #[test]
    fn an_upload_path_must_stay_under_the_dir() {
        for path in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            let job = Job::parse(
                "1-0",
                &map(&[("url", "http://h/"), ("kind", "upload"), ("path", path)]),
            )
            .unwrap();
            assert!(
                job.submission(0, Some(std::path::Path::new("/srv")))
                    .is_err(),
                "{path}"
            );
        }
    }

    #[test]
    fn result_fields_of_a_failure_carry_the_kind_and_the_sentence() {
        let base = ResultBase {
            key: "k".into(),
            job: "1-0".into(),
            node: "n".into(),
            attempts: 1,
            started_ms: 5,
        };
        let r = ResultFields::of_outcome(
            base,
            &Outcome::Failed {
                bytes: 3,
                error: TransferError::Server { status: 404 },
                attempts: 1,
                status: Some(404),
                headers: Default::default(),
            },
            None,
        );
        let pairs = r.pairs();
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("outcome").as_deref(), Some("failed"));
        assert_eq!(get("status").as_deref(), Some("404"));
        assert_eq!(get("error_kind").as_deref(), Some("server"));
        assert_eq!(get("bytes").as_deref(), Some("3"));
        assert!(get("path").is_none());
    }
}
