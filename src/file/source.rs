//! File reading: the body of an upload, read off the arbiter thread with one read ahead.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::PathBuf,
    time::Instant,
};

use bytes::Bytes;
use futures::Stream;

use crate::file::blocking::{self, Pending};

/// Reads are sized to the pace the socket takes them (`blocking::job_size`, between `MIN_READ`
/// and `MAX_READ`, measured from how soon the previous chunk was asked for after it was
/// handed out): a fast upload reads 1 MiB at a time (fewer, larger writes into awc, each of
/// which has a fixed cost), a slow one holds two small buffers.
const MIN_READ: usize = 64 * 1024;
const MAX_READ: usize = 1024 * 1024;

type ReadJob = Pending<(File, io::Result<Bytes>)>;

/// A stream of exactly `size` bytes of the file at `path`, from `offset`.
///
/// Each read runs on a file-I/O thread (`blocking`); the next read starts as soon as a chunk is
/// handed out, so the disk and the socket overlap. A file that shrinks under us ends the stream
/// with an `UnexpectedEof` error (awc then aborts the request) rather than a short body.
pub(crate) fn file_stream(
    path: PathBuf,
    offset: u64,
    size: u64,
) -> impl Stream<Item = io::Result<Bytes>> + 'static {
    struct State {
        path: PathBuf,
        offset: u64,
        left: u64,
        pending: Option<ReadJob>,
        file: Option<File>,
        /// The size of the next read; the last chunk handed out (its length, and when).
        read: usize,
        handed: Option<(usize, Instant)>,
    }

    fn start(file: File, left: u64, read: usize) -> ReadJob {
        let want = left.min(read as u64) as usize;
        blocking::run(move || {
            let mut file = file;
            // `read_to_end` reads into the spare capacity as it is, without zeroing it first.
            let mut buf = Vec::with_capacity(want);
            match (&mut file).take(want as u64).read_to_end(&mut buf) {
                Ok(got) if got < want => (
                    file,
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upload file shrank while it was being sent",
                    )),
                ),
                Ok(_) => (file, Ok(Bytes::from(buf))),
                Err(e) => (file, Err(e)),
            }
        })
    }

    let state = State {
        path,
        offset,
        left: size,
        pending: None,
        file: None,
        read: MIN_READ,
        handed: None,
    };

    futures::stream::unfold(state, |mut st| async move {
        if st.left == 0 {
            return None;
        }
        if let Some((len, at)) = st.handed.take() {
            // The last chunk was taken this fast.
            st.read = blocking::job_size(len, at.elapsed(), MIN_READ, MAX_READ);
        }
        let job = match st.pending.take() {
            Some(job) => job,
            None => {
                let file = match st.file.take() {
                    Some(f) => f,
                    None => {
                        let (path, offset) = (st.path.clone(), st.offset);
                        let opened = blocking::run(move || {
                            let mut f = File::open(path)?;
                            f.seek(SeekFrom::Start(offset))?;
                            Ok::<_, io::Error>(f)
                        })
                        .await;
                        match opened {
                            Ok(Ok(f)) => f,
                            Ok(Err(e)) => {
                                st.left = 0;
                                return Some((Err(e), st));
                            }
                            Err(e) => {
                                st.left = 0;
                                return Some((Err(io::Error::other(e.to_string())), st));
                            }
                        }
                    }
                };
                start(file, st.left, st.read)
            }
        };
        match job.await {
            Ok((file, Ok(chunk))) => {
                st.left -= chunk.len() as u64;
                if st.left > 0 {
                    st.pending = Some(start(file, st.left, st.read));
                }
                st.handed = Some((chunk.len(), Instant::now()));
                Some((Ok(chunk), st))
            }
            Ok((_, Err(e))) => {
                st.left = 0;
                Some((Err(e), st))
            }
            Err(e) => {
                st.left = 0;
                Some((Err(io::Error::other(e.to_string())), st))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// Chunk sizes of the whole of `content` read through `file_stream` by a reader taking
    /// `rate` bytes per second (`None`: at once); and the bytes, which must be the file's.
    async fn read_all(content: &[u8], rate: Option<f64>) -> Vec<usize> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.bin");
        std::fs::write(&path, content).unwrap();
        let stream = file_stream(path, 0, content.len() as u64);
        futures::pin_mut!(stream);
        let (mut sizes, mut got) = (Vec::new(), Vec::new());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
            if let Some(rate) = rate {
                let gap = std::time::Duration::from_secs_f64(chunk.len() as f64 / rate);
                actix_rt::time::sleep(gap).await;
            }
        }
        assert_eq!(got, content);
        sizes
    }

    #[actix_rt::test]
    async fn reads_grow_for_a_fast_reader_and_stay_small_for_a_slow_one() {
        let content: Vec<u8> = (0..6 << 20).map(|i: u32| (i % 251) as u8).collect();
        let fast = read_all(&content, None).await;
        assert_eq!(fast[0], MIN_READ, "{fast:?}");
        assert!(fast.contains(&MAX_READ), "{fast:?}");

        // At (at most) 640 KB/s, 250 ms is ~160 KB: reads stay near that, far from MAX_READ.
        let slow = read_all(&content[..512 << 10], Some(640_000.0)).await;
        assert!(slow.iter().all(|n| *n < MAX_READ / 4), "{slow:?}");
    }
}
