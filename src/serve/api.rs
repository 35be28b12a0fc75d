//! The HTTP API (axum): routes, the bearer-token check, and the JSON answers.
//!
//! Every route under `/api` and `/metrics` needs `Authorization: Bearer <token>` when a token
//! is configured (the scheme in any case, RFC 7235); `/healthz` never does (it says only whether
//! backups are healthy, and why not). Bodies are capped at [`MAX_BODY`] bytes (a larger declared
//! length is answered 413 before any of it is read), must arrive within the header timeout, and
//! are parsed by [`super::requests`]. Handlers never block the runtime: reading a location runs
//! on the blocking pool, jobs on their own threads. Errors speak the API's words: a hint names
//! the request's field (`"overwrite": true`), not the command line's option.

use std::sync::Arc;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::DatabaseConfig;
use super::http::Connection;
use super::jobs::{self, report, Kind, Work};
use super::requests::{self, Which, MAX_BODY};
use super::shared::{now, Shared};
use super::state::DbState;
use crate::error::{Error, ErrorClass};
use crate::location::format_time;
use crate::ops::restore::RestoreOptions;

/// The OpenAPI document of this API (kept in the repository as `docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/api/backup/status", get(status))
        .route("/api/backups", get(backups))
        .route("/api/backup/create", post(create))
        .route("/api/backup/verify", post(verify))
        .route("/api/backup/restore", post(restore))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(job))
        .fallback(not_found)
        // Outermost first: the token, then the body (never read for a request without one).
        .layer(middleware::from_fn_with_state(shared.clone(), read_body))
        .layer(middleware::from_fn_with_state(shared.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

type Shared_ = State<Arc<Shared>>;

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// An answer with an error object like the command line's `--json` one.
fn fail(status: StatusCode, class: &str, message: impl Into<String>) -> Response {
    reply(status, json!({ "error": message.into(), "class": class }))
}

fn fail_with(e: &Error) -> Response {
    let status = match e {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Remote { .. } => StatusCode::BAD_GATEWAY,
        _ => match e.class() {
            ErrorClass::Refused => StatusCode::CONFLICT,
            ErrorClass::Usage => StatusCode::BAD_REQUEST,
            ErrorClass::Corrupt => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorClass::Failed | ErrorClass::Interrupted => StatusCode::INTERNAL_SERVER_ERROR,
        },
    };
    reply(status, serde_json::to_value(report(e)).unwrap_or(Value::Null))
}

/// Compares the given token with the configured one in constant time (both are hashed first,
/// so neither their contents nor their lengths show in the time taken).
fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    a.ct_eq(&b).into()
}

/// The credentials of an `Authorization: Bearer <token>` header; the scheme's case does not
/// matter (RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn auth(State(shared): Shared_, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    if let Some(token) = shared.config().token.clone() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        if !given.is_some_and(|g| token_matches(g, token.expose())) {
            let mut r = fail(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                if given.is_some() {
                    "wrong bearer token"
                } else {
                    "send Authorization: Bearer <token>"
                },
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    // While it is answered, its connection is not closed to make room for another.
    let _answering = req.extensions().get::<Arc<Connection>>().map(|c| c.authorised());
    next.run(req).await
}

/// Reads the body whole before the handler sees it: 413 at once when the declared length is
/// over [`MAX_BODY`] (not after waiting for bytes that may never come), 413 when more arrives,
/// 408 when it has not all arrived within the header timeout.
async fn read_body(State(shared): Shared_, req: Request, next: Next) -> Response {
    let too_large = || {
        fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "usage",
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let timeout = shared.config().header_timeout();
    let (parts, body) = req.into_parts();
    let collect = async {
        let mut body = std::pin::pin!(body);
        let mut buf = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            // An error here is the client's: a reset, a malformed chunk.
            let Ok(data) = frame.map(|f| f.into_data()) else {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "usage",
                    "the body could not be read",
                ));
            };
            if let Ok(data) = data {
                if buf.len() + data.len() > MAX_BODY {
                    return Err(too_large());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(buf)) => next.run(Request::from_parts(parts, Body::from(buf))).await,
        Ok(Err(answer)) => answer,
        Err(_) => fail(
            StatusCode::REQUEST_TIMEOUT,
            "usage",
            format!("the body did not arrive within {} s", timeout.as_secs()),
        ),
    }
}

async fn not_found() -> Response {
    fail(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint (see /api/openapi.json)",
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The configured database a job request names, unless the daemon is stopping.
fn job_database(shared: &Shared, name: &str) -> Result<DatabaseConfig, Box<Response>> {
    let Some(db) = shared.config().database(name).cloned() else {
        return Err(Box::new(unknown_database(name)));
    };
    if shared.is_stopping() {
        return Err(Box::new(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the daemon is stopping",
        )));
    }
    Ok(db)
}

fn unknown_database(name: &str) -> Response {
    fail(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no database named {name:?} in the configuration"),
    )
}

fn busy(db: &str, b: jobs::Busy) -> Response {
    let error = match b.job {
        Some(job) => format!(
            "a {} job ({job}) holds database {db:?}; retry when it has finished",
            b.kind.as_str()
        ),
        None => format!("a restore of database {db:?} is being planned; retry in a moment"),
    };
    reply(
        StatusCode::CONFLICT,
        json!({ "error": error, "class": "busy", "job": b.job }),
    )
}

fn accepted(id: u64, extra: Value) -> Response {
    let mut body = json!({ "job": id, "url": format!("/api/jobs/{id}") });
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    reply(StatusCode::ACCEPTED, body)
}

/// Health: every database has a backup younger than twice its schedule's interval (a replicated
/// one without a scheduled backup yet: its replicator's base) and, when it has drills, its
/// newest drill passed.
pub(crate) fn health(shared: &Shared) -> (bool, Vec<String>) {
    let config = shared.config();
    let dbs = shared.dbs();
    let t = now();
    let mut reasons = Vec::new();
    for db in &config.databases {
        let st = dbs.get(&db.name).cloned().unwrap_or_default();
        let interval = db.schedule.interval(t) as i64;
        // A replicated database's first scheduled backup is a period away: its replicator's
        // base, written at start, is its backup until then.
        let based = || {
            db.replicate.is_some()
                && shared
                    .replicas
                    .view(&db.name)
                    .is_some_and(|v| v.status.is_some_and(|s| s.base.is_some()))
        };
        match &st.last_success {
            None if based() => {}
            None => reasons.push(format!("{}: no successful backup yet", db.name)),
            Some(b) if t - b.time > 2 * interval => reasons.push(format!(
                "{}: the newest successful backup is {} s old, more than twice the schedule's interval ({} s)",
                db.name,
                t - b.time,
                interval
            )),
            Some(_) => {}
        }
        if db.replicate.is_some() {
            match shared.replicas.view(&db.name) {
                None => reasons.push(format!("{}: not replicating", db.name)),
                Some(v) if v.status.is_none() && v.running_secs > 60 => reasons.push(format!(
                    "{}: not replicating: {}",
                    db.name,
                    v.error.as_deref().unwrap_or("the database could not be opened")
                )),
                Some(v) if v.lag_secs > db.replicate_max_lag.as_secs_f64() => reasons.push(format!(
                    "{}: replication lags {:.0} s behind (more than {} s){}",
                    db.name,
                    v.lag_secs,
                    db.replicate_max_lag.as_secs(),
                    v.status
                        .as_ref()
                        .and_then(|s| s.last_error.as_ref())
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )),
                Some(_) => {}
            }
        }
        if db.verify.is_some() {
            match &st.last_verify {
                None => reasons.push(format!("{}: no restore drill has run yet", db.name)),
                Some(v) if !v.ok => reasons.push(format!(
                    "{}: the restore drill of {} at {} failed: {}",
                    db.name,
                    v.archive.as_deref().unwrap_or("the newest backup"),
                    format_time(v.time),
                    v.error.as_ref().map_or("", |e| e.error.as_str())
                )),
                Some(_) => {}
            }
        }
    }
    (reasons.is_empty(), reasons)
}

async fn healthz(State(shared): Shared_) -> Response {
    let (ok, reasons) = health(&shared);
    if ok {
        reply(StatusCode::OK, json!({ "status": "ok", "reasons": reasons }))
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "failing", "reasons": reasons }),
        )
    }
}

fn db_view(db: &DatabaseConfig, st: &DbState, jobs: &jobs::Table) -> Value {
    json!({
        "name": db.name,
        "path": db.path,
        "location": db.location,
        "schedule": db.schedule.text(),
        "verify": db.verify.as_ref().map(|v| v.text()),
        "incremental": db.format.incremental(),
        "format": db.format.kind(),
        "last_success": st.last_success.as_ref().map(|b| json!({
            "time": format_time(b.time), "archive": b.archive, "size": b.size,
            "duration_ms": b.duration_ms, "kind": b.kind,
        })),
        "last_failure": st.last_failure.as_ref().map(|f| json!({
            "time": format_time(f.time), "job": f.job, "kind": f.kind, "error": f.error,
        })),
        "last_verify": st.last_verify.as_ref().map(|v| json!({
            "time": format_time(v.time), "ok": v.ok, "archive": v.archive, "error": v.error,
        })),
        "running": st.busy.and_then(|id| jobs.jobs.get(&id)).map(|j| j.view()),
        "next_backup": st.next_backup.map(format_time),
        "next_verify": st.next_verify.map(format_time),
    })
}

async fn status(State(shared): Shared_) -> Response {
    let config = shared.config();
    let dbs = shared.dbs();
    let jobs = shared.jobs();
    let views: Vec<Value> = config
        .databases
        .iter()
        .map(|db| {
            let mut v = db_view(db, &dbs.get(&db.name).cloned().unwrap_or_default(), &jobs);
            if let Some(r) = shared.replicas.view(&db.name) {
                v["replication"] = r.json();
                v["replicate"] = db.replicate.map(|i| format!("{} ms", i.as_millis())).into();
            }
            v
        })
        .collect();
    drop((dbs, jobs));
    let (healthy, reasons) = health(&shared);
    reply(
        StatusCode::OK,
        json!({ "healthy": healthy, "reasons": reasons, "databases": views }),
    )
}

async fn backups(
    State(shared): Shared_,
    query: Result<Query<std::collections::HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return fail(
            StatusCode::BAD_REQUEST,
            "usage",
            "bad query string: expected ?database=NAME",
        );
    };
    let Some(name) = query.get("database") else {
        return fail(StatusCode::BAD_REQUEST, "usage", "give ?database=NAME");
    };
    let Some(db) = shared.config().database(name).cloned() else {
        return unknown_database(name);
    };
    let ctx = shared.config().context();
    let listed = tokio::task::spawn_blocking(move || {
        if !crate::location::is_remote(&db.location) && !db.location.exists() {
            return Ok(Vec::new());
        }
        let loc = crate::location::open(&db.location)?;
        let all = crate::ops::list::list_in(&ctx, loc.as_ref())?;
        Ok(all
            .into_iter()
            .filter(|a| {
                let file = a
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                crate::ops::prune::parse_backup_name(&file)
                    .is_some_and(|(g, _)| requests::is_group_of(&db.name, &g))
            })
            .collect::<Vec<_>>())
    })
    .await;
    match listed {
        Ok(Ok(items)) => reply(StatusCode::OK, serde_json::to_value(items).unwrap_or(Value::Null)),
        Ok(Err(e)) => fail_with(&e),
        Err(_) => fail(StatusCode::INTERNAL_SERVER_ERROR, "error", "listing failed"),
    }
}

fn start(shared: &Arc<Shared>, body: &[u8], kind: Kind) -> Response {
    let req = match requests::parse_database_request(body) {
        Ok(r) => r,
        Err(m) => return fail(StatusCode::BAD_REQUEST, "usage", m),
    };
    if kind != Kind::Backup && !req.labels.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "usage",
            "labels: only a backup records labels",
        );
    }
    let db = match job_database(shared, &req.database) {
        Ok(db) => db,
        Err(r) => return *r,
    };
    match jobs::reserve(shared, &db.name, kind, "api") {
        Err(b) => busy(&db.name, b),
        Ok(id) => {
            let work = if kind == Kind::Backup {
                Work::Backup { labels: req.labels }
            } else {
                Work::Verify
            };
            drop(jobs::launch(shared, id, db, work));
            accepted(id, json!({}))
        }
    }
}

async fn create(State(shared): Shared_, body: Bytes) -> Response {
    start(&shared, &body, Kind::Backup)
}

async fn verify(State(shared): Shared_, body: Bytes) -> Response {
    start(&shared, &body, Kind::Verify)
}

/// A restore is planned before it is accepted, so every refusal (another database's archive,
/// an existing database without `overwrite`, a newer schema, a holder that blocks a swap, a
/// missing archive) is the answer, with nothing changed and no job number used; only then does
/// the job run, guarded exactly as the command line's. The database is held meanwhile.
async fn restore(State(shared): Shared_, body: Bytes) -> Response {
    let (req, which) = match requests::parse_restore_request(&body) {
        Ok(r) => r,
        Err(m) => return fail(StatusCode::BAD_REQUEST, "usage", m),
    };
    let db = match job_database(&shared, &req.database) {
        Ok(db) => db,
        Err(r) => return *r,
    };
    if let Which::Named(name) = &which {
        if let Err(m) = requests::check_archive_of(&db.name, name) {
            return fail(StatusCode::BAD_REQUEST, "usage", m);
        }
    }
    // Dropped on every refusal below (and if the client goes away meanwhile): the database is
    // free again, as if nothing had been asked.
    let held = match jobs::hold(&shared, &db.name) {
        Ok(h) => h,
        Err(b) => return busy(&db.name, b),
    };
    let opts = RestoreOptions {
        overwrite: req.overwrite,
        quick: req.quick,
        // The safety archive of the replaced database goes with the database's backups.
        safety_dir: Some(db.location.clone()),
        encrypt: db.encrypt.clone(),
        ..Default::default()
    };
    let plan_db = db.clone();
    let plan_opts = opts.clone();
    let ctx = shared.config().context();
    let planned = tokio::task::spawn_blocking(move || {
        let loc = crate::location::open(&plan_db.location).map_err(|e| Box::new(fail_with(&e)))?;
        let name = match which {
            Which::Named(n) => n,
            Which::Latest(at) => crate::ops::chain::latest_required(&ctx, loc.as_ref(), &plan_db.name, at)
                .map_err(|e| Box::new(fail_with(&e)))?,
        };
        let archive = loc.object_path(&name);
        let plan = crate::ops::restore::plan_restore(&ctx, &archive, &plan_db.path, &plan_opts)
            .map_err(|e| Box::new(fail_with(&e)))?;
        if plan.manifest.parent.is_some() {
            foreign_link(&ctx, &archive, &plan_db.name)?;
        }
        Ok::<_, Box<Response>>((archive, plan))
    })
    .await;
    match planned {
        Ok(Ok((archive, plan))) => {
            let id = held.into_job(Kind::Restore, "api");
            drop(jobs::launch(&shared, id, db, Work::Restore { archive, opts }));
            accepted(id, json!({ "plan": plan }))
        }
        Ok(Err(answer)) => *answer,
        Err(_) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error",
            "planning the restore failed",
        ),
    }
}

/// Refuses an incremental archive of database `name` whose chain has a link of another
/// database (its manifest names that link as its parent): composing it would restore that
/// database's pages.
fn foreign_link(
    ctx: &crate::ops::Context,
    archive: &std::path::Path,
    name: &str,
) -> Result<(), Box<Response>> {
    let links = crate::ops::chain::links(ctx, archive).map_err(|e| Box::new(fail_with(&e)))?;
    for (link, _) in &links {
        let object = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if requests::check_archive_of(name, &object).is_err() {
            let newest = archive
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(Box::new(fail(
                StatusCode::CONFLICT,
                "refused",
                format!(
                    "{newest:?}: its chain has the link {object:?}, which is not a backup of database {name:?}; nothing was restored"
                ),
            )));
        }
    }
    Ok(())
}

async fn list_jobs(State(shared): Shared_) -> Response {
    let jobs = shared.jobs();
    let views: Vec<Value> = jobs.jobs.values().rev().take(100).map(|j| j.view()).collect();
    reply(StatusCode::OK, json!({ "jobs": views }))
}

async fn job(State(shared): Shared_, UrlPath(id): UrlPath<String>) -> Response {
    let found = id
        .parse::<u64>()
        .ok()
        .and_then(|id| shared.jobs().jobs.get(&id).map(|j| j.view()));
    match found {
        Some(v) => reply(StatusCode::OK, v),
        None => fail(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no job {id:?} (finished jobs are kept until the daemon restarts, the newest 500)"),
        ),
    }
}

async fn metrics(State(shared): Shared_) -> Response {
    let config = shared.config();
    let dbs = shared.dbs();
    let states: Vec<(String, DbState)> = config
        .databases
        .iter()
        .map(|d| (d.name.clone(), dbs.get(&d.name).cloned().unwrap_or_default()))
        .collect();
    let running: Vec<(String, bool)> = {
        let jobs = shared.jobs();
        config
            .databases
            .iter()
            .map(|d| {
                let r = dbs
                    .get(&d.name)
                    .and_then(|s| s.busy)
                    .and_then(|id| jobs.jobs.get(&id))
                    .is_some_and(|j| j.state == jobs::JobState::Running);
                (d.name.clone(), r)
            })
            .collect()
    };
    drop(dbs);
    let replication: Vec<(String, Option<super::replication::View>)> = config
        .databases
        .iter()
        .map(|d| (d.name.clone(), shared.replicas.view(&d.name)))
        .collect();
    let text = super::metrics::render(&states, &running, &replication);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}
