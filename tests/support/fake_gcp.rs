//! A fake of Google's STS token exchange, IAM Credentials impersonation, and
//! the Compute and Cloud DNS list APIs (no real GCP is reachable here), and
//! of a subject token URL in the manner of a metadata server. It checks what
//! the real ones check: the grant type, audience, subject token type and
//! value, the scope, the bearer token of each call, the metadata header;
//! lists come in pages behind `nextPageToken`. It counts token exchanges and
//! subject token fetches, so tests can see what Tendril asked for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

use super::http_fake::HttpFake;

pub const FEDERATED_TOKEN: &str = "federated-access-token-abc123";
pub const SERVICE_ACCOUNT_TOKEN: &str = "ya29.impersonated-token-xyz789";
pub const AUDIENCE: &str = "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/vintner/providers/tendril";

#[derive(Clone)]
struct Expected {
    subject: String,
    /// Seconds the tokens it issues last.
    lifetime: u64,
    exchanges: Arc<AtomicUsize>,
    subject_fetches: Arc<AtomicUsize>,
}

pub struct FakeGcp {
    server: HttpFake,
    exchanges: Arc<AtomicUsize>,
    subject_fetches: Arc<AtomicUsize>,
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

async fn exchange(
    State(expected): State<Expected>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let aws = field("subject_token_type") == "urn:ietf:params:aws:token-type:aws4_request";
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
        || field("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
        || !(aws || field("subject_token_type") == "urn:ietf:params:oauth:token-type:jwt")
        || field("scope") != "https://www.googleapis.com/auth/cloud-platform"
    {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request",
            "error_description": "Invalid value for grant_type, requested_token_type, subject_token_type or scope."}),
        );
    }
    if field("audience") != AUDIENCE {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_target",
            "error_description": "The target service indicated by the \"audience\" parameters is invalid."}),
        );
    }
    let subject_ok = if aws {
        aws_request_ok(field("subject_token"))
    } else {
        field("subject_token") == expected.subject
    };
    if !subject_ok {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant",
            "error_description": "The audience in ID Token does not match the expected audience."}),
        );
    }
    expected.exchanges.fetch_add(1, Ordering::SeqCst);
    reply(
        StatusCode::OK,
        json!({"access_token": FEDERATED_TOKEN, "issued_token_type":
        "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer",
        "expires_in": expected.lifetime}),
    )
}

/// A subject token as a metadata server gives one: only with the
/// `Metadata-Flavor: Google` header.
async fn subject_token(State(expected): State<Expected>, headers: HeaderMap) -> Response {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return reply(
            StatusCode::FORBIDDEN,
            json!({"error": "Missing Metadata-Flavor:Google header."}),
        );
    }
    expected.subject_fetches.fetch_add(1, Ordering::SeqCst);
    reply(StatusCode::OK, json!({"id_token": expected.subject}))
}

/// What Google's STS checks of an AWS subject token before it replays it:
/// a URL-encoded, signed STS GetCallerIdentity request bound to the audience.
/// (The signature itself is AWS's to check; no AWS STS is reachable here.)
fn aws_request_ok(token: &str) -> bool {
    let decoded: String = url::form_urlencoded::parse(format!("t={token}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let Ok(request) = serde_json::from_str::<Value>(&decoded) else {
        return false;
    };
    let header = |name: &str| {
        request["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| {
                h["key"]
                    .as_str()
                    .is_some_and(|k| k.eq_ignore_ascii_case(name))
            })
            .and_then(|h| h["value"].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let authorization = header("authorization");
    request["url"]
        == "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
        && request["method"] == "POST"
        && header("host") == "sts.us-east-1.amazonaws.com"
        && header("x-goog-cloud-target-resource") == AUDIENCE
        && !header("x-amz-date").is_empty()
        && authorization.starts_with("AWS4-HMAC-SHA256 Credential=testing/")
        && authorization.contains("/us-east-1/sts/aws4_request")
        && authorization.contains("x-goog-cloud-target-resource")
}

async fn impersonate(
    State(expected): State<Expected>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if bearer(&headers) != Some(FEDERATED_TOKEN) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message":
            "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
        );
    }
    if body["scope"] != json!(["https://www.googleapis.com/auth/cloud-platform"]) {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": 400, "message": "Invalid scope"}}),
        );
    }
    let expires = SystemTime::now() + Duration::from_secs(expected.lifetime);
    reply(
        StatusCode::OK,
        json!({"accessToken": SERVICE_ACCOUNT_TOKEN, "expireTime": super::rfc3339(expires)}),
    )
}

/// The APIs take the service account's token, or a federated token used
/// directly (no impersonation).
fn api_token_ok(headers: &HeaderMap) -> bool {
    matches!(
        bearer(headers),
        Some(SERVICE_ACCOUNT_TOKEN | FEDERATED_TOKEN)
    )
}

async fn compute(
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !api_token_ok(&headers) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message": "Invalid Credentials"}}),
        );
    }
    let link = |kind: &str, name: &str| {
        format!("https://www.googleapis.com/compute/v1/projects/shop-prod/{kind}/{name}")
    };
    let body = match (path.as_str(), query.get("pageToken").map(String::as_str)) {
        ("shop-prod/regions", None) => {
            json!({"items": [{"name": "europe-west1"}], "nextPageToken": "page-2"})
        }
        ("shop-prod/regions", Some("page-2")) => json!({"items": [{"name": "us-central1"}]}),
        ("shop-prod/global/networks", None) => {
            json!({"items": [
                {"name": "default", "autoCreateSubnetworks": true, "selfLink": link("global/networks", "default")},
                {"name": "shop-vpc", "autoCreateSubnetworks": false, "selfLink": link("global/networks", "shop-vpc")}]})
        }
        ("shop-prod/aggregated/subnetworks", None) => json!({"items": {
            "regions/europe-west1": {"subnetworks": [{"name": "shop-eu", "network": link("global/networks", "shop-vpc"),
                "region": link("regions", "europe-west1"), "ipCidrRange": "10.10.0.0/20"}]},
            "regions/us-central1": {"warning": {"code": "NO_RESULTS_ON_PAGE"}}}}),
        _ => {
            return reply(
                StatusCode::NOT_FOUND,
                json!({"error": {"code": 404, "message": "not found"}}),
            )
        }
    };
    reply(StatusCode::OK, body)
}

async fn dns(Path(project): Path<String>, headers: HeaderMap) -> Response {
    if !api_token_ok(&headers) || project != "shop-prod" {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message": "Invalid Credentials"}}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"managedZones": [{"name": "shop", "dnsName": "shop.example.", "visibility": "public"},
                                {"name": "internal", "dnsName": "shop.internal.", "visibility": "private"}]}),
    )
}

/// The path of the fake's subject token URL.
pub const SUBJECT_TOKEN_PATH: &str = "/subject-token";

impl FakeGcp {
    /// A fake that accepts `subject_token` and issues tokens for an hour, as
    /// Google does.
    pub fn start(subject: &str) -> FakeGcp {
        Self::with_token_lifetime(subject, Duration::from_secs(3600))
    }

    /// A fake whose tokens last `lifetime`.
    pub fn with_token_lifetime(subject: &str, lifetime: Duration) -> FakeGcp {
        let expected = Expected {
            subject: subject.into(),
            lifetime: lifetime.as_secs(),
            exchanges: Arc::default(),
            subject_fetches: Arc::default(),
        };
        let (exchanges, subject_fetches) =
            (expected.exchanges.clone(), expected.subject_fetches.clone());
        let server = HttpFake::serve(|_| {
            Router::new()
                .route("/v1/token", post(exchange))
                .route(SUBJECT_TOKEN_PATH, get(subject_token))
                .route(
                    "/v1/projects/-/serviceAccounts/{account}",
                    post(impersonate),
                )
                .route("/compute/v1/projects/{*path}", get(compute))
                .route("/dns/v1/projects/{project}/managedZones", get(dns))
                .with_state(expected)
        });
        FakeGcp {
            server,
            exchanges,
            subject_fetches,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Token exchanges that succeeded.
    pub fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }

    /// Subject tokens fetched from the URL.
    pub fn subject_fetches(&self) -> usize {
        self.subject_fetches.load(Ordering::SeqCst)
    }
}
