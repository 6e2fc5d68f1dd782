//! `FakeTrellis`: a FAKE of the Trellis control plane's worker API (every
//! route under `/api`), for tests that drive the real `tendril` binary.
//!
//! It implements the worker API of `docs/trellis.md` strictly, as the
//! deployed Trellis behaves: the same status codes, the same `{"error":
//! "..."}` bodies, the same server-side rules (atomic ordered claim,
//! ownership checks, no status state machine, `error_message` kept once set,
//! shallow `execution_metadata` merge, every heartbeat recorded as ONLINE
//! whatever its status, a log chunk holding U+0000 refused with a 500 on
//! every attempt, as PostgreSQL text cannot store it). It is not Trellis:
//! there is no database, no stale-job recovery and no web app; tests play the
//! web app through the control helpers (`cancel_job`, `reassign_job`,
//! `set_git_token`, ...) and read results as its screens do
//! (`support::trellis_reads`).
//!
//! It runs on its own OS thread with its own tokio runtime, listens on
//! 127.0.0.1 on a free port, records every request, and can inject faults:
//! error answers, slow answers, dropped connections, whole outages (the
//! listening socket is closed, so connections are refused, and later re-bound
//! on the same port), a database outage (every route answers its own JSON
//! 500) and an ingress's pages in front of it. Everything stops when the `FakeTrellis` is dropped.

mod clock;
mod handlers;
mod state;
mod transport;

use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use clock::now;
pub use clock::uuid;
use handlers::router;
use state::{lock, Db, FailRule, Job, State, Worker};
pub use state::{RecordedRequest, IDENTITY_KEYS, MAX_ARTIFACT_BYTES, TEST_USER_ID};
use transport::{Net, Serving};

/// A fake Trellis (see the module docs). All methods are synchronous.
pub struct FakeTrellis {
    db: Db,
    net: Arc<Net>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeTrellis {
    /// Starts the fake on 127.0.0.1 on a free port.
    pub fn start() -> FakeTrellis {
        let (handle_tx, handle_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fake-trellis".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake Trellis runtime");
                handle_tx
                    .send(rt.handle().clone())
                    .expect("send runtime handle");
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .expect("spawn the fake Trellis thread");
        let rt = handle_rx.recv().expect("fake Trellis runtime handle");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let db = Db::default();
        let app = router(db.clone());
        let serving = Mutex::new(Serving::Down);
        let net = Arc::new(Net {
            port,
            rt,
            app,
            db: db.clone(),
            serving,
        });
        *lock(&net.serving) = net.serve(listener);
        FakeTrellis {
            db,
            net,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, without `/api` and without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.net.port)
    }

    pub fn port(&self) -> u16 {
        self.net.port
    }

    fn st(&self) -> MutexGuard<'_, State> {
        lock(&self.db)
    }

    fn with_job<T>(&self, id: &str, f: impl FnOnce(&mut Job) -> T) -> T {
        let mut st = self.st();
        f(st.job_mut(id)
            .unwrap_or_else(|| panic!("fake Trellis has no job {id}")))
    }

    // -- workers --

    /// Registers a worker that authenticates with `id` and `token`, with
    /// metadata `{}`.
    pub fn add_worker(&self, id: &str, token: &str) {
        self.st()
            .workers
            .insert(id.to_string(), Worker::new(token, json!({})));
    }

    /// The bearer secret `POST /api/tendrils/register` requires (without it,
    /// every registration is 401).
    pub fn set_registration_secret(&self, secret: &str) {
        self.st().registration_secret = Some(secret.to_string()).filter(|s| !s.is_empty());
    }

    /// The bearer secret `POST /api/releases/worker` requires (without it,
    /// every announcement is 401).
    pub fn set_release_secret(&self, secret: &str) {
        self.st().release_secret = Some(secret.to_string()).filter(|s| !s.is_empty());
    }

    /// The releases announced, oldest first, as Trellis stored them.
    pub fn releases(&self) -> Vec<Value> {
        self.st().releases.clone()
    }

    /// The token a worker authenticates with (e.g. one `register` made).
    pub fn worker_token(&self, id: &str) -> Option<String> {
        self.st().workers.get(id).map(|w| w.token.clone())
    }

    pub fn worker_exists(&self, id: &str) -> bool {
        self.st().workers.contains_key(id)
    }

    pub fn worker_metadata(&self, id: &str) -> Option<Value> {
        self.st().workers.get(id).map(|w| w.metadata.clone())
    }

    /// Every heartbeat body the worker sent, in order.
    pub fn heartbeats(&self, worker_id: &str) -> Vec<Value> {
        let st = self.st();
        st.workers
            .get(worker_id)
            .map(|w| w.heartbeats.clone())
            .unwrap_or_default()
    }

    /// The worker's row as the Tendrils page reads it: `status` (ONLINE
    /// once it sent a heartbeat or a claim, whatever status it sent) and
    /// `version` (its last heartbeat's).
    pub fn worker_row(&self, id: &str) -> Option<Value> {
        self.st()
            .workers
            .get(id)
            .map(|w| json!({"status": w.status, "version": w.version}))
    }

    /// When the worker last sent a heartbeat or a claim.
    pub fn last_seen(&self, worker_id: &str) -> Option<Instant> {
        self.st().workers.get(worker_id).and_then(|w| w.last_seen)
    }

    // -- jobs --

    /// Queues a job: defaults, then the given fields, then `status: QUEUED`
    /// and `worker_id: null`. Returns its id (generated unless given).
    pub fn enqueue(&self, job: Value) -> String {
        self.add_job(job, true, Value::Null, None)
    }

    /// Like `enqueue`, with a CloudIdentity that the claim returns (missing
    /// keys are filled with "", as Trellis sends them).
    pub fn enqueue_with_identity(&self, job: Value, identity: Value) -> String {
        let mut identity = identity;
        if let Some(fields) = identity.as_object_mut() {
            for key in IDENTITY_KEYS {
                fields.entry(key).or_insert_with(|| json!(""));
            }
        }
        self.add_job(job, true, identity, None)
    }

    /// Puts a row as is over the defaults (any status; claimable only if it
    /// is QUEUED). Returns its id.
    pub fn insert_job(&self, row: Value) -> String {
        self.add_job(row, false, Value::Null, None)
    }

    /// Queues a job whose claim returns `raw` exactly as given (for malformed
    /// jobs). `raw` needs a string `id`; the fake tracks status and owner in
    /// its own row.
    pub fn enqueue_raw(&self, raw: Value) -> String {
        assert!(
            raw["id"].is_string(),
            "enqueue_raw needs a string id: {raw}"
        );
        self.add_job(raw.clone(), true, Value::Null, Some(raw))
    }

    fn add_job(&self, given: Value, queue: bool, identity: Value, wire: Option<Value>) -> String {
        let Value::Object(given) = given else {
            panic!("a job must be a JSON object, got {given}");
        };
        let (id, now) = (uuid(), now());
        let mut row: Map<String, Value> = serde_json::from_value(json!({
            "id": id, "user_id": TEST_USER_ID, "vineyard_id": null, "vine_id": null,
            "cloud_identity_id": null, "job_type": "PLAN", "plan_job_id": null,
            "assigned_worker_id": null, "config_snapshot": {}, "configuration_hash": null,
            "status": "QUEUED", "worker_id": null, "claimed_at": null, "started_at": null,
            "completed_at": null, "created_at": now, "updated_at": now,
            "error_message": null, "execution_metadata": null,
        }))
        .expect("an object");
        row.extend(given);
        if queue {
            row.insert("status".into(), json!("QUEUED"));
            row.insert("worker_id".into(), Value::Null);
        }
        if identity.is_object() && row["cloud_identity_id"].is_null() {
            row.insert("cloud_identity_id".into(), json!(uuid()));
        }
        let id = row["id"]
            .as_str()
            .expect("a job id must be a string")
            .to_string();
        let mut st = self.st();
        assert!(st.job(&id).is_none(), "duplicate job id {id}");
        let (history, logs) = (Vec::new(), Vec::new());
        st.jobs.push(Job {
            row,
            wire,
            identity,
            history,
            logs,
            git_token: None,
        });
        id
    }

    /// The job's row as `GET /api/jobs/{id}` returns it.
    pub fn job(&self, id: &str) -> Option<Value> {
        self.st().job(id).map(|j| Value::Object(j.row.clone()))
    }

    /// Every accepted status PUT body for the job, in order.
    pub fn status_history(&self, id: &str) -> Vec<Value> {
        self.st()
            .job(id)
            .map(|j| j.history.clone())
            .unwrap_or_default()
    }

    /// Every accepted log chunk for the job as (stream, chunk), in order.
    pub fn logs(&self, id: &str) -> Vec<(String, String)> {
        self.st()
            .job(id)
            .map(|j| j.logs.clone())
            .unwrap_or_default()
    }

    /// The job's last accepted log chunk (cheap, for polling a long log).
    pub fn last_log_chunk(&self, id: &str) -> Option<String> {
        self.st()
            .job(id)
            .and_then(|j| j.logs.last().map(|(_, chunk)| chunk.clone()))
    }

    /// All the job's log chunks concatenated.
    pub fn log_text(&self, id: &str) -> String {
        self.logs(id).into_iter().map(|(_, chunk)| chunk).collect()
    }

    /// The token `POST /jobs/{id}/git-token` answers for the job (the
    /// user's git provider token); `None` answers `{"token": null}`.
    pub fn set_git_token(&self, id: &str, token: Option<&str>) {
        self.with_job(id, |job| job.git_token = token.map(String::from));
    }

    /// What the web app does when a user presses Cancel.
    pub fn cancel_job(&self, id: &str) {
        let now = now();
        self.with_job(id, |job| {
            job.row.insert("status".into(), json!("CANCELLED"));
            job.row.insert("completed_at".into(), now.clone());
            job.row.insert("updated_at".into(), now);
        });
    }

    /// Gives the job to another worker (as a requeue and re-claim would).
    pub fn reassign_job(&self, id: &str, other_worker_id: &str) {
        self.set_job_field(id, "worker_id", json!(other_worker_id));
    }

    pub fn set_job_field(&self, id: &str, key: &str, value: Value) {
        self.with_job(id, |job| job.row.insert(key.to_string(), value));
    }

    pub fn artifact(&self, job_id: &str) -> Option<Vec<u8>> {
        self.st().artifacts.get(job_id).cloned()
    }

    pub fn put_artifact(&self, job_id: &str, bytes: &[u8]) {
        self.st()
            .artifacts
            .insert(job_id.to_string(), bytes.to_vec());
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.st().requests.clone()
    }

    // -- fault injection --

    /// The next `n` `/api` requests answer `status` with
    /// `{"error":"Injected failure"}` and have no other effect.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.fail_next_with("", "/api", n, status, "Injected failure");
    }

    /// Like `fail_next`, only for requests with this method (any when "")
    /// whose path starts with `path_prefix`.
    pub fn fail_next_matching(&self, method: &str, path_prefix: &str, n: usize, status: u16) {
        self.fail_next_with(method, path_prefix, n, status, "Injected failure");
    }

    /// Like `fail_next_matching`, answering `{"error": message}`.
    pub fn fail_next_with(
        &self,
        method: &str,
        path_prefix: &str,
        n: usize,
        status: u16,
        message: &str,
    ) {
        let method = Some(method.to_string()).filter(|m| !m.is_empty());
        if n > 0 {
            self.st().fail_rules.push(FailRule {
                method,
                prefix: path_prefix.to_string(),
                remaining: n,
                status,
                message: message.to_string(),
            });
        }
    }

    /// Refuses, on every attempt, each log chunk that holds `marker`, with
    /// the 500 `Failed to insert log: ...` a value the database cannot
    /// store gets.
    pub fn refuse_logs_containing(&self, marker: &str) {
        self.st().refused_log_markers.push(marker.to_string());
    }

    /// Refuses every log chunk of job `id` with Trellis's own 500 `Failed
    /// to insert log: ...` (a constraint on the log table no line of this
    /// job meets), while the job itself reads as before.
    pub fn refuse_every_log_of(&self, id: &str) {
        self.st().refused_log_jobs.push(id.to_string());
    }

    /// Trellis's database becomes unreachable: every `/api` route answers
    /// Trellis's own 500 `{"error": "Failed to <what the route does>:
    /// <reason>"}` and has no effect (a worker's authentication reads the
    /// database too), until [`Self::database_back`].
    pub fn database_down(&self, reason: &str) {
        self.st().database_down = Some(reason.to_string());
    }

    /// The database answers again.
    pub fn database_back(&self) {
        self.st().database_down = None;
    }

    /// `database_down` now and `database_back` after `d`, from a background
    /// thread.
    pub fn database_outage(&self, d: Duration, reason: &str) {
        self.database_down(reason);
        let db = self.db.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            lock(&db).database_down = None;
        });
    }

    /// Something in front of Trellis (an ingress during a redeploy) answers
    /// every `/api` request with an HTML page of `status`, not Trellis's
    /// JSON, until [`Self::clear_faults`].
    pub fn ingress_pages(&self, status: u16) {
        self.st().ingress_page = Some(status);
    }

    /// Removes every injected failure rule still pending, the ingress's
    /// pages and the refusals of a job's every log chunk.
    pub fn clear_faults(&self) {
        let mut st = self.st();
        st.fail_rules.clear();
        st.ingress_page = None;
        st.refused_log_jobs.clear();
    }

    /// Delays every answer (after its effect), so a client timeout can leave
    /// a request applied but unanswered.
    pub fn set_delay(&self, delay: Duration) {
        self.st().delay = delay;
    }

    /// The next `n` `/api` requests are read, recorded with status 0 and
    /// have their connection closed without an answer or any effect.
    pub fn drop_next(&self, n: usize) {
        self.st().drop_next += n;
    }

    /// Closes the listening socket and all connections: connects are refused.
    pub fn go_down(&self) {
        self.net.go_down(false);
    }

    /// Re-binds the same port and serves again.
    pub fn come_back(&self) {
        self.net.come_back();
    }

    /// `go_down` now and `come_back` after `d`, from a background thread.
    pub fn outage(&self, d: Duration) {
        self.go_down();
        let net = self.net.clone();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            net.come_back();
        });
    }

    /// Polls `f` every 50 ms; panics naming `what` (and the last requests)
    /// after `timeout`. Use generous timeouts: this catches hangs.
    pub fn wait_until<F: Fn(&FakeTrellis) -> bool>(&self, timeout: Duration, what: &str, f: F) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if Instant::now() > deadline {
                let requests = self.requests();
                let recent: Vec<String> = (requests.iter().rev().take(20).rev())
                    .map(|r| format!("  {} {} -> {}", r.method, r.path, r.status))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last requests:\n{}",
                    recent.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (like `wait_until`) until the job's log contains `needle`.
    pub fn wait_for_log(&self, timeout: Duration, job: &str, needle: &str) {
        let what = format!("{needle:?} in the log of {job}");
        self.wait_until(timeout, &what, |t| t.log_text(job).contains(needle));
    }

    /// Waits (like `wait_until`) until the job is SUCCESS or FAILED, and
    /// returns its row.
    pub fn wait_for_end(&self, timeout: Duration, job: &str) -> Value {
        self.wait_until(timeout, &format!("job {job} to end"), |t| {
            t.job(job)
                .is_some_and(|row| row["status"] == "SUCCESS" || row["status"] == "FAILED")
        });
        self.job(job).unwrap()
    }
}

impl Drop for FakeTrellis {
    fn drop(&mut self) {
        self.net.go_down(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
