//! A prefix in an S3-compatible bucket as a [`Location`] (`s3://bucket/prefix`), through the AWS
//! SDK for Rust on a small tokio runtime of its own (the library's API stays blocking).
//!
//! Configuration comes from the standard AWS sources: `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, `AWS_PROFILE` and the `~/.aws` files,
//! `AWS_REGION`, `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) for other servers. With an
//! endpoint set, requests use path-style addressing (what self-hosted servers expect) unless
//! `LITEVAULT_S3_VIRTUAL_HOSTED=1`. No secret is ever put in an error, a report or a log.
//!
//! New objects: the stream is cut into parts; the first part stays in memory and is sent LAST
//! (a multipart upload's parts may be uploaded in any order), so that the head of an archive —
//! its manifest, decided when the database has been read — can still be rewritten at
//! [`NewObject::finish`]. An object smaller than one part is one `PutObject`. Publishing is
//! create-only twice over: the name is checked just before the object is made visible, and the
//! `PutObject` / `CompleteMultipartUpload` carry `If-None-Match: *` (servers that ignore it, like
//! Garage, are still covered by the check). On failure, drop, Ctrl-C or SIGTERM the multipart
//! upload is aborted ([`abort_active_uploads`]); a `kill -9` leaves an incomplete upload, never
//! an object, and `prune` aborts those of litevault's that are older than a day.
//!
//! Reads: a whole object is fetched in ranges, several at once, and handed to the reader in
//! order (the `download` module); heads and segments are single range reads.
//!
//! Faults: the SDK's standard retry mode (exponential backoff with jitter) retries throttling
//! (429, SlowDown), 5xx, timeouts and broken connections; attempts and timeouts are bounded so
//! that a dead server fails within two minutes, with an error naming the endpoint.

mod download;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};

pub use super::store::DownloadError;
use super::store::{CreateOptions, Location, NewObject, ObjectMeta, Published};
use crate::error::{Error, Result};
use crate::model::hex;

/// `var` read once per process: its value when it is a number within `range`, else `default`.
fn knob(
    cell: &'static OnceLock<usize>,
    var: &str,
    range: std::ops::RangeInclusive<usize>,
    default: usize,
) -> usize {
    *cell.get_or_init(|| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| range.contains(n))
            .unwrap_or(default)
    })
}

/// Bytes of each part of a multipart upload (the last may be smaller); `LITEVAULT_S3_PART_MIB`
/// (5-64) overrides it. With at most 10,000 parts, an archive can be up to ~50 GB at the default.
fn part_size() -> usize {
    static MIB: OnceLock<usize> = OnceLock::new();
    knob(&MIB, "LITEVAULT_S3_PART_MIB", 5..=64, 5) << 20
}

/// Parts uploading at once (besides the one being filled); `LITEVAULT_S3_PARTS_IN_FLIGHT`
/// (1-16) overrides it.
fn parts_in_flight() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    knob(&N, "LITEVAULT_S3_PARTS_IN_FLIGHT", 1..=16, 3)
}

/// Bytes of each range a large object is read in (`LITEVAULT_S3_READ_PART_MIB`, 1-64; 4 by
/// default: with 4 in flight, a read holds 24 MiB ahead at most, and a 4 MiB range keeps a
/// connection busy far longer than its round trip).
fn read_part_size() -> u64 {
    static MIB: OnceLock<usize> = OnceLock::new();
    (knob(&MIB, "LITEVAULT_S3_READ_PART_MIB", 1..=64, 4) as u64) << 20
}

/// Ranges of one object being read at once (`LITEVAULT_S3_READS_IN_FLIGHT`, 1-16; 4 by
/// default).
fn reads_in_flight() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    knob(&N, "LITEVAULT_S3_READS_IN_FLIGHT", 1..=16, 4)
}

/// Attempts per request (the first and its retries).
const MAX_ATTEMPTS: u32 = 7;

/// The shared client: one runtime and one connection pool per process.
struct Client {
    rt: tokio::runtime::Runtime,
    s3: aws_sdk_s3::Client,
    /// The endpoint, for messages: the configured URL or "AWS S3 (<region>)".
    endpoint: String,
}

fn client() -> Result<Arc<Client>> {
    static CLIENT: OnceLock<std::result::Result<Arc<Client>, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| Client::new(None).map(Arc::new))
        .clone()
        .map_err(config_error)
}

fn config_error(detail: String) -> Error {
    Error::Remote {
        op: "configure S3 client",
        url: "s3://".into(),
        detail,
        hint: "set AWS_REGION (and AWS_ENDPOINT_URL for servers other than AWS)",
    }
}

/// Explicit settings for [`S3Location::open_with`], for programs that embed litevault and keep
/// their own credentials (the command line reads the standard AWS sources instead).
#[derive(Clone, Default)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:8333`; `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// e.g. `us-east-1`.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (never printed).
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint_url", &self.endpoint_url)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    fn new(settings: Option<&S3Settings>) -> std::result::Result<Client, String> {
        // Part buffers are allocated on the writer's thread and freed on the runtime's: with
        // glibc's sliding mmap threshold they would stay in the heap's arenas after their first
        // free, and the process would keep several parts' worth of freed memory. Fixed at 1 MiB,
        // every part buffer is its own mapping, returned to the system when freed.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes an allocator tunable; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("litevault-s3")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(st) = settings {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                st.access_key_id.clone(),
                st.secret_access_key.clone(),
                None,
                None,
                "litevault-settings",
            ));
            if let Some(e) = &st.endpoint_url {
                loader = loader.endpoint_url(e.clone());
            }
            if let Some(r) = &st.region {
                loader = loader.region(aws_sdk_s3::config::Region::new(r.clone()));
            }
        }
        let conf = rt.block_on(
            loader
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(MAX_ATTEMPTS)
                        .with_initial_backoff(Duration::from_millis(200))
                        .with_max_backoff(Duration::from_secs(10)),
                )
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .read_timeout(Duration::from_secs(20))
                        .operation_attempt_timeout(Duration::from_secs(60))
                        .operation_timeout(Duration::from_secs(110))
                        .build(),
                )
                .load(),
        );
        let endpoint_override = conf.endpoint_url().map(str::to_string);
        let region = conf.region().map(|r| r.to_string());
        let mut b = aws_sdk_s3::config::Builder::from(&conf)
            .interceptor(CountRequests)
            .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired);
        if region.is_none() {
            if endpoint_override.is_none() {
                return Err("no AWS region is configured (AWS_REGION, or region in the profile)".into());
            }
            // Self-hosted servers accept any region.
            b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
        }
        let virtual_hosted = std::env::var("LITEVAULT_S3_VIRTUAL_HOSTED").is_ok_and(|v| v == "1");
        if endpoint_override.is_some() && !virtual_hosted {
            b = b.force_path_style(true);
        }
        let endpoint = endpoint_override
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", region.as_deref().unwrap_or("us-east-1")));
        Ok(Client {
            rt,
            s3: aws_sdk_s3::Client::from_conf(b.build()),
            endpoint,
        })
    }
}

/// `s3://bucket/prefix`: the objects whose keys are `prefix/<name>`.
#[derive(Clone)]
pub struct S3Location {
    bucket: String,
    /// Empty, or ends with '/'.
    prefix: String,
    client: Arc<Client>,
}

impl std::fmt::Debug for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Location")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Splits `s3://bucket/some/prefix/` into ("bucket", "some/prefix/").
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| Error::InvalidOption(format!("{url:?} is not an s3:// URL")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(Error::InvalidOption(format!(
            "{url:?}: {bucket:?} is not a bucket name (3-63 characters: a-z, 0-9, '-', '.')"
        )));
    }
    let prefix = crate::model::naming::object_prefix(prefix)
        .ok_or_else(|| Error::InvalidOption(format!("{url:?}: invalid prefix")))?;
    Ok((bucket.to_string(), prefix))
}

impl S3Location {
    /// The location `s3://bucket/prefix`, configured from the standard AWS sources (nothing is
    /// sent to the server yet).
    pub fn open(url: &str) -> Result<Self> {
        let (bucket, prefix) = parse_url(url)?;
        Ok(S3Location {
            bucket,
            prefix,
            client: client()?,
        })
    }

    /// The location `s3://bucket/prefix` with explicit settings (its own client).
    pub fn open_with(url: &str, settings: &S3Settings) -> Result<Self> {
        let (bucket, prefix) = parse_url(url)?;
        Ok(S3Location {
            bucket,
            prefix,
            client: Arc::new(Client::new(Some(settings)).map_err(config_error)?),
        })
    }

    /// A new object `name`, nothing sent yet.
    fn new_object(&self, name: String, opts: &CreateOptions) -> Result<Box<S3Object>> {
        let key = self.key(&name)?;
        Ok(Box::new(S3Object {
            loc: self.clone(),
            name,
            key,
            first: Vec::with_capacity(part_size().max(opts.head_reserve as usize)),
            first_len: part_size().max(opts.head_reserve as usize),
            head_reserve: opts.head_reserve,
            current: Vec::new(),
            upload: None,
            in_flight: Vec::new(),
            parts: Vec::new(),
            next_part: 2,
            stream_hasher: (opts.head_reserve == 0).then(Sha256::new),
            spool: None,
            bytes: 0,
            failed: None,
            parts_running: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }))
    }

    /// Starts a new object under the first free name of `name`, `name-2`, `name-3`, ... so that
    /// two runs that start in the same second (two hosts, cron and the daemon) never aim at the
    /// same key. The multipart upload is the claim: it is started at once, and a name is ours
    /// when no object has it and ours is its only incomplete upload; otherwise ours is aborted
    /// and the next name tried. Two runs that start uploads on one name in the same instant may
    /// both step aside; neither ever takes a name another holds. A killed run's upload (aborted
    /// by `prune` after a day) only moves later runs to the next number.
    fn first_free(&self, name: &str, opts: &CreateOptions) -> Result<Box<S3Object>> {
        // The usual case, a free name, costs no listing of the whole prefix.
        let taken: std::collections::HashSet<String> = match self.head(name)? {
            None => Default::default(),
            Some(_) => self.list()?.into_iter().map(|m| m.name).collect(),
        };
        let mut candidates =
            std::iter::once(name.to_string()).chain(crate::model::naming::numbered_names(name));
        for _ in 0..MAX_NUMBERED {
            let Some(candidate) = candidates.next() else { break };
            if taken.contains(&candidate) {
                continue;
            }
            let mut object = self.new_object(candidate.clone(), opts)?;
            let ours = object
                .start_upload()
                .map_err(|e| self.upload_error(&candidate, e))?;
            let alone = self.uploads_of(&object.key)?.iter().all(|id| *id == ours);
            // Published meanwhile (its upload completed between our listing and now).
            if alone && self.head(&candidate)?.is_none() {
                return Ok(object);
            }
            // Dropping it aborts its upload.
            drop(object);
        }
        Err(Error::WouldOverwrite {
            path: self.object_path(name),
        })
    }

    /// An I/O error of an upload (it carries the remote error's text) as an [`Error::Remote`].
    fn upload_error(&self, name: &str, e: io::Error) -> Error {
        Error::Remote {
            op: "start upload of",
            url: self.url_of(name),
            detail: e.to_string(),
            hint: "retry later; if it persists, check the server",
        }
    }

    /// The incomplete multipart uploads of exactly `key` (their upload ids).
    fn uploads_of(&self, key: &str) -> Result<Vec<String>> {
        let c = &self.client;
        let page =
            c.rt.block_on(
                c.s3.list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(key)
                    .send(),
            )
            .map_err(|e| self.remote_err("list incomplete uploads in", "", e))?;
        Ok(page
            .uploads()
            .iter()
            .filter(|u| u.key() == Some(key))
            .filter_map(|u| u.upload_id().map(str::to_string))
            .collect())
    }

    fn key(&self, name: &str) -> Result<String> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Error::InvalidOption(format!(
                "{name:?} is not a plain object name"
            )));
        }
        Ok(format!("{}{name}", self.prefix))
    }

    fn url_of(&self, name: &str) -> String {
        format!("s3://{}/{}{name}", self.bucket, self.prefix)
    }

    fn remote_err<E, R>(&self, op: &'static str, name: &str, e: SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        sdk_error(op, &self.url_of(name), &self.client.endpoint, e)
    }
}

/// The HTTP status of a raw response, where there is one.
trait HasStatus {
    fn http_status(&self) -> Option<u16>;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn http_status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
}

/// Turns an SDK error into one clear line and a hint; never includes credentials.
fn sdk_error<E, R>(op: &'static str, url: &str, endpoint: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HasStatus,
{
    let status = e.raw_response().and_then(|r| r.http_status());
    let code = e.code().map(str::to_string);
    let message = e.message().map(str::to_string);
    let (detail, hint) = match (&e, code.as_deref(), status) {
        (SdkError::DispatchFailure(_), ..) | (SdkError::TimeoutError(_), ..) => (
            format!(
                "cannot reach {endpoint} (after {MAX_ATTEMPTS} attempts): {}",
                DisplayErrorContext(&e)
            ),
            "check AWS_ENDPOINT_URL and that the server is up",
        ),
        (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch"), _) => (
            format!("{endpoint} refused the credentials ({})", code.as_deref().unwrap_or("")),
            "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
        ),
        (_, Some("NoSuchBucket"), _) => (
            format!("the bucket does not exist at {endpoint}"),
            "create the bucket first, or check the URL",
        ),
        (_, Some("AccessDenied"), _) | (_, _, Some(403)) => (
            format!(
                "access denied by {endpoint}{}",
                message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
            "the credentials lack permission for this bucket or prefix (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload)",
        ),
        _ => (
            format!(
                "{endpoint} answered {}{}{}",
                status.map(|s| format!("HTTP {s}")).unwrap_or_else(|| "an error".into()),
                code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
                message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
            "retry later; if it persists, check the server",
        ),
    };
    Error::Remote {
        op,
        url: url.to_string(),
        detail,
        hint,
    }
}

fn is_not_found<E: ProvideErrorMetadata, R: HasStatus>(e: &SdkError<E, R>) -> bool {
    matches!(e.code(), Some("NoSuchKey" | "NotFound"))
        || e.raw_response().and_then(|r| r.http_status()) == Some(404)
}

/// A range the object does not have (416 `InvalidRange`: past its end, or any range of an
/// empty object).
fn is_invalid_range<E: ProvideErrorMetadata, R: HasStatus>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("InvalidRange") || e.raw_response().and_then(|r| r.http_status()) == Some(416)
}

fn is_precondition_failed<E: ProvideErrorMetadata, R: HasStatus>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("PreconditionFailed") || e.raw_response().and_then(|r| r.http_status()) == Some(412)
}

impl Location for S3Location {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
            .trim_end_matches('/')
            .to_string()
    }

    fn object_path(&self, name: &str) -> PathBuf {
        PathBuf::from(self.url_of(name))
    }

    fn list(&self) -> Result<Vec<ObjectMeta>> {
        let c = &self.client;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = c.s3.list_objects_v2().bucket(&self.bucket).delimiter("/");
            if !self.prefix.is_empty() {
                req = req.prefix(&self.prefix);
            }
            if let Some(t) = token.take() {
                req = req.continuation_token(t);
            }
            let page =
                c.rt.block_on(req.send())
                    .map_err(|e| self.remote_err("list", "", e))?;
            for o in page.contents() {
                let Some(name) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                if name.is_empty() || name.contains('/') {
                    continue;
                }
                out.push(ObjectMeta {
                    name: name.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified: o.last_modified().map(|t| t.secs()).unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn head(&self, name: &str) -> Result<Option<ObjectMeta>> {
        let key = self.key(name)?;
        let c = &self.client;
        match c
            .rt
            .block_on(c.s3.head_object().bucket(&self.bucket).key(&key).send())
        {
            Ok(o) => Ok(Some(ObjectMeta {
                name: name.to_string(),
                size: o.content_length().unwrap_or(0).max(0) as u64,
                modified: o.last_modified().map(|t| t.secs()).unwrap_or(0),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            // A HEAD answer has no body, so a 403 does not say why: a listing does.
            Err(e) if e.raw_response().and_then(|r| r.http_status()) == Some(403) => {
                let probe = c.rt.block_on(
                    c.s3.list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(&key)
                        .max_keys(1)
                        .send(),
                );
                match probe {
                    Err(p) if p.code().is_some() => Err(self.remote_err("stat", name, p)),
                    _ => Err(self.remote_err("stat", name, e)),
                }
            }
            Err(e) => Err(self.remote_err("stat", name, e)),
        }
    }

    fn read_range(&self, name: &str, start: u64, len: u64) -> Result<Vec<u8>> {
        let key = self.key(name)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        let c = &self.client;
        let last = start.saturating_add(len - 1);
        let range = format!("bytes={start}-{last}");
        let got = c.rt.block_on(async {
            let o =
                c.s3.get_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .range(range)
                    .send()
                    .await?;
            Ok::<_, SdkError<_, _>>(o)
        });
        let o = match got {
            Ok(o) => o,
            Err(e) if is_not_found(&e) => {
                return Err(Error::NotFound {
                    path: self.object_path(name),
                })
            }
            // Past the end of the object.
            Err(e) if is_invalid_range(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.remote_err("read", name, e)),
        };
        let body =
            c.rt.block_on(o.body.collect())
                .map_err(|e| Error::io("read", self.object_path(name), io::Error::other(e)))?;
        let mut bytes = body.into_bytes().to_vec();
        // A server that ignores the range sends everything.
        if bytes.len() as u64 > len {
            let from = (start as usize).min(bytes.len());
            bytes = bytes[from..].iter().take(len as usize).copied().collect();
        }
        Ok(bytes)
    }

    fn read_stream(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let key = self.key(name)?;
        let c = self.client.clone();
        let part = read_part_size();
        // The first range is asked for at once: its answer says the object's size (and a
        // missing object is NotFound here, not an error of a later read).
        let first = c.rt.block_on(
            c.s3.get_object()
                .bucket(&self.bucket)
                .key(&key)
                .range(format!("bytes=0-{}", part - 1))
                .send(),
        );
        let not_found = |e| match e {
            e if is_not_found(&e) => Error::NotFound {
                path: self.object_path(name),
            },
            e => self.remote_err("read", name, e),
        };
        // One GET of the whole object.
        let whole = || {
            c.rt.block_on(c.s3.get_object().bucket(&self.bucket).key(&key).send())
                .map_err(not_found)
        };
        let mut o = match first {
            // An empty object has no byte 0: read it whole.
            Err(e) if is_invalid_range(&e) => whole()?,
            other => other.map_err(not_found)?,
        };
        // The ranges in flight need the first answer's range, whole: `bytes 0-<part or
        // less>/<total>`. A server that sent the object whole (it ignores ranges) is streamed;
        // one whose range cannot be used (no total, another range) is asked for it all.
        let plan = match (o.content_range(), download::content_range(o.content_range())) {
            (Some(_), Some((0, last, total))) if last + 1 == part.min(total) => Some(total),
            (None, _) => None,
            (Some(_), _) => {
                o = whole()?;
                None
            }
        };
        // A weak ETag (`W/"..."`) cannot be matched with If-Match.
        let etag = o.e_tag().filter(|t| !t.starts_with("W/")).map(str::to_string);
        let src = Arc::new(download::Source {
            s3: c.s3.clone(),
            bucket: self.bucket.clone(),
            key,
            etag,
        });
        let (rx, expect) = match plan {
            Some(total) => {
                // Each message is a whole range: one waits in the channel at most.
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                c.rt.spawn(download::ranges(src, o.body, total, part, reads_in_flight(), tx));
                (rx, Some(total))
            }
            None => {
                let size = o.content_length().and_then(|n| u64::try_from(n).ok());
                let (tx, rx) = tokio::sync::mpsc::channel(4);
                c.rt.spawn(download::whole(src, o.body, size, tx));
                (rx, size)
            }
        };
        Ok(Box::new(ChannelReader {
            rx,
            chunk: bytes::Bytes::new(),
            got: 0,
            expect,
            failed: None,
            _client: c,
        }))
    }

    fn create(&self, name: &str, opts: &CreateOptions) -> Result<Box<dyn NewObject>> {
        if opts.replace {
            return Err(Error::InvalidOption(
                "objects in a bucket are never replaced (--overwrite applies to local files)".into(),
            ));
        }
        if opts.rename_if_taken {
            return Ok(self.first_free(name, opts)?);
        }
        if self.head(name)?.is_some() {
            return Err(Error::WouldOverwrite {
                path: self.object_path(name),
            });
        }
        Ok(self.new_object(name.to_string(), opts)?)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        let c = &self.client;
        match c
            .rt
            .block_on(c.s3.delete_object().bucket(&self.bucket).key(&key).send())
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.remote_err("delete", name, e)),
        }
    }

    fn clean_up(&self, older_than_secs: u64) -> Result<Vec<String>> {
        let c = &self.client;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut done = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let mut req = c.s3.list_multipart_uploads().bucket(&self.bucket);
            if !self.prefix.is_empty() {
                req = req.prefix(&self.prefix);
            }
            if let Some(k) = key_marker.take() {
                req = req.key_marker(k);
            }
            if let Some(i) = id_marker.take() {
                req = req.upload_id_marker(i);
            }
            let page =
                c.rt.block_on(req.send())
                    .map_err(|e| self.remote_err("list incomplete uploads in", "", e))?;
            for u in page.uploads() {
                let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let Some(name) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                // Only litevault's own kind of objects, directly under the prefix.
                if name.contains('/') || !crate::model::naming::is_backup_name(name) {
                    continue;
                }
                let started = u.initiated().map(|t| t.secs()).unwrap_or(now);
                if now - started < older_than_secs as i64 {
                    continue;
                }
                let aborted = c.rt.block_on(
                    c.s3.abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send(),
                );
                match aborted {
                    Ok(_) => done.push(format!(
                        "aborted an incomplete upload of {} started {}",
                        self.url_of(name),
                        crate::model::naming::format_time(started)
                    )),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(self.remote_err("abort incomplete upload of", name, e)),
                }
            }
            if page.is_truncated() == Some(true) {
                key_marker = page.next_key_marker().map(str::to_string);
                id_marker = page.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() {
                    break;
                }
            } else {
                break;
            }
        }
        Ok(done)
    }
}

/// How many names (`name`, `name-2` ... ) a backup published under a generated name tries.
const MAX_NUMBERED: usize = 10_000;

/// Reads the chunks a download task sends. The channel closing early (the task gone) is an
/// error, not the end of the object, when its size is known; an error stays an error.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
    /// Bytes handed out so far.
    got: u64,
    /// The object's size, when the server said it.
    expect: Option<u64>,
    /// The error that ended the read, for every later call.
    failed: Option<String>,
    /// The client's runtime runs the download: it lives as long as the reader.
    _client: Arc<Client>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if let Some(why) = &self.failed {
            return Err(io::Error::other(DownloadError(why.clone())));
        }
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => {
                    self.failed = Some(e.to_string());
                    return Err(e);
                }
                None => match self.expect {
                    Some(size) if self.got != size => {
                        let why = format!("download ended at byte {} of {size}", self.got);
                        self.failed = Some(why.clone());
                        return Err(io::Error::other(DownloadError(why)));
                    }
                    _ => return Ok(0),
                },
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        self.got += n as u64;
        Ok(n)
    }
}

/// A multipart upload in progress in this process, so that a signal handler can abort it.
struct ActiveUpload {
    client: Arc<Client>,
    bucket: String,
    key: String,
    id: String,
    /// Its part uploads still running.
    parts_running: Arc<std::sync::atomic::AtomicUsize>,
}

fn active_uploads() -> &'static Mutex<Vec<ActiveUpload>> {
    static ACTIVE: OnceLock<Mutex<Vec<ActiveUpload>>> = OnceLock::new();
    ACTIVE.get_or_init(|| Mutex::new(Vec::new()))
}

/// `CreateMultipartUpload` requests sent and not yet registered in [`active_uploads`].
static CREATING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits (at most `limit`) until `running` is zero: a part that reaches the server after the
/// upload is aborted could bring the upload back on some servers.
fn wait_parts(running: &std::sync::atomic::AtomicUsize, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    while running.load(std::sync::atomic::Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Aborts every multipart upload this process has in progress (for Ctrl-C and SIGTERM
/// handlers, before the process exits): waits up to 5 s for uploads being started to be known,
/// lets each upload's running parts end (up to 10 s), then aborts it.
pub fn abort_active_uploads() -> usize {
    use std::sync::atomic::Ordering;
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while CREATING.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let uploads: Vec<_> = active_uploads()
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    let n = uploads.len();
    for u in uploads {
        wait_parts(&u.parts_running, Duration::from_secs(10));
        let c = &u.client;
        let _ = c.rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                c.s3.abort_multipart_upload()
                    .bucket(&u.bucket)
                    .key(&u.key)
                    .upload_id(&u.id)
                    .send(),
            )
            .await
        });
    }
    n
}

/// A new object being uploaded ([`S3Location::create`]).
struct S3Object {
    loc: S3Location,
    name: String,
    key: String,
    /// The first part, kept in memory and sent last (its head may still change).
    first: Vec<u8>,
    first_len: usize,
    head_reserve: u64,
    /// The part being filled (parts 2, 3, ...).
    current: Vec<u8>,
    upload: Option<String>,
    in_flight: Vec<(i32, tokio::task::JoinHandle<std::result::Result<String, String>>)>,
    parts: Vec<CompletedPart>,
    next_part: i32,
    /// Hashes every byte as it is written, when the head never changes.
    stream_hasher: Option<Sha256>,
    /// Otherwise everything after the first part is kept in an anonymous temp file (gone with
    /// the process) and hashed at the end, after the final head.
    spool: Option<io::BufWriter<std::fs::File>>,
    bytes: u64,
    failed: Option<String>,
    /// Part uploads running (shared with this upload's entry in [`active_uploads`]).
    parts_running: Arc<std::sync::atomic::AtomicUsize>,
}

impl S3Object {
    fn client(&self) -> &Arc<Client> {
        &self.loc.client
    }

    fn start_upload(&mut self) -> io::Result<String> {
        if let Some(id) = &self.upload {
            return Ok(id.clone());
        }
        use std::sync::atomic::Ordering;
        let c = self.client().clone();
        // Counted until registered, so that a signal arriving meanwhile waits for the id.
        CREATING.fetch_add(1, Ordering::SeqCst);
        let out = c.rt.block_on(
            c.s3.create_multipart_upload()
                .bucket(&self.loc.bucket)
                .key(&self.key)
                .send(),
        );
        let registered = (|| -> io::Result<String> {
            let out =
                out.map_err(|e| io::Error::other(self.loc.remote_err("start upload of", &self.name, e)))?;
            let id = out
                .upload_id()
                .ok_or_else(|| io::Error::other("the server returned no upload id"))?
                .to_string();
            if let Ok(mut v) = active_uploads().lock() {
                v.push(ActiveUpload {
                    client: c.clone(),
                    bucket: self.loc.bucket.clone(),
                    key: self.key.clone(),
                    id: id.clone(),
                    parts_running: self.parts_running.clone(),
                });
            }
            Ok(id)
        })();
        CREATING.fetch_sub(1, Ordering::SeqCst);
        let id = registered?;
        self.upload = Some(id.clone());
        Ok(id)
    }

    /// Sends `self.current` as the next part, waiting first while too many are in flight.
    fn send_current(&mut self) -> io::Result<()> {
        let id = self.start_upload()?;
        while self.in_flight.len() >= parts_in_flight() {
            self.wait_oldest()?;
        }
        let data = std::mem::take(&mut self.current);
        if let Some(s) = &mut self.spool {
            s.write_all(&data)?;
        }
        let number = self.next_part;
        self.next_part += 1;
        let c = self.client().clone();
        let req =
            c.s3.upload_part()
                .bucket(&self.loc.bucket)
                .key(&self.key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(data));
        let (url, endpoint) = (self.loc.url_of(&self.name), c.endpoint.clone());
        let running = self.parts_running.clone();
        running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let handle = c.rt.spawn(async move {
            let r = match req.send().await {
                Ok(o) => o
                    .e_tag()
                    .map(str::to_string)
                    .ok_or_else(|| "no ETag for a part".to_string()),
                Err(e) => Err(sdk_error("upload part of", &url, &endpoint, e).to_string()),
            };
            running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            r
        });
        self.in_flight.push((number, handle));
        Ok(())
    }

    fn wait_oldest(&mut self) -> io::Result<()> {
        if self.in_flight.is_empty() {
            return Ok(());
        }
        let (number, handle) = self.in_flight.remove(0);
        let got = self
            .client()
            .rt
            .block_on(handle)
            .map_err(|e| io::Error::other(format!("upload task failed: {e}")))?;
        match got {
            Ok(etag) => {
                self.parts
                    .push(CompletedPart::builder().part_number(number).e_tag(etag).build());
                Ok(())
            }
            Err(msg) => {
                self.failed = Some(msg.clone());
                Err(io::Error::other(msg))
            }
        }
    }

    fn abort(&mut self) {
        // Parts still on their way are let finish first: one that reached the server after
        // the abort could bring the upload back.
        self.in_flight.clear();
        wait_parts(&self.parts_running, Duration::from_secs(30));
        if let Some(id) = self.upload.take() {
            let c = self.loc.client.clone();
            let _ = c.rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    c.s3.abort_multipart_upload()
                        .bucket(&self.loc.bucket)
                        .key(&self.key)
                        .upload_id(&id)
                        .send(),
                )
                .await
            });
            if let Ok(mut v) = active_uploads().lock() {
                v.retain(|u| u.id != id);
            }
        }
    }

    fn finish_inner(&mut self, head: Option<&[u8]>) -> Result<Published> {
        let url = self.loc.object_path(&self.name);
        let io_err = |e: io::Error| Error::Remote {
            op: "upload",
            url: url.display().to_string(),
            detail: e.to_string(),
            hint: "retry later; if it persists, check the server",
        };
        if let Some(msg) = &self.failed {
            return Err(io_err(io::Error::other(msg.clone())));
        }
        if let Some(head) = head {
            if head.len() as u64 > self.head_reserve || head.len() > self.first.len() {
                return Err(Error::InvalidOption(format!(
                    "a head of {} bytes does not fit the {} reserved",
                    head.len(),
                    self.head_reserve
                )));
            }
            self.first[..head.len()].copy_from_slice(head);
        }
        let c = self.client().clone();
        let mut hasher = Sha256::new();
        hasher.update(&self.first);
        if self.upload.is_none() && self.current.is_empty() {
            // Small enough for one request.
            let sha256 = hex(&hasher.finalize());
            let size = self.first.len() as u64;
            if self.loc.head(&self.name)?.is_some() {
                return Err(Error::WouldOverwrite { path: url });
            }
            let body = ByteStream::from(std::mem::take(&mut self.first));
            let sent = c.rt.block_on(
                c.s3.put_object()
                    .bucket(&self.loc.bucket)
                    .key(&self.key)
                    .if_none_match("*")
                    .body(body)
                    .send(),
            );
            return match sent {
                Ok(_) => Ok(Published {
                    path: url,
                    name: self.name.clone(),
                    size,
                    sha256,
                }),
                Err(e) if is_precondition_failed(&e) => Err(Error::WouldOverwrite { path: url }),
                Err(e) => Err(self.loc.remote_err("upload", &self.name, e)),
            };
        }
        if !self.current.is_empty() {
            self.send_current().map_err(io_err)?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest().map_err(io_err)?;
        }
        let id = self.start_upload().map_err(io_err)?;
        // Part 1 last, now that its head is final.
        let first = std::mem::take(&mut self.first);
        let size = self.bytes;
        let part1 =
            c.rt.block_on(
                c.s3.upload_part()
                    .bucket(&self.loc.bucket)
                    .key(&self.key)
                    .upload_id(&id)
                    .part_number(1)
                    .body(ByteStream::from(first))
                    .send(),
            )
            .map_err(|e| self.loc.remote_err("upload part of", &self.name, e))?;
        let etag = part1.e_tag().unwrap_or_default().to_string();
        self.parts
            .push(CompletedPart::builder().part_number(1).e_tag(etag).build());
        self.parts.sort_by_key(|p| p.part_number());
        // SHA-256 needs the bytes in order: when the head changed, the first part (final now)
        // is followed by the spooled rest.
        let sha256 = match (self.stream_hasher.take(), self.spool.take()) {
            (Some(h), _) => hex(&h.finalize()),
            (None, Some(spool)) => {
                let mut f = spool.into_inner().map_err(|e| io_err(e.into_error()))?;
                use std::io::Seek;
                f.seek(io::SeekFrom::Start(0)).map_err(io_err)?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).map_err(io_err)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                hex(&hasher.finalize())
            }
            (None, None) => hex(&hasher.finalize()),
        };
        // Create-only, checked by us too: some servers ignore If-None-Match.
        if self.loc.head(&self.name)?.is_some() {
            return Err(Error::WouldOverwrite { path: url });
        }
        let done = c.rt.block_on(
            c.s3.complete_multipart_upload()
                .bucket(&self.loc.bucket)
                .key(&self.key)
                .upload_id(&id)
                .if_none_match("*")
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(std::mem::take(&mut self.parts)))
                        .build(),
                )
                .send(),
        );
        match done {
            Ok(_) => {
                self.upload = None;
                if let Ok(mut v) = active_uploads().lock() {
                    v.retain(|u| u.id != id);
                }
                Ok(Published {
                    path: url,
                    name: self.name.clone(),
                    size,
                    sha256,
                })
            }
            Err(e) if is_precondition_failed(&e) => Err(Error::WouldOverwrite { path: url }),
            Err(e) => Err(self.loc.remote_err("complete upload of", &self.name, e)),
        }
    }
}

impl Write for S3Object {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(msg) = &self.failed {
            return Err(io::Error::other(msg.clone()));
        }
        if self.first.len() < self.first_len {
            let n = buf.len().min(self.first_len - self.first.len());
            self.first.extend_from_slice(&buf[..n]);
            self.bytes += n as u64;
            if let Some(h) = &mut self.stream_hasher {
                h.update(&buf[..n]);
            }
            return Ok(n);
        }
        if self.current.capacity() == 0 {
            self.current.reserve_exact(part_size());
        }
        if self.spool.is_none() && self.stream_hasher.is_none() {
            let f = tempfile::tempfile()?;
            self.spool = Some(io::BufWriter::with_capacity(1 << 20, f));
        }
        let n = buf.len().min(part_size() - self.current.len());
        self.current.extend_from_slice(&buf[..n]);
        self.bytes += n as u64;
        if let Some(h) = &mut self.stream_hasher {
            h.update(&buf[..n]);
        }
        if self.current.len() == part_size() {
            self.send_current()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl NewObject for S3Object {
    fn finish(mut self: Box<Self>, head: Option<&[u8]>) -> Result<Published> {
        let r = self.finish_inner(head);
        if r.is_err() {
            self.abort();
        }
        r
    }
}

impl Drop for S3Object {
    fn drop(&mut self) {
        self.abort();
    }
}

static REQUESTS: [std::sync::atomic::AtomicU64; 6] = [const { std::sync::atomic::AtomicU64::new(0) }; 6];

/// S3 requests this process has sent, by kind ([`super::store::S3_REQUEST_KINDS`]): every attempt,
/// retries included.
pub fn request_counts() -> Vec<(&'static str, u64)> {
    super::store::S3_REQUEST_KINDS
        .iter()
        .zip(&REQUESTS)
        .map(|(k, n)| (*k, n.load(std::sync::atomic::Ordering::Relaxed)))
        .collect()
}

/// Counts each request as it is sent ([`request_counts`]).
#[derive(Debug)]
struct CountRequests;

impl aws_sdk_s3::config::Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "litevault-request-count"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let r = context.request();
        let query = r.uri().split_once('?').map_or("", |(_, q)| q);
        let listing = query
            .split('&')
            .any(|p| p.starts_with("list-type=") || p == "uploads" || p.starts_with("uploads="));
        let kind = match r.method() {
            "GET" if listing => "LIST",
            "POST" => "POST",
            m => m,
        };
        if let Some(i) = super::store::S3_REQUEST_KINDS.iter().position(|k| *k == kind) {
            REQUESTS[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}
