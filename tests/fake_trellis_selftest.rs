//! Self-tests of `FakeTrellis`, the FAKE Trellis worker API in
//! `tests/support`: they prove the fake answers as the deployed Trellis does
//! (`docs/trellis.md`), status codes and error bodies included, and that its
//! fault injection really happens on the wire.

use std::time::Duration;

use crate::support::fake_trellis::{FakeTrellis, MAX_ARTIFACT_BYTES};
use reqwest::Method;
use serde_json::{json, Value};

const NOT_OWNED: &str = "Job not found or not owned by this worker";

/// A worker-side HTTP client for one fake, on its own tokio runtime.
struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    id: String,
    token: String,
}

impl Client {
    /// A client for a worker newly added to `fake`.
    fn new(fake: &FakeTrellis, id: &str) -> Client {
        let token = format!("token-of-{id}");
        fake.add_worker(id, &token);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // No connection reuse: each call shows what a fresh connect sees.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let (base, id) = (fake.url(), id.to_string());
        Client {
            rt,
            http,
            base,
            id,
            token,
        }
    }

    /// Sends one request; `body` JSON unless it is `Bytes`. Worker headers
    /// unless `auth` is false. Returns the status and the JSON body (`Null`
    /// when not JSON).
    fn send(
        &self,
        method: Method,
        path: &str,
        auth: bool,
        body: Body,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if auth {
            req = req
                .header("X-Worker-ID", &self.id)
                .header("X-Worker-Token", &self.token);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Bytes(b) => req
                .header("Content-Type", "application/octet-stream")
                .body(b),
        };
        self.rt.block_on(async {
            let resp = req.timeout(Duration::from_secs(60)).send().await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?;
            Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        })
    }

    fn call(&self, method: Method, path: &str, body: Body) -> (u16, Value) {
        self.send(method, path, true, body).unwrap()
    }

    fn claim(&self) -> Value {
        let (status, body) = self.call(Method::POST, "/api/jobs/claim", Body::None);
        assert_eq!(status, 200, "{body}");
        body
    }

    fn status(&self, job: &str, body: Value) -> (u16, Value) {
        self.call(
            Method::PUT,
            &format!("/api/jobs/{job}/status"),
            Body::Json(body),
        )
    }
}

enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
}

fn err(msg: &str) -> Value {
    json!({ "error": msg })
}

#[test]
fn auth_headers_are_required_and_checked() {
    let fake = FakeTrellis::start();
    let c = Client::new(&fake, "w1");
    let beat = || Body::Json(json!({"version": "1", "status": "ONLINE", "current_job_id": null}));
    let missing = c
        .send(Method::POST, "/api/workers/heartbeat", false, beat())
        .unwrap();
    assert_eq!(missing, (401, err("Missing X-Worker-ID or X-Worker-Token")));

    let mut wrong = Client::new(&fake, "w2");
    wrong.token = "not-the-token".into();
    let (status, body) = wrong.call(Method::POST, "/api/jobs/claim", Body::None);
    assert_eq!((status, body), (401, err("Invalid worker ID or token")));

    assert_eq!(
        c.call(Method::POST, "/api/workers/heartbeat", beat()).0,
        200
    );
    assert_eq!(fake.heartbeats("w1")[0]["status"], "ONLINE");
    let (status, _) = c
        .send(
            Method::POST,
            "/api/workers/heartbeat",
            true,
            Body::Bytes(b"x".into()),
        )
        .unwrap();
    assert_eq!(status, 400, "a heartbeat must be JSON");
    assert_eq!(
        c.call(Method::GET, "/api/nope", Body::None),
        (404, err("Not found"))
    );
    assert_eq!(
        c.call(Method::DELETE, "/api/jobs/claim", Body::None),
        (404, err("Not found"))
    );
    let recorded = fake.requests();
    assert_eq!(recorded[0].header("x-worker-id"), None);
    assert_eq!(recorded[0].status, 401);
}

#[test]
fn claim_is_ordered_and_prefers_jobs_assigned_to_the_caller() {
    let fake = FakeTrellis::start();
    let (a, b) = (Client::new(&fake, "wa"), Client::new(&fake, "wb"));
    assert_eq!(a.claim(), json!({ "job": null }));
    let first = fake.enqueue(json!({"job_type": "PLAN"}));
    let second = fake.enqueue(json!({"job_type": "DEPLOY"}));
    let for_b = fake.enqueue(json!({"job_type": "DESTROY", "assigned_worker_id": "wb"}));
    let identity = json!({"provider": "aws", "role_arn": "arn:aws:iam::1:role/r"});
    let with_id = fake.enqueue_with_identity(json!({"job_type": "CONNECTION_TEST"}), identity);

    let got = b.claim();
    assert_eq!(got["job"]["id"], for_b.as_str(), "assigned job first");
    assert_eq!(got["job"]["status"], "CLAIMED");
    assert_eq!(got["job"]["worker_id"], "wb");
    assert_eq!(got["cloud_identity"], Value::Null);
    assert_eq!(a.claim()["job"]["id"], first.as_str(), "then the oldest");
    assert_eq!(b.claim()["job"]["id"], second.as_str());
    let got = a.claim();
    assert_eq!(got["job"]["id"], with_id.as_str());
    assert_eq!(got["cloud_identity"]["role_arn"], "arn:aws:iam::1:role/r");
    assert_eq!(
        got["cloud_identity"]["external_id"], "",
        "unset identity fields are empty"
    );
    assert_eq!(a.claim()["job"], Value::Null);
    assert!(fake.last_seen("wa").is_some(), "a claim is a heartbeat");

    let raw = fake.enqueue_raw(json!({"id": "raw-1", "config_snapshot": "not an object"}));
    assert_eq!(
        a.claim()["job"],
        json!({"id": raw, "config_snapshot": "not an object"})
    );
    assert_eq!(fake.job(&raw).unwrap()["worker_id"], "wa");
}

#[test]
fn claim_is_atomic_under_concurrent_workers() {
    let fake = FakeTrellis::start();
    let ids: Vec<String> = (0..40)
        .map(|_| fake.enqueue(json!({"job_type": "PLAN"})))
        .collect();
    let clients: Vec<Client> = (0..4)
        .map(|i| Client::new(&fake, &format!("w{i}")))
        .collect();
    let claimed: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (clients.iter())
            .map(|c| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    while let Some(id) = c.claim()["job"]["id"].as_str() {
                        mine.push(id.to_string());
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = claimed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        ids.len(),
        "every job claimed exactly once: {claimed:?}"
    );
}

#[test]
fn status_updates_are_validated_owned_and_merged() {
    let fake = FakeTrellis::start();
    let (a, b) = (Client::new(&fake, "wa"), Client::new(&fake, "wb"));
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    a.claim();

    assert_eq!(a.status(&job, json!({})), (400, err("status is required")));
    let bad = err("status must be one of: PROCESSING, SUCCESS, FAILED, CANCELLED");
    assert_eq!(a.status(&job, json!({"status": "CLAIMED"})), (400, bad));
    let not_owned = err(&format!("Failed to update status: {NOT_OWNED}"));
    assert_eq!(
        b.status(&job, json!({"status": "PROCESSING"})),
        (500, not_owned.clone())
    );
    assert_eq!(
        a.status("no-such-job", json!({"status": "FAILED"})),
        (500, not_owned)
    );

    let progress =
        json!({"status": "PROCESSING", "execution_metadata": {"phase": "init", "keep": 1}});
    assert_eq!(a.status(&job, progress), (200, json!({"success": true})));
    let failed = json!({"status": "FAILED", "error_message": "boom", "execution_metadata": {"phase": "apply"}});
    assert_eq!(a.status(&job, failed).0, 200);
    assert_eq!(
        a.status(&job, json!({"status": "PROCESSING"})).0,
        200,
        "no state machine"
    );
    let row = fake.job(&job).unwrap();
    assert_eq!(row["status"], "PROCESSING");
    assert_eq!(
        row["error_message"], "boom",
        "error_message cannot be cleared"
    );
    assert_eq!(
        row["execution_metadata"],
        json!({"phase": "apply", "keep": 1})
    );
    let history: Vec<Value> = fake
        .status_history(&job)
        .iter()
        .map(|h| h["status"].clone())
        .collect();
    assert_eq!(
        history,
        [json!("PROCESSING"), json!("FAILED"), json!("PROCESSING")]
    );

    fake.cancel_job(&job);
    let (status, row) = a.call(Method::GET, &format!("/api/jobs/{job}"), Body::None);
    assert_eq!((status, &row["status"]), (200, &json!("CANCELLED")));
    assert_eq!(
        a.call(Method::GET, "/api/jobs/nope", Body::None),
        (404, err("Job not found"))
    );
    fake.reassign_job(&job, "wb");
    assert_eq!(b.status(&job, json!({"status": "SUCCESS"})).0, 200);
    assert_eq!(a.status(&job, json!({"status": "SUCCESS"})).0, 500);
}

#[test]
fn logs_need_a_chunk_a_stream_and_ownership() {
    let fake = FakeTrellis::start();
    let (a, b) = (Client::new(&fake, "wa"), Client::new(&fake, "wb"));
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    a.claim();
    let path = format!("/api/jobs/{job}/logs");
    let log = |c: &Client, body: Value| c.call(Method::POST, &path, Body::Json(body));

    let required = err("log_chunk is required");
    assert_eq!(
        log(&a, json!({"log_chunk": "", "stream_type": "STDOUT"})),
        (400, required.clone())
    );
    assert_eq!(log(&a, json!({"stream_type": "STDOUT"})), (400, required));
    assert_eq!(
        log(&a, json!({"log_chunk": "x", "stream_type": "LOUD"})).0,
        400
    );
    let not_owned = err(&format!("Failed to insert log: {NOT_OWNED}"));
    assert_eq!(
        log(&b, json!({"log_chunk": "x", "stream_type": "STDOUT"})),
        (500, not_owned)
    );
    assert_eq!(
        log(&a, json!({"log_chunk": "one\n", "stream_type": "STDOUT"})),
        (201, json!({"success": true}))
    );
    assert_eq!(
        log(&a, json!({"log_chunk": "two\n", "stream_type": "SYSTEM"})).0,
        201
    );
    assert_eq!(
        fake.logs(&job),
        [
            ("STDOUT".into(), "one\n".into()),
            ("SYSTEM".into(), "two\n".into())
        ]
    );
    assert_eq!(fake.log_text(&job), "one\ntwo\n");
}

#[test]
fn a_log_chunk_holding_nul_is_refused_every_time_and_stores_nothing() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    a.claim();
    let path = format!("/api/jobs/{job}/logs");
    let refused = err("Failed to insert log: invalid byte sequence for encoding \"UTF8\": 0x00");
    for _ in 0..3 {
        let body = json!({"log_chunk": "bad \u{0}byte\n", "stream_type": "STDOUT"});
        assert_eq!(
            a.call(Method::POST, &path, Body::Json(body)),
            (500, refused.clone())
        );
    }
    assert!(fake.logs(&job).is_empty());
}

#[test]
fn the_git_token_goes_to_the_owner_of_the_job_only() {
    let fake = FakeTrellis::start();
    let (a, b) = (Client::new(&fake, "wa"), Client::new(&fake, "wb"));
    let job = fake.enqueue(json!({"job_type": "DEPLOY"}));
    a.claim();
    let path = format!("/api/jobs/{job}/git-token");
    assert_eq!(
        a.call(Method::POST, &path, Body::None),
        (200, json!({"token": null}))
    );
    fake.set_git_token(&job, Some("gho_usertoken"));
    assert_eq!(
        a.call(Method::POST, &path, Body::None),
        (200, json!({"token": "gho_usertoken"}))
    );
    assert_eq!(
        b.call(Method::POST, &path, Body::None),
        (403, err("Worker does not own this job"))
    );
    assert_eq!(
        a.call(Method::POST, "/api/jobs/no-such-job/git-token", Body::None),
        (404, err("Job not found"))
    );
    assert_eq!(
        a.send(Method::POST, &path, false, Body::None).unwrap().0,
        401
    );
}

#[test]
fn every_heartbeat_is_recorded_as_online_with_its_version() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    assert_eq!(fake.worker_row("wa").unwrap()["status"], "OFFLINE");
    for status in ["ONLINE", "DRAINING", "OFFLINE"] {
        let beat = json!({"version": "1.4.0", "status": status, "current_job_id": null});
        assert_eq!(
            a.call(Method::POST, "/api/workers/heartbeat", Body::Json(beat))
                .0,
            200
        );
        assert_eq!(
            fake.worker_row("wa").unwrap(),
            json!({"status": "ONLINE", "version": "1.4.0"})
        );
    }
    let without_version = json!({"status": "OFFLINE", "current_job_id": null});
    a.call(
        Method::POST,
        "/api/workers/heartbeat",
        Body::Json(without_version),
    );
    assert_eq!(
        fake.worker_row("wa").unwrap()["version"],
        "1.4.0",
        "kept when absent"
    );
}

#[test]
fn plan_artifacts_are_limited_and_owned() {
    let fake = FakeTrellis::start();
    let (a, b) = (Client::new(&fake, "wa"), Client::new(&fake, "wb"));
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    a.claim();
    let path = format!("/api/jobs/{job}/plan-artifact");
    let upload = |c: &Client, bytes: Vec<u8>| c.call(Method::POST, &path, Body::Bytes(bytes));

    assert_eq!(
        a.call(Method::GET, &path, Body::None),
        (404, err("Plan artifact not found"))
    );
    assert_eq!(upload(&a, Vec::new()), (400, err("Empty body")));
    let too_large = upload(&a, vec![7; MAX_ARTIFACT_BYTES + 1]);
    assert_eq!(too_large, (413, err("File too large (max 50MB)")));
    assert_eq!(
        a.call(Method::POST, &path, Body::Json(json!({}))).0,
        400,
        "octet-stream only"
    );
    let not_owned = err(&format!("Failed to upload plan artifact: {NOT_OWNED}"));
    assert_eq!(upload(&b, b"plan".to_vec()), (500, not_owned));
    let key = json!({"key": format!("{job}/terraform.plan.out")});
    assert_eq!(upload(&a, b"plan".to_vec()), (201, key));
    assert_eq!(fake.artifact(&job).as_deref(), Some(&b"plan"[..]));

    let url = format!("{}{path}", fake.url());
    let got = b.rt.block_on(async {
        let resp = (b.http.get(url).header("X-Worker-ID", "wb"))
            .header("X-Worker-Token", &b.token)
            .send()
            .await
            .unwrap();
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        (
            resp.status().as_u16(),
            content_type,
            resp.bytes().await.unwrap(),
        )
    });
    assert_eq!(
        got,
        (200, "application/octet-stream".into(), b"plan"[..].into())
    );
}

#[test]
fn worker_metadata_patch_and_delete() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    fake.add_worker("deployed", "t");
    let path = "/api/workers/deployed/metadata";
    assert_eq!(a.call(Method::PATCH, path, Body::Json(json!([1]))).0, 400);
    assert_eq!(
        a.call(
            Method::PATCH,
            path,
            Body::Json(json!({"deploy_config": {"cpu": 1}}))
        )
        .0,
        200
    );
    assert_eq!(
        a.call(Method::PATCH, path, Body::Json(json!({"b": 2}))).0,
        200
    );
    assert_eq!(
        fake.worker_metadata("deployed"),
        Some(json!({"b": 2})),
        "replaced, not merged"
    );
    assert_eq!(
        a.call(Method::DELETE, "/api/workers/deployed", Body::None)
            .0,
        200
    );
    assert!(!fake.worker_exists("deployed"));
}

#[test]
fn register_requires_the_bearer_secret() {
    let fake = FakeTrellis::start();
    let c = Client::new(&fake, "unused");
    let register = |auth: Option<&str>, body: Value| {
        let mut req = c
            .http
            .post(format!("{}/api/tendrils/register", fake.url()))
            .json(&body);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        c.rt.block_on(async {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        })
    };
    let named = json!({"name": "t1", "mode": "self-hosted"});
    assert_eq!(
        register(Some("Bearer s3cret"), named.clone()),
        (401, err("Unauthorized"))
    );
    fake.set_registration_secret("s3cret");
    assert_eq!(register(None, named.clone()), (401, err("Unauthorized")));
    assert_eq!(
        register(Some("Bearer wrong"), named.clone()),
        (401, err("Unauthorized"))
    );
    let missing = register(Some("Bearer s3cret"), json!({"mode": "self-hosted"}));
    assert_eq!(missing, (400, err("Missing required field: name")));

    let (status, got) = register(Some("Bearer s3cret"), named);
    assert_eq!(status, 200);
    let (id, token) = (
        got["tendril_id"].as_str().unwrap(),
        got["tendril_token"].as_str().unwrap(),
    );
    assert!(fake.worker_exists(id));
    let mut new = Client::new(&fake, "other");
    (new.id, new.token) = (id.to_string(), token.to_string());
    assert_eq!(
        new.claim(),
        json!({"job": null}),
        "the new credentials work"
    );
}

#[test]
fn injected_failures_have_no_effect() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    fake.fail_next(2, 503);
    let injected = (503, err("Injected failure"));
    assert_eq!(
        a.call(Method::POST, "/api/jobs/claim", Body::None),
        injected
    );
    assert_eq!(
        a.call(Method::POST, "/api/jobs/claim", Body::None),
        injected
    );
    assert_eq!(
        fake.job(&job).unwrap()["status"],
        "QUEUED",
        "no side effect"
    );
    fake.fail_next_matching("PUT", "/api/jobs/", 1, 500);
    assert_eq!(a.claim()["job"]["id"], job.as_str(), "other requests pass");
    assert_eq!(a.status(&job, json!({"status": "PROCESSING"})).0, 500);
    assert_eq!(a.status(&job, json!({"status": "PROCESSING"})).0, 200);
    assert_eq!(fake.status_history(&job).len(), 1);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200, 500, 200]);
}

#[test]
fn while_the_database_is_down_every_route_answers_its_own_500_and_nothing_changes() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    assert_eq!(a.claim()["job"]["id"], job.as_str());
    fake.database_down("connection to server failed");
    let failed = |what: &str| {
        (
            500,
            err(&format!("Failed to {what}: connection to server failed")),
        )
    };
    assert_eq!(
        a.call(Method::POST, "/api/jobs/claim", Body::None),
        failed("claim job")
    );
    assert_eq!(
        a.call(
            Method::POST,
            "/api/workers/heartbeat",
            Body::Json(json!({"version": "1"}))
        ),
        failed("update heartbeat")
    );
    assert_eq!(
        a.status(&job, json!({"status": "PROCESSING"})),
        failed("update status")
    );
    let chunk = json!({"log_chunk": "x\n", "stream_type": "STDOUT"});
    assert_eq!(
        a.call(
            Method::POST,
            &format!("/api/jobs/{job}/logs"),
            Body::Json(chunk.clone())
        ),
        failed("insert log")
    );
    assert_eq!(
        a.call(Method::GET, &format!("/api/jobs/{job}"), Body::None),
        failed("fetch job")
    );
    assert!(fake.status_history(&job).is_empty() && fake.logs(&job).is_empty());
    assert!(fake.heartbeats("wa").is_empty());
    fake.database_back();
    assert_eq!(a.status(&job, json!({"status": "PROCESSING"})).0, 200);
}

#[test]
fn an_ingress_page_answers_instead_of_trellis_until_cleared() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    fake.ingress_pages(404);
    let (status, body) = a.call(Method::POST, "/api/jobs/claim", Body::None);
    assert_eq!(
        (status, body),
        (404, Value::Null),
        "a page, not Trellis's JSON"
    );
    fake.clear_faults();
    assert_eq!(a.claim()["job"], Value::Null);
}

#[test]
fn dropped_requests_get_no_answer() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    fake.drop_next(1);
    let dropped = a.send(Method::POST, "/api/jobs/claim", true, Body::None);
    assert!(
        dropped.is_err(),
        "the client sees a connection error: {dropped:?}"
    );
    assert_eq!(
        fake.job(&job).unwrap()["status"],
        "QUEUED",
        "no side effect"
    );
    assert_eq!(fake.requests()[0].status, 0);
    assert_eq!(a.claim()["job"]["id"], job.as_str());
}

#[test]
fn delay_applies_after_the_effect() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    let job = fake.enqueue(json!({"job_type": "PLAN"}));
    fake.set_delay(Duration::from_secs(5));
    let url = format!("{}/api/jobs/claim", fake.url());
    let req = (a.http.post(url).header("X-Worker-ID", "wa"))
        .header("X-Worker-Token", &a.token)
        .timeout(Duration::from_millis(300));
    let timed_out = a.rt.block_on(async { req.send().await });
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    fake.wait_until(Duration::from_secs(10), "the claim to land", |f| {
        f.job(&job).is_some_and(|row| row["status"] == "CLAIMED")
    });
}

#[test]
fn outage_refuses_connections_then_serves_on_the_same_port() {
    let fake = FakeTrellis::start();
    let a = Client::new(&fake, "wa");
    let (url, port) = (fake.url(), fake.port());
    assert_eq!(a.claim(), json!({"job": null}));

    fake.go_down();
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let failed = a
        .send(Method::POST, "/api/jobs/claim", true, Body::None)
        .unwrap_err();
    assert!(failed.is_connect(), "{failed:?}");
    fake.come_back();
    assert_eq!(fake.url(), url);
    assert_eq!(a.claim(), json!({"job": null}));

    fake.outage(Duration::from_millis(500));
    assert!(a
        .send(Method::POST, "/api/jobs/claim", true, Body::None)
        .is_err());
    fake.wait_until(Duration::from_secs(10), "the outage to end", |_| {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(a.claim(), json!({"job": null}));
}

#[test]
fn dropping_the_fake_closes_its_port() {
    let fake = FakeTrellis::start();
    let port = fake.port();
    drop(fake);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
