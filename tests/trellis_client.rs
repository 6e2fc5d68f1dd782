//! The Trellis client and the ordered status queue, as a library, against
//! the fake Trellis (a fake: no real Trellis runs here).

use std::sync::Arc;
use std::time::Duration;

use crate::support::fake_trellis::FakeTrellis;
use crate::support::http_fake::HttpFake;
use serde_json::{json, Map, Value};
use tendril::delivery::job_report::deliver_entry;
use tendril::delivery::send::{
    send_chunk, send_progress, send_terminal, DeliveryError, DeliveryPolicy,
};
use tendril::delivery::spool::Spool;
use tendril::delivery::status_queue::StatusQueue;
use tendril::delivery::Outbox;
use tendril::secrets::Secret;
use tendril::settings::{AgentSettings, WorkerMode};
use tendril::trellis::client::{register, MAX_PLAN_ARTIFACT_BYTES};
use tendril::trellis::retry::{retry, RetryPolicy};
use tendril::trellis::{
    JobStatus, LogChunk, StatusUpdate, StreamType, TrellisClient, TrellisError,
};

fn client(trellis: &FakeTrellis, token: &str) -> TrellisClient {
    trellis.add_worker("w-client", "tok-client-test-token");
    client_at(&trellis.url(), token, 32 << 20)
}

/// A client of worker `w-client` for the Trellis at `url`, reading claims
/// and job rows up to `max_job_size` bytes.
fn client_at(url: &str, token: &str, max_job_size: usize) -> TrellisClient {
    TrellisClient::new(&AgentSettings {
        trellis_url: url.to_string(),
        worker_id: "w-client".into(),
        worker_token: Secret::new_registered(token.into()),
        poll_interval: Duration::from_secs(10),
        heartbeat_interval: Duration::from_secs(30),
        drain_grace: Duration::from_secs(60),
        final_delivery_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(5),
        artifact_timeout: Duration::from_secs(60),
        retry_max_delay: Duration::from_millis(200),
        allow_insecure_http: false,
        max_job_size,
        once: false,
        exit_after_idle: None,
        health_addr: None,
    })
    .unwrap()
}

fn quick() -> RetryPolicy {
    RetryPolicy::until_accepted(Duration::from_millis(100))
}

/// A job claimed by the client's worker.
async fn claimed(trellis: &FakeTrellis, client: &TrellisClient) -> String {
    let id = trellis.enqueue(json!({"job_type": "PLAN", "config_snapshot": {}}));
    let claim = client.claim().await.unwrap().unwrap();
    assert_eq!(claim.job["id"], id.as_str());
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_carries_the_worker_headers() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    assert!(
        client.claim().await.unwrap().is_none(),
        "an empty queue is no job"
    );
    let request = trellis.requests().pop().unwrap();
    assert_eq!(request.header("x-worker-id"), Some("w-client"));
    assert_eq!(
        request.header("x-worker-token"),
        Some("tok-client-test-token")
    );
    assert!(request
        .header("user-agent")
        .unwrap()
        .starts_with("tendril/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_unauthorized_and_not_transient() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-wrong-token");
    let error = client.claim().await.unwrap_err();
    assert!(
        matches!(&error, TrellisError::Unauthorized(m) if m == "Invalid worker ID or token"),
        "{error}"
    );
    assert!(!error.is_transient());
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_and_a_job_taken_away_is_not() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let processing = StatusUpdate::processing();
    trellis.fail_next(3, 503);
    retry(quick(), "test", || client.update_status(&job, &processing))
        .await
        .unwrap();
    assert_eq!(trellis.job(&job).unwrap()["status"], "PROCESSING");

    trellis.reassign_job(&job, "w-someone-else");
    let error = retry(quick(), "test", || client.update_status(&job, &processing))
        .await
        .unwrap_err();
    assert!(matches!(error, TrellisError::JobGone(_)), "{error}");
    let attempts = trellis
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 500)
        .count();
    assert_eq!(attempts, 1, "the permanent 500 is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_artifacts_round_trip_and_the_limit_is_checked_before_sending() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let key = client
        .upload_plan_artifact(&job, b"plan bytes".to_vec())
        .await
        .unwrap();
    assert_eq!(key, format!("{job}/terraform.plan.out"));
    assert_eq!(
        client.download_plan_artifact(&job).await.unwrap().unwrap(),
        b"plan bytes"
    );
    assert_eq!(
        client.download_plan_artifact("no-such-job").await.unwrap(),
        None
    );

    let before = trellis.requests().len();
    let error = client
        .upload_plan_artifact(&job, vec![0; MAX_PLAN_ARTIFACT_BYTES + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(error, TrellisError::ArtifactTooLarge(_)),
        "{error}"
    );
    assert_eq!(trellis.requests().len(), before, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_metadata_deletion_and_registration() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    assert_eq!(
        client.get_job(&job).await.unwrap().unwrap()["worker_id"],
        "w-client"
    );
    assert_eq!(client.get_job("missing").await.unwrap(), None);

    trellis.add_worker("w-deployed", "tok-deployed-worker");
    let metadata: Map<String, Value> =
        serde_json::from_value(json!({"deploy_config": {"region": "eu-west-1"}})).unwrap();
    client
        .replace_worker_metadata("w-deployed", &metadata)
        .await
        .unwrap();
    assert_eq!(
        trellis.worker_metadata("w-deployed").unwrap(),
        Value::Object(metadata)
    );
    client.delete_worker("w-deployed").await.unwrap();
    assert!(!trellis.worker_exists("w-deployed"));

    trellis.set_registration_secret("registration-secret-value");
    let registered = register(
        &trellis.url(),
        false,
        "registration-secret-value",
        "pool-1",
        WorkerMode::CloudHosted,
    )
    .await
    .unwrap();
    assert!(trellis.worker_exists(&registered.tendril_id));
    let body = trellis.requests().pop().unwrap().json().unwrap();
    assert_eq!(body, json!({"name": "pool-1", "mode": "cloud-hosted"}));
    let refused = register(
        &trellis.url(),
        false,
        "wrong",
        "pool-2",
        WorkerMode::SelfHosted,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, TrellisError::Unauthorized(_)),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_pending_at_close_lands_in_order_and_none_is_taken_after() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let queue = Arc::new(StatusQueue::default());
    let progress = |step: u32| StatusUpdate {
        status: JobStatus::Processing,
        error_message: None,
        execution_metadata: Some(Map::from_iter([("step".to_string(), json!(step))])),
    };
    trellis.set_delay(Duration::from_millis(300));
    queue.push(progress(1));
    queue.push(progress(2));
    queue.push(progress(3));
    let delivering = {
        let (queue, client, job) = (queue.clone(), client.clone(), job.clone());
        tokio::spawn(async move {
            queue
                .deliver(
                    &client,
                    &job,
                    &DeliveryPolicy::new(Duration::from_millis(100)),
                )
                .await
        })
    };
    // The fake applies an update before its delayed answer: once the first
    // is recorded, it is in flight.
    trellis.wait_until(Duration::from_secs(30), "the first update", |t| {
        t.status_history(&job).len() == 1
    });
    queue.close();
    queue.push(progress(4));
    delivering.await.unwrap().unwrap();
    trellis.set_delay(Duration::ZERO);
    client
        .update_status(&job, &StatusUpdate::success(Map::new()))
        .await
        .unwrap();

    let history = trellis.status_history(&job);
    let steps: Vec<Value> = history
        .iter()
        .map(|u| u["execution_metadata"]["step"].clone())
        .collect();
    assert_eq!(
        steps,
        [json!(1), json!(2), json!(3), Value::Null],
        "the update in flight and the pending ones land in order, before the terminal \
         status; one pushed after the close is not taken: {history:?}"
    );
    assert_eq!(history.last().unwrap()["status"], "SUCCESS");
}

/// A FAKE of a proxy in front of Trellis: it redirects every request to
/// `elsewhere`, or answers a 400 or 404 page of its own.
fn proxy(answer: &'static str, elsewhere: String) -> HttpFake {
    use axum::response::IntoResponse;
    HttpFake::serve(move |_| {
        axum::Router::new().fallback(move || async move {
            match answer {
                "redirect" => (
                    axum::http::StatusCode::FOUND,
                    [(
                        axum::http::header::LOCATION,
                        format!("{elsewhere}/api/jobs/claim"),
                    )],
                )
                    .into_response(),
                "bad-request" => (
                    axum::http::StatusCode::BAD_REQUEST,
                    "<html><body>400 Bad Request (ingress)</body></html>",
                )
                    .into_response(),
                "server-error" => (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "<html><body>500 Internal Server Error (ingress)</body></html>",
                )
                    .into_response(),
                _ => (
                    axum::http::StatusCode::NOT_FOUND,
                    "<html><body>404 Not Found (ingress)</body></html>",
                )
                    .into_response(),
            }
        })
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_is_an_error_naming_its_location_and_the_token_never_follows() {
    let elsewhere = FakeTrellis::start();
    let redirecting = proxy("redirect", elsewhere.url());
    let client = client_at(&redirecting.url(), "tok-client-test-token", 32 << 20);
    let error = client.claim().await.unwrap_err();
    assert!(
        matches!(&error, TrellisError::Redirected { status: 302, location } if location.starts_with(&elsewhere.url())),
        "{error}"
    );
    assert!(!error.is_transient());
    assert!(error.to_string().contains(&elsewhere.url()), "{error}");
    assert!(
        elsewhere.requests().is_empty(),
        "nothing reached the other origin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_trelliss_own_404_says_a_job_is_gone() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    assert!(client.get_job("no-such-job").await.unwrap().is_none());
    let ingress = proxy("not-found", String::new());
    let behind_ingress = client_at(&ingress.url(), "tok-client-test-token", 32 << 20);
    let error = behind_ingress.get_job("any-job").await.unwrap_err();
    assert!(
        error.is_transient(),
        "an ingress page is no answer about the job: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_larger_than_the_limit_is_refused_naming_its_job() {
    let trellis = FakeTrellis::start();
    trellis.add_worker("w-client", "tok-client-test-token");
    let client = client_at(&trellis.url(), "tok-client-test-token", 16 * 1024);
    let big = "x".repeat(64 * 1024);
    let id = trellis.enqueue(json!({"job_type": "PLAN", "config_snapshot": {"blob": big}}));
    let error = client.claim().await.unwrap_err();
    match &error {
        TrellisError::TooLarge { job_id, limit, .. } => {
            assert_eq!(job_id.as_deref(), Some(id.as_str()));
            assert_eq!(*limit, 16 * 1024);
        }
        other => panic!("{other}"),
    }
    assert!(
        error.to_string().contains("TENDRIL_MAX_JOB_SIZE"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_4xx_page_that_is_not_trelliss_own_answer_is_transient() {
    let ingress = proxy("bad-request", String::new());
    let behind_ingress = client_at(&ingress.url(), "tok-client-test-token", 32 << 20);
    let chunk = LogChunk {
        log_chunk: "a line\n".into(),
        stream_type: StreamType::Stdout,
    };
    let error = behind_ingress
        .send_logs("any-job", &chunk)
        .await
        .unwrap_err();
    assert!(
        matches!(error, TrellisError::Unavailable { status: 400, .. }),
        "an ingress's page does not refuse the chunk itself: {error}"
    );
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let empty = LogChunk {
        log_chunk: String::new(),
        stream_type: StreamType::Stdout,
    };
    let error = client.send_logs(&job, &empty).await.unwrap_err();
    assert!(
        matches!(error, TrellisError::Rejected { status: 400, .. }),
        "Trellis's own 400 refuses it: {error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn trelliss_own_500_is_a_refusal_and_a_500_of_something_else_an_outage() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let policy = DeliveryPolicy::new(Duration::from_millis(100));
    let failed = StatusUpdate::failed("boom");
    // The database refuses every status of this job (as it refuses a value
    // outside a check constraint): refused in Trellis's words, and given up
    // after the refusal limit, for the backlog.
    trellis.fail_next_with(
        "PUT",
        &format!("/api/jobs/{job}/status"),
        1_000,
        500,
        "Failed to update status: new row violates check constraint \"provision_jobs_status_check\"",
    );
    let error = client.update_status(&job, &failed).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Trellis refused the status update (HTTP 500): Failed to update status: new row violates check \
         constraint \"provision_jobs_status_check\""
    );
    let error = send_terminal(&client, &job, &failed, &policy)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DeliveryError::Stuck { status: 500, message } if message.contains("check constraint")),
        "{error}"
    );
    // A 500 that is not Trellis's own (an ingress's page) is an outage: it
    // is retried for as long as it lasts, never taken for a refusal.
    let ingress = proxy("server-error", String::new());
    let behind_ingress = client_at(&ingress.url(), "tok-client-test-token", 32 << 20);
    let error = behind_ingress
        .update_status(&job, &failed)
        .await
        .unwrap_err();
    assert!(
        matches!(error, TrellisError::Unavailable { status: 500, .. }) && error.is_transient(),
        "{error}"
    );
    let still_trying = tokio::time::timeout(
        Duration::from_secs(3),
        send_terminal(&behind_ingress, &job, &failed, &policy),
    )
    .await;
    assert!(
        still_trying.is_err(),
        "still retrying long after the refusal limit: {still_trying:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_progress_is_sent_for_a_job_a_user_cancelled() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let policy = DeliveryPolicy::new(Duration::from_millis(100));
    send_progress(&client, &job, &StatusUpdate::processing(), &policy)
        .await
        .unwrap();
    trellis.cancel_job(&job);
    let error = send_progress(&client, &job, &StatusUpdate::processing(), &policy)
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Cancelled), "{error}");
    assert_eq!(
        trellis.job(&job).unwrap()["status"],
        "CANCELLED",
        "a PROCESSING would have reopened the job"
    );
    assert_eq!(trellis.status_history(&job).len(), 1);

    let taken = claimed(&trellis, &client).await;
    trellis.reassign_job(&taken, "w-someone-else");
    let error = send_progress(&client, &taken, &StatusUpdate::processing(), &policy)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DeliveryError::Gone(why) if why.contains("w-someone-else")),
        "{error}"
    );
    assert!(trellis.status_history(&taken).is_empty());
}

/// A delivery policy with a short refusal limit, for a test to reach it.
fn short_refusal_limit() -> DeliveryPolicy {
    DeliveryPolicy {
        retry: RetryPolicy::until_accepted(Duration::from_millis(100)),
        refusal_limit: Duration::from_millis(300),
        gone_check_delay: Duration::from_millis(50),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_sent_while_the_database_is_down_is_stored_once_it_is_back_and_never_replaced() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let policy = short_refusal_limit();
    // Every call gets Trellis's own 500 for ten times the refusal limit:
    // the chunk, the note that would replace it, the read of the job.
    trellis.database_outage(Duration::from_secs(3), "connection to server failed");
    let chunk = LogChunk {
        log_chunk: "a line printed during the outage\n".into(),
        stream_type: StreamType::Stderr,
    };
    send_chunk(&client, &job, chunk, &policy).await.unwrap();
    assert_eq!(
        trellis.log_text(&job),
        "a line printed during the outage\n",
        "the chunk itself, and no note saying it is missing"
    );
    // A chunk Trellis alone refuses, while it stores others, is replaced.
    trellis.refuse_logs_containing("POISON");
    let poison = LogChunk {
        log_chunk: "POISON\n".into(),
        stream_type: StreamType::Stdout,
    };
    send_chunk(&client, &job, poison, &policy).await.unwrap();
    let log = trellis.log_text(&job);
    assert!(
        log.ends_with(
            "[tendril] 7 B of Stdout output could not be stored by Trellis (HTTP 500: Failed to insert log: \
             invalid input syntax (injected refusal)) and are missing here\n"
        ),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_none_of_whose_lines_trellis_stores_keeps_its_log_in_the_outbox_and_delivery_ends() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let policy = short_refusal_limit();
    let work = crate::support::TempDir::new("tendril-refused-log");
    let outbox = Outbox::open(work.path()).unwrap();
    // What a run left: a log line and a SUCCESS, for a job Trellis reads
    // but stores no log line of (not even the note that would stand for it).
    let entry = outbox.create_entry(&job).unwrap();
    let spool = Spool::create(&entry).unwrap();
    spool.push(
        StreamType::Stdout,
        "a line of a job whose log Trellis refuses",
    );
    spool.close();
    entry
        .save_terminal(&StatusUpdate::success(Map::new()))
        .unwrap();
    trellis.refuse_every_log_of(&job);
    let delivered = tokio::time::timeout(
        Duration::from_secs(60),
        deliver_entry(&client, &entry, &policy),
    )
    .await
    .expect("the delivery ends: the worker is free to claim");
    assert!(
        matches!(delivered, Err(DeliveryError::Stuck { status: 500, .. })),
        "{delivered:?}"
    );
    assert_eq!(trellis.log_text(&job), "", "no note stands for the line");
    assert!(
        trellis.status_history(&job).is_empty(),
        "no status before the log"
    );
    assert_eq!(outbox.pending().unwrap().len(), 1, "the entry stays, whole");

    // Once Trellis stores the job's lines again, the line and the status go.
    trellis.clear_faults();
    deliver_entry(&client, &entry, &policy).await.unwrap();
    assert_eq!(
        trellis.log_text(&job),
        "a line of a job whose log Trellis refuses\n"
    );
    assert_eq!(trellis.job(&job).unwrap()["status"], "SUCCESS");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_progress_update_whose_job_cannot_be_read_is_skipped_not_retried_forever() {
    let trellis = FakeTrellis::start();
    trellis.add_worker("w-client", "tok-client-test-token");
    // A job row larger than the worker reads: whether the job was cancelled
    // cannot be told, so the update (which could reopen it) is skipped.
    let client = client_at(&trellis.url(), "tok-client-test-token", 16 * 1024);
    let id = trellis.enqueue(json!({"job_type": "PLAN", "config_snapshot": {}}));
    client.claim().await.unwrap().unwrap();
    trellis.set_job_field(
        &id,
        "execution_metadata",
        json!({"blob": "x".repeat(64 * 1024)}),
    );
    let sent = tokio::time::timeout(
        Duration::from_secs(30),
        send_progress(
            &client,
            &id,
            &StatusUpdate::processing(),
            &short_refusal_limit(),
        ),
    )
    .await
    .expect("it ends");
    assert!(sent.is_ok(), "{sent:?}");
    assert!(trellis.status_history(&id).is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leftover_terminal_status_is_not_sent_again_to_a_job_that_already_shows_one() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let policy = short_refusal_limit();
    let work = crate::support::TempDir::new("tendril-leftover");
    let outbox = Outbox::open(work.path()).unwrap();
    // What a kill right after Trellis took the SUCCESS leaves: the entry.
    let success = StatusUpdate::success(Map::from_iter([(
        "plan_completed".to_string(),
        json!(true),
    )]));
    client.update_status(&job, &success).await.unwrap();
    let entry = outbox.create_entry(&job).unwrap();
    entry.save_terminal(&success).unwrap();
    deliver_entry(&client, &entry, &policy).await.unwrap();
    assert_eq!(
        trellis.status_history(&job).len(),
        1,
        "the SUCCESS was not sent twice"
    );
    assert!(outbox.pending().unwrap().is_empty(), "the entry is gone");
    // A job still PROCESSING gets the status the entry holds.
    let running = claimed(&trellis, &client).await;
    client
        .update_status(&running, &StatusUpdate::processing())
        .await
        .unwrap();
    let entry = outbox.create_entry(&running).unwrap();
    entry.save_terminal(&StatusUpdate::failed("boom")).unwrap();
    deliver_entry(&client, &entry, &policy).await.unwrap();
    assert_eq!(trellis.job(&running).unwrap()["status"], "FAILED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_whose_words_change_at_each_attempt_still_counts_as_stuck() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    // A database in trouble words each failure its own way.
    for attempt in 0..40 {
        let reason =
            format!("Failed to update status: could not serialize access (attempt {attempt})");
        trellis.fail_next_with("PUT", &format!("/api/jobs/{job}/status"), 1, 500, &reason);
    }
    let error = send_terminal(
        &client,
        &job,
        &StatusUpdate::failed("boom"),
        &short_refusal_limit(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, DeliveryError::Stuck { status: 500, .. }),
        "{error}"
    );
    assert!(trellis.status_history(&job).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_that_does_not_parse_is_an_error_that_quotes_no_value() {
    use axum::response::IntoResponse;
    let numeric_token = HttpFake::serve(|_| {
        axum::Router::new().fallback(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"tendril_id": "t-1", "tendril_token": 98765432123}"#,
            )
                .into_response()
        })
    });
    let error = register(
        &numeric_token.url(),
        false,
        "registration-secret",
        "w-new",
        WorkerMode::CloudHosted,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, TrellisError::InvalidResponse(_)), "{error}");
    assert!(!error.to_string().contains("98765432123"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_nested_past_the_parsers_limit_fails_its_job_saying_so_in_words() {
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let id = trellis.enqueue(json!({"job_type": "PLAN", "config_snapshot": {"deep": deep}}));
    match client.claim().await.unwrap_err() {
        TrellisError::UnreadableJob { problem, job_id } => {
            assert_eq!(job_id.as_deref(), Some(id.as_str()));
            assert!(
                problem.contains("it nests arrays and objects more than 128 deep"),
                "{problem}"
            );
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registration_whose_answer_is_lost_is_not_sent_again_and_says_what_to_do() {
    use tendril::delivery::reporter::TrellisReporter;
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    let job = claimed(&trellis, &client).await;
    let work = crate::support::TempDir::new("tendril-registration");
    let reporter = TrellisReporter {
        statuses: Arc::new(StatusQueue::default()),
        client,
        retry_max_delay: Duration::from_millis(100),
        entry: Arc::new(
            Outbox::open(work.path())
                .unwrap()
                .create_entry(&job)
                .unwrap(),
        ),
    };
    trellis.set_registration_secret("registration-secret-value");
    // Trellis registers the worker, but its answer comes after the client's
    // timeout (5s).
    trellis.set_delay(Duration::from_secs(6));
    let error = reporter
        .register_worker("registration-secret-value", "pool-7")
        .await
        .unwrap_err();
    trellis.set_delay(Duration::ZERO);
    let registrations = trellis
        .requests()
        .iter()
        .filter(|r| r.path == "/api/tendrils/register")
        .count();
    assert_eq!(
        registrations, 1,
        "sent once: a second would fail on the name"
    );
    assert!(matches!(error, TrellisError::AnswerLost { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("a worker may have been registered under this name whose token is lost"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn draining_is_sent_before_offline_even_when_the_tools_answer_at_that_moment() {
    use tendril::agent::heartbeat::Heartbeats;
    use tendril::trellis::{Announcement, WorkerStatus};
    let trellis = FakeTrellis::start();
    let client = client(&trellis, "tok-client-test-token");
    // The tools' answer and the two status changes are all ready when the
    // heartbeat task looks: whichever it takes first, DRAINING must go out
    // before OFFLINE. (Each round is a coin toss for a task that reads the
    // latest status instead of the queue.)
    for _ in 0..12 {
        let before = trellis.heartbeats("w-client").len();
        let tools = tokio::spawn(async { std::collections::BTreeMap::new() });
        while !tools.is_finished() {
            tokio::task::yield_now().await;
        }
        let announcement = Announcement {
            hostname: "test-host".into(),
            mode: "self-hosted".into(),
            tools: None,
        };
        let heartbeats = Heartbeats::start(
            client.clone(),
            Duration::from_secs(3600),
            Duration::from_millis(100),
            announcement,
            tools,
        );
        heartbeats.set_status(WorkerStatus::Draining);
        heartbeats.stop().await;
        let sent: Vec<Value> = trellis.heartbeats("w-client")[before..]
            .iter()
            .map(|beat| beat["status"].clone())
            .collect();
        assert!(sent.contains(&json!("DRAINING")), "{sent:?}");
        assert_eq!(sent.last(), Some(&json!("OFFLINE")), "{sent:?}");
    }
}
