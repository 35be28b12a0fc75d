//! Reading a whole object out of a bucket as one ordered stream of chunks, for
//! [`super::S3Location`]'s `read_stream`.
//!
//! An object larger than one read part is fetched in ranges (`Range: bytes=a-b`), several at
//! once, and handed to the reader in order: a far-away bucket gives each connection a fraction
//! of the bandwidth a restore can use, and one GET at a time would leave the rest idle. Every
//! range after the first carries `If-Match` on the ETag of the first answer, so that all ranges
//! come from one version of the object. Memory stays bounded: at most `in_flight` ranges are
//! being fetched or held, one waits in the channel and one is being read. A range whose
//! connection breaks is asked for again from where it stopped (up to three times); a range that
//! still cannot be read ends the stream with a [`DownloadError`], never a short read.
//!
//! A server that ignores ranges sends the whole object to the first request: it is then
//! streamed as it arrives ([`whole`]), resumed by range when its connection breaks.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::Sender;
use tokio::task::JoinHandle;

use crate::location::store::DownloadError;

/// How many times a broken connection is resumed, per range (or for the whole object).
const RESUMES: u32 = 3;

/// The object being read.
pub(super) struct Source {
    /// The client (its own retries cover each request's sending).
    pub s3: aws_sdk_s3::Client,
    /// The bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
    /// The ETag of the first answer: later requests are for that version only.
    pub etag: Option<String>,
}

impl Source {
    /// A GET of bytes `start..=end` (`end` `None`: to the object's end), of this version.
    async fn get(
        &self,
        start: u64,
        end: Option<u64>,
    ) -> std::result::Result<aws_sdk_s3::operation::get_object::GetObjectOutput, String> {
        let range = match end {
            Some(e) => format!("bytes={start}-{e}"),
            None => format!("bytes={start}-"),
        };
        let mut req = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .range(range);
        if let Some(t) = &self.etag {
            req = req.if_match(t);
        }
        req.send().await.map_err(|e| DisplayErrorContext(&e).to_string())
    }
}

/// The total size an answer's `Content-Range` (`bytes 0-8388607/52428800`) gives, if it has one.
pub(super) fn total_of(content_range: Option<&str>) -> Option<u64> {
    content_range?.rsplit_once('/')?.1.trim().parse().ok()
}

fn broke(why: String) -> io::Error {
    io::Error::other(DownloadError(why))
}

/// Sends the object (`total` bytes) to `tx` in ranges of `part` bytes, `in_flight` at a time;
/// `first` is the body of the answer to the request for the first range.
pub(super) async fn ranges(
    src: Arc<Source>,
    first: ByteStream,
    total: u64,
    part: u64,
    in_flight: usize,
    tx: Sender<io::Result<Bytes>>,
) {
    if total == 0 {
        return;
    }
    let count = total.div_ceil(part);
    let mut first = Some(first);
    let mut next = 0u64;
    let mut pending: VecDeque<JoinHandle<io::Result<Bytes>>> = VecDeque::new();
    loop {
        while next < count && pending.len() < in_flight.max(1) {
            let start = next * part;
            let end = (start + part).min(total) - 1;
            let body = if next == 0 { first.take() } else { None };
            pending.push_back(tokio::spawn(fetch(src.clone(), start, end, body)));
            next += 1;
        }
        let Some(task) = pending.pop_front() else {
            break;
        };
        let got = match task.await {
            Ok(r) => r,
            Err(e) => Err(broke(format!("download task ended: {e}"))),
        };
        let failed = got.is_err();
        // Waits while the reader is behind: no new range starts meanwhile.
        if tx.send(got).await.is_err() || failed {
            break;
        }
    }
    for task in pending {
        task.abort();
    }
}

/// Bytes `start..=end`, whole: from `body` when the request was already made, resumed from
/// where it broke off.
async fn fetch(src: Arc<Source>, start: u64, end: u64, body: Option<ByteStream>) -> io::Result<Bytes> {
    let want = (end - start + 1) as usize;
    let mut buf = BytesMut::with_capacity(want);
    let mut body = body;
    let mut resumes = 0;
    let mut why = String::new();
    loop {
        if let Some(b) = body.as_mut() {
            loop {
                match b.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        why = e.to_string();
                        break;
                    }
                    None => {
                        why = format!(
                            "range ended at byte {} of {start}-{end}",
                            start + buf.len() as u64
                        );
                        break;
                    }
                }
                if buf.len() >= want {
                    break;
                }
            }
            if buf.len() >= want {
                buf.truncate(want);
                return Ok(buf.freeze());
            }
            if resumes >= RESUMES {
                return Err(broke(format!("download broke off: {why}")));
            }
            resumes += 1;
            tokio::time::sleep(Duration::from_millis(200 << resumes)).await;
        }
        let at = start + buf.len() as u64;
        let o = src.get(at, Some(end)).await.map_err(|e| {
            let what = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            broke(format!("download broke off{what} and could not resume: {e}"))
        })?;
        // The server must answer with the range asked for: bytes from elsewhere would be
        // spliced in unnoticed.
        let expect = format!("bytes {at}-");
        if !o.content_range().is_some_and(|r| r.starts_with(&expect)) {
            return Err(broke(format!(
                "asked for bytes {at}-{end}, the server answered {:?}",
                o.content_range().unwrap_or("the whole object")
            )));
        }
        body = Some(o.body);
    }
}

/// Sends the object to `tx` as `body` delivers it (`size` bytes, `None` when unknown), resuming
/// a broken connection by range (up to three times).
pub(super) async fn whole(
    src: Arc<Source>,
    body: ByteStream,
    size: Option<u64>,
    tx: Sender<io::Result<Bytes>>,
) {
    let mut body = body;
    let mut at: u64 = 0;
    let mut resumes = 0;
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                at += chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    return; // the reader went away
                }
            }
            None if size.is_none_or(|s| at >= s) => return,
            next => {
                let why = match next {
                    Some(Err(e)) => e.to_string(),
                    _ => format!("stream ended at byte {at} of {}", size.unwrap_or(0)),
                };
                if resumes >= RESUMES {
                    let _ = tx.send(Err(broke(format!("download broke off: {why}")))).await;
                    return;
                }
                resumes += 1;
                tokio::time::sleep(Duration::from_millis(200 << resumes)).await;
                match src.get(at, None).await {
                    Ok(o) => body = o.body,
                    Err(e) => {
                        let _ = tx
                            .send(Err(broke(format!(
                                "download broke off ({why}) and could not resume: {e}"
                            ))))
                            .await;
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::total_of;

    #[test]
    fn content_range_gives_the_total() {
        assert_eq!(total_of(Some("bytes 0-8388607/52428800")), Some(52_428_800));
        assert_eq!(total_of(Some("bytes 0-9/10")), Some(10));
        assert_eq!(total_of(Some("bytes */0")), Some(0));
        assert_eq!(total_of(Some("bytes 0-9/*")), None);
        assert_eq!(total_of(None), None);
    }
}
