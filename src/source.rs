//! File reading: the body of an upload, read off the arbiter thread with one read ahead.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::PathBuf,
};

use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::blocking::{self, Job};

/// Size of one read.
const READ_BUF: usize = 256 * 1024;

type ReadJob = Job<(File, io::Result<Bytes>)>;

/// A stream of exactly `size` bytes of the file at `path`, from `offset`.
///
/// Each read runs on a file-I/O thread (`blocking`); the next read starts as soon as a chunk is handed out,
/// so the disk and the socket overlap. A file that shrinks under us ends the stream with an
/// `UnexpectedEof` error (awc then aborts the request) rather than a short body.
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
    }

    fn start(file: File, left: u64) -> ReadJob {
        let want = left.min(READ_BUF as u64) as usize;
        blocking::run(move || {
            let mut file = file;
            let mut buf = BytesMut::zeroed(want);
            let mut got = 0;
            while got < want {
                match file.read(&mut buf[got..]) {
                    Ok(0) => {
                        return (
                            file,
                            Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the upload file shrank while it was being sent",
                            )),
                        )
                    }
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return (file, Err(e)),
                }
            }
            (file, Ok(buf.freeze()))
        })
    }

    let state = State {
        path,
        offset,
        left: size,
        pending: None,
        file: None,
    };

    futures::stream::unfold(state, |mut st| async move {
        if st.left == 0 {
            return None;
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
                start(file, st.left)
            }
        };
        match job.await {
            Ok((file, Ok(chunk))) => {
                st.left -= chunk.len() as u64;
                if st.left > 0 {
                    st.pending = Some(start(file, st.left));
                }
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
