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

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
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
        req.send().await.map_err(|e| {
            let status = e.raw_response().map(|r| r.status().as_u16());
            match (e.code(), status) {
                (Some("NoSuchKey" | "PreconditionFailed"), _) | (_, Some(404 | 412)) => {
                    "the object was deleted or replaced while it was read".to_string()
                }
                (Some(code), _) => format!("{code}: {}", e.message().unwrap_or("")),
                _ => DisplayErrorContext(&e).to_string(),
            }
        })
    }
}

/// The first byte, last byte and total size an answer's `Content-Range` gives
/// (`bytes 0-4194303/52428800`), when it has all three.
pub(super) fn content_range(header: Option<&str>) -> Option<(u64, u64, u64)> {
    let (range, total) = header?.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total) = (first.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
    (first <= last && last < total).then_some((first, last, total))
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
            let range = Range { start, end, total };
            pending.push_back(tokio::spawn(fetch(src.clone(), range, body)));
            next += 1;
        }
        let Some(mut task) = pending.pop_front() else {
            break;
        };
        // A reader that went away stops the downloads at once, not at the next range.
        let got = tokio::select! {
            r = &mut task => match r {
                Ok(r) => r,
                Err(e) => Err(broke(format!("download task ended: {e}"))),
            },
            _ = tx.closed() => {
                task.abort();
                break;
            }
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

/// Bytes `start..=end` of an object of `total` bytes.
#[derive(Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
    total: u64,
}

/// The bytes of `r`, whole: from `body` when the request was already made, asked for again from
/// where a broken connection stopped.
async fn fetch(src: Arc<Source>, r: Range, body: Option<ByteStream>) -> io::Result<Bytes> {
    let want = (r.end - r.start + 1) as usize;
    let mut buf = BytesMut::with_capacity(want);
    let mut body = body;
    let mut resumes = 0;
    let mut why = String::new();
    loop {
        if let Some(b) = body.as_mut() {
            let had = buf.len();
            loop {
                match b.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        why = e.to_string();
                        break;
                    }
                    None => {
                        why = format!(
                            "range {}-{} ended at byte {}",
                            r.start,
                            r.end,
                            r.start + buf.len() as u64
                        );
                        break;
                    }
                }
                if buf.len() > want {
                    return Err(broke(format!(
                        "the server sent more than bytes {}-{} it was asked for",
                        r.start, r.end
                    )));
                }
            }
            if buf.len() == want {
                return Ok(buf.freeze());
            }
            // A connection that broke before sending anything counts against the resumes; one
            // that sent part of its range (a server capping its answers) does not.
            if buf.len() == had {
                if resumes >= RESUMES {
                    return Err(broke(format!("download broke off: {why}")));
                }
                resumes += 1;
                tokio::time::sleep(Duration::from_millis(200 << resumes)).await;
            }
        }
        let at = r.start + buf.len() as u64;
        let o = src.get(at, Some(r.end)).await.map_err(|e| {
            let what = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            broke(format!("download broke off{what} and could not resume: {e}"))
        })?;
        // The server must answer with the range asked for, of the same object: bytes from
        // elsewhere would be spliced in unnoticed.
        match content_range(o.content_range()) {
            Some((first, _, total)) if first == at && total == r.total => {}
            _ => {
                return Err(broke(format!(
                    "asked for bytes {at}-{} of {}, the server answered {:?}",
                    r.end,
                    r.total,
                    o.content_range().unwrap_or("the whole object")
                )))
            }
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
            None if size.is_none_or(|s| at == s) => return,
            None if size.is_some_and(|s| at > s) => {
                let why = format!(
                    "the server sent {at} bytes of a {}-byte object",
                    size.unwrap_or(0)
                );
                let _ = tx.send(Err(broke(why))).await;
                return;
            }
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
                    // The rest of the object, from where it stopped (a server that ignores the
                    // range would send it all again from byte 0).
                    Ok(o) if content_range(o.content_range()).is_some_and(|(first, _, _)| first == at) => {
                        body = o.body
                    }
                    Ok(o) => {
                        let why = format!(
                            "download broke off at byte {at} and the server could not resume it (it answered {:?})",
                            o.content_range().unwrap_or("the whole object")
                        );
                        let _ = tx.send(Err(broke(why))).await;
                        return;
                    }
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
    use super::content_range;

    #[test]
    fn content_range_gives_first_last_and_total() {
        assert_eq!(
            content_range(Some("bytes 0-4194303/52428800")),
            Some((0, 4_194_303, 52_428_800))
        );
        assert_eq!(content_range(Some("bytes 0-9/10")), Some((0, 9, 10)));
        // Unknown totals, unsatisfied ranges, nonsense: none.
        for bad in [
            "bytes */0",
            "bytes 0-9/*",
            "bytes 0-10/10",
            "bytes 9-0/10",
            "0-9/10",
            "bytes a-9/10",
            "",
        ] {
            assert_eq!(content_range(Some(bad)), None, "{bad}");
        }
        assert_eq!(content_range(None), None);
    }
}
