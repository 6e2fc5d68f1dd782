//! The objects of the Trellis worker API (see `docs/trellis.md`).
//!
//! Incoming objects ignore unknown fields and accept `null` where a field is
//! optional, so a Trellis that grows a column does not break the worker.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A `provision_jobs` row, as far as Tendril reads it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Job {
    pub id: String,
    pub job_type: JobType,
    #[serde(default, deserialize_with = "null_as_empty_object")]
    pub config_snapshot: Map<String, Value>,
    #[serde(default)]
    pub vineyard_id: Option<String>,
    #[serde(default)]
    pub vine_id: Option<String>,
    #[serde(default)]
    pub cloud_identity_id: Option<String>,
    #[serde(default)]
    pub plan_job_id: Option<String>,
    #[serde(default)]
    pub assigned_worker_id: Option<String>,
    #[serde(default)]
    pub configuration_hash: Option<String>,
    /// The row's status; `None` also for one this Tendril does not know.
    #[serde(default, deserialize_with = "known_status")]
    pub status: Option<JobStatus>,
    #[serde(default)]
    pub worker_id: Option<String>,
}

fn null_as_empty_object<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

fn known_status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JobStatus>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?
        .as_ref()
        .and_then(JobStatus::of))
}

fn null_as_empty_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// A job's `job_type`, read once when the claim is decoded. A type this
/// Tendril does not know still decodes (as [`JobType::Unknown`], with the
/// name Trellis gave): the job is then failed with a message naming the
/// known ones, rather than left claimed. Names are compared exactly: Trellis
/// sends them upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobType {
    Plan,
    Deploy,
    Destroy,
    Bootstrap,
    DeployWorker,
    UpdateWorker,
    DestroyWorker,
    ConnectionTest,
    FetchResources,
    Unknown(String),
}

impl JobType {
    /// The job types this Tendril knows, in the order its messages name them.
    pub const KNOWN: [JobType; 9] = [
        JobType::Plan,
        JobType::Deploy,
        JobType::Destroy,
        JobType::Bootstrap,
        JobType::DeployWorker,
        JobType::UpdateWorker,
        JobType::DestroyWorker,
        JobType::ConnectionTest,
        JobType::FetchResources,
    ];

    /// Reads a `job_type`; `None` for a type this Tendril does not know.
    pub fn parse(text: &str) -> Option<JobType> {
        Self::KNOWN.into_iter().find(|known| known.as_str() == text)
    }

    /// The name on the wire (an unknown type's own name).
    pub fn as_str(&self) -> &str {
        match self {
            JobType::Unknown(name) => name,
            known => known.label(),
        }
    }

    /// The name of a known type, `unknown` for any other: for the metrics'
    /// labels, which take no arbitrary values.
    pub fn label(&self) -> &'static str {
        match self {
            JobType::Plan => "PLAN",
            JobType::Deploy => "DEPLOY",
            JobType::Destroy => "DESTROY",
            JobType::Bootstrap => "BOOTSTRAP",
            JobType::DeployWorker => "DEPLOY_WORKER",
            JobType::UpdateWorker => "UPDATE_WORKER",
            JobType::DestroyWorker => "DESTROY_WORKER",
            JobType::ConnectionTest => "CONNECTION_TEST",
            JobType::FetchResources => "FETCH_RESOURCES",
            JobType::Unknown(_) => "unknown",
        }
    }

    /// Whether the job manages hosted workers (with the platform's own
    /// credentials) rather than a user's cloud.
    pub fn manages_hosted_workers(&self) -> bool {
        matches!(
            self,
            JobType::DeployWorker | JobType::UpdateWorker | JobType::DestroyWorker
        )
    }

    /// "PLAN, DEPLOY, ... and FETCH_RESOURCES": the known types, for messages.
    pub fn known_list() -> String {
        let names: Vec<&str> = Self::KNOWN.iter().map(JobType::as_str).collect();
        match names.split_last() {
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl From<String> for JobType {
    fn from(name: String) -> Self {
        JobType::parse(&name).unwrap_or(JobType::Unknown(name))
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(JobType::from(String::deserialize(d)?))
    }
}

/// A job's cloud provider, read once. Names are compared without regard to
/// case; a provider this Tendril does not know keeps its (lower-case) name,
/// and each step that needs to know it fails the job naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    Other(String),
}

impl Provider {
    /// The provider a name means (`AWS` is aws).
    pub fn named(name: &str) -> Provider {
        match name.to_ascii_lowercase().as_str() {
            "aws" => Provider::Aws,
            "gcp" => Provider::Gcp,
            "azure" => Provider::Azure,
            _ => Provider::Other(name.to_ascii_lowercase()),
        }
    }

    /// The provider's name as the templates' directories and the messages
    /// spell it: aws, gcp, azure.
    pub fn as_str(&self) -> &str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Other(name) => name,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An identity's `provider`: `None` when empty or null (the job's snapshot
/// then names it).
fn optional_provider<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Provider>, D::Error> {
    let name = null_as_empty_string(d)?;
    Ok((!name.is_empty()).then(|| Provider::named(&name)))
}

/// The cloud identity a job runs as; every field is a string, empty when unset.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CloudIdentity {
    #[serde(deserialize_with = "optional_provider")]
    pub provider: Option<Provider>,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub role_arn: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub external_id: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub account_id: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub project_id: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub service_account_email: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub wif_config: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub tenant_id: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub client_id: String,
    #[serde(deserialize_with = "null_as_empty_string")]
    pub subscription_id: String,
}

/// What a claim (or a job file for `tendril exec`) holds before it is
/// checked: the job row and identity as raw JSON, so that a malformed job
/// can still be failed by its id.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Claim {
    #[serde(default)]
    pub job: Value,
    #[serde(default)]
    pub cloud_identity: Value,
}

/// A claimed job, checked.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: Job,
    pub identity: Option<CloudIdentity>,
}

/// Why a claimed job cannot be run at all.
#[derive(Debug)]
pub struct MalformedJob {
    /// The job's id when it has one, so that it can still be failed.
    pub id: Option<String>,
    pub reason: String,
}

impl Claim {
    /// Checks the raw claim: `Ok(None)` when the queue was empty.
    pub fn into_job(self) -> Result<Option<ClaimedJob>, MalformedJob> {
        if self.job.is_null() {
            return Ok(None);
        }
        let id = self.job.get("id").and_then(Value::as_str).map(String::from);
        let malformed = |reason: String| MalformedJob {
            id: id.clone(),
            reason,
        };
        let job: Job =
            decode("job", &self.job).map_err(|e| malformed(format!("malformed job: {e}")))?;
        let identity = match &self.cloud_identity {
            Value::Null => None,
            value => Some(
                decode::<CloudIdentity>("cloud_identity", value)
                    .map_err(|e| malformed(format!("malformed cloud identity: {e}")))?,
            ),
        };
        Ok(Some(ClaimedJob { job, identity }))
    }
}

/// What is wrong with a JSON document, from its parser's error, in words a
/// user can act on and without the values it quotes.
pub(crate) fn json_problem(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.strip_prefix("recursion limit exceeded") {
        Some(at) => format!(
            "it nests arrays and objects more than 128 deep, which Tendril does not read{}",
            at.trim_end()
        ),
        None => without_values(&message),
    }
}

/// A parser's message without the values it quotes (they are user data, a
/// secret among them perhaps): `invalid type: string "...", expected a map`,
/// `invalid type: integer `...``.
pub(crate) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    // The quote that opened the value being skipped, and whether the
    // character before was a backslash (only `"` strings have escapes).
    let (mut open, mut escaped): (Option<char>, bool) = (None, false);
    for c in message.chars() {
        match (c, open) {
            (_, Some('"')) if escaped => escaped = false,
            ('\\', Some('"')) => escaped = true,
            ('"' | '`', None) => {
                open = Some(c);
                out.push(c);
                out.push('…');
            }
            (_, Some(quote)) if c == quote => {
                open = None;
                out.push(c);
            }
            (_, None) => out.push(c),
            (_, Some(_)) => {}
        }
    }
    out
}

/// Decodes the claim's object `name` (`job`, `cloud_identity`) from a JSON
/// object only: serde would also take a struct from an array, by position,
/// and make a job of `["x", "DESTROY"]`. An error names the field by its
/// path (`job.job_type`) and says what kind of value is there and what it
/// must be, never the value itself (a secret's, perhaps).
fn decode<T: serde::de::DeserializeOwned>(name: &str, value: &Value) -> Result<T, String> {
    if !value.is_object() {
        return Err(format!(
            "`{name}` is {}; it must be a JSON object",
            kind_of(value)
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let mut path = name.to_string();
        let mut found = Some(value);
        for segment in error.path().iter() {
            use serde_path_to_error::Segment;
            let (text, inner) = match segment {
                Segment::Map { key } => (format!(".{key}"), found.and_then(|v| v.get(key))),
                Segment::Seq { index } => (format!("[{index}]"), found.and_then(|v| v.get(index))),
                Segment::Enum { variant } => (format!(".{variant}"), found),
                Segment::Unknown => (".?".to_string(), None),
            };
            path.push_str(&text);
            found = inner;
        }
        field_problem(&path, found, &error.inner().to_string())
    })
}

/// What is wrong at `path` (holding `found`), in words, from the decoder's
/// `message`.
fn field_problem(path: &str, found: Option<&Value>, message: &str) -> String {
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        return format!("`{path}.{field}` is missing");
    }
    // serde words it `invalid type: string "<value>", expected <what>`: the
    // last `, expected ` is serde's, an earlier one the value's.
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected.split(" at line ").next().unwrap_or(expected));
    match (found, expected) {
        (Some(found), Some(expected)) => format!(
            "`{path}` is {}; it must be {}",
            kind_of(found),
            in_json_words(expected)
        ),
        _ => format!("`{path}`: {}", without_values(message)),
    }
}

/// A JSON value's kind, as a message names it.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What serde expected, in JSON's words (a map is an object).
fn in_json_words(expected: &str) -> String {
    match expected {
        "a map" => "a JSON object".into(),
        "a sequence" => "an array".into(),
        "a boolean" | "a string" => expected.into(),
        _ if expected.starts_with("struct ") => "a JSON object".into(),
        _ => without_values(expected),
    }
}

/// A job's status. Tendril sends PROCESSING and the terminal ones; QUEUED
/// and CLAIMED are Trellis's own, read in job rows only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    Claimed,
    Processing,
    Success,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// The status a JSON value names; `None` for anything else.
    pub fn of(value: &Value) -> Option<JobStatus> {
        JobStatus::deserialize(value).ok()
    }

    /// A row's `status` (as `GET /jobs/{id}` returns the row).
    pub fn of_row(row: &Value) -> Option<JobStatus> {
        row.get("status").and_then(JobStatus::of)
    }

    /// SUCCESS, FAILED or CANCELLED: the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Success | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// What a job's row in Trellis says of the running worker's hold on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Still this worker's to run and report on.
    Ours,
    /// A user cancelled it.
    Cancelled,
    /// Another worker has it (a requeue and a new claim), named here.
    TakenBy(String),
}

impl Hold {
    /// Reads the hold from a job row, as `GET /jobs/{id}` returns it.
    pub fn of(row: &Value, worker_id: &str) -> Hold {
        if JobStatus::of_row(row) == Some(JobStatus::Cancelled) {
            return Hold::Cancelled;
        }
        match row.get("worker_id").and_then(Value::as_str) {
            Some(owner) if owner != worker_id => Hold::TakenBy(owner.to_string()),
            _ => Hold::Ours,
        }
    }
}

/// The body of `PUT /jobs/{id}/status`; empty fields are omitted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusUpdate {
    pub status: JobStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_metadata: Option<Map<String, Value>>,
}

impl StatusUpdate {
    pub fn processing() -> Self {
        StatusUpdate {
            status: JobStatus::Processing,
            error_message: None,
            execution_metadata: None,
        }
    }

    pub fn success(metadata: Map<String, Value>) -> Self {
        StatusUpdate {
            status: JobStatus::Success,
            error_message: None,
            execution_metadata: (!metadata.is_empty()).then_some(metadata),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        StatusUpdate {
            status: JobStatus::Failed,
            error_message: Some(message.into()),
            execution_metadata: None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamType {
    Stdout,
    Stderr,
    System,
}

/// The body of `POST /jobs/{id}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogChunk {
    pub log_chunk: String,
    pub stream_type: StreamType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerStatus {
    Online,
    Draining,
    Offline,
}

/// The body of `POST /workers/heartbeat`.
#[derive(Debug, Clone, Serialize)]
pub struct Heartbeat {
    pub version: String,
    pub status: WorkerStatus,
    pub current_job_id: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<Announcement>,
}

/// What the first heartbeat adds: who this worker is; and, in the one sent
/// once the tools have answered, what it has (tool name to version).
#[derive(Debug, Clone, Serialize)]
pub struct Announcement {
    pub hostname: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<BTreeMap<String, String>>,
}

/// The answer of `POST /tendrils/register`.
#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    pub tendril_id: String,
    pub tendril_token: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_parsers_message_loses_the_values_it_quotes() {
        assert_eq!(
            without_values(
                r#"invalid type: string "{\"worker_token\": \"s3cr3t\"}", expected a map at line 1"#
            ),
            r#"invalid type: string "…", expected a map at line 1"#
        );
        assert_eq!(
            without_values("invalid type: integer `987654321`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
    }

    #[test]
    fn a_json_document_nested_too_deep_is_said_so_in_words() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let error = serde_json::from_str::<Value>(&deep).unwrap_err();
        assert_eq!(
            json_problem(&error),
            "it nests arrays and objects more than 128 deep, which Tendril does not read at line 1 column 128"
        );
        let error = serde_json::from_str::<Registration>(
            r#"{"tendril_id": "t1", "tendril_token": 12345678}"#,
        )
        .unwrap_err();
        assert!(!json_problem(&error).contains("12345678"), "{error}");
    }

    #[test]
    fn an_empty_claim_is_no_job() {
        let claim: Claim = serde_json::from_value(json!({"job": null})).unwrap();
        assert!(claim.into_job().unwrap().is_none());
    }

    #[test]
    fn a_job_with_unknown_fields_and_nulls_parses() {
        let claim: Claim = serde_json::from_value(json!({
            "job": {"id": "j1", "job_type": "PLAN", "config_snapshot": null,
                    "vine_id": null, "brand_new_column": 7},
            "cloud_identity": {"provider": "aws", "role_arn": "arn", "wif_config": null}
        }))
        .unwrap();
        let claimed = claim.into_job().unwrap().unwrap();
        assert_eq!(claimed.job.id, "j1");
        assert!(claimed.job.config_snapshot.is_empty());
        assert_eq!(claimed.identity.unwrap().provider, Some(Provider::Aws));
    }

    #[test]
    fn a_malformed_job_keeps_its_id() {
        let claim: Claim = serde_json::from_value(json!({
            "job": {"id": "j2", "job_type": "PLAN", "config_snapshot": "not an object"}
        }))
        .unwrap();
        let error = claim.into_job().unwrap_err();
        assert_eq!(error.id.as_deref(), Some("j2"));
        assert!(
            error.reason.starts_with("malformed job"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn a_job_or_identity_that_is_no_object_is_malformed() {
        // Found by tests/properties.rs: serde took a job from an array, by
        // position, so `["x", "DESTROY"]` was a DESTROY of the job "x".
        let claim: Claim = serde_json::from_value(json!({"job": ["x", "DESTROY"]})).unwrap();
        let error = claim.into_job().unwrap_err();
        assert_eq!(error.id, None);
        assert_eq!(
            error.reason,
            "malformed job: `job` is an array; it must be a JSON object"
        );
        let claim: Claim = serde_json::from_value(json!({
            "job": {"id": "j3", "job_type": "PLAN"},
            "cloud_identity": ["aws", "arn:aws:iam::1:role/x"]
        }))
        .unwrap();
        let error = claim.into_job().unwrap_err();
        assert_eq!(error.id.as_deref(), Some("j3"));
        assert_eq!(
            error.reason,
            "malformed cloud identity: `cloud_identity` is an array; it must be a JSON object"
        );
    }

    /// The reason a claim is malformed, given its `job` and `cloud_identity`.
    fn malformed_reason(job: Value, identity: Value) -> String {
        let claim: Claim =
            serde_json::from_value(json!({"job": job, "cloud_identity": identity})).unwrap();
        claim.into_job().unwrap_err().reason
    }

    #[test]
    fn a_decoding_error_names_the_field_and_what_is_there() {
        let reason = |job: Value| malformed_reason(job, Value::Null);
        assert_eq!(
            reason(json!({"id": "j1", "job_type": 7, "config_snapshot": {}})),
            "malformed job: `job.job_type` is a number; it must be a string"
        );
        assert_eq!(
            reason(json!({"id": "j1", "job_type": "PLAN", "config_snapshot": "{\"a\": 1}"})),
            "malformed job: `job.config_snapshot` is a string; it must be a JSON object"
        );
        assert_eq!(
            reason(json!({"id": "j1", "job_type": "PLAN", "config_snapshot": [1, 2]})),
            "malformed job: `job.config_snapshot` is an array; it must be a JSON object"
        );
        // A value holding serde's own words is not mistaken for them.
        let tricky = reason(json!({"id": "j1", "job_type": "PLAN",
                                   "config_snapshot": "tok=SECRETA, expected SECRETB\" and more"}));
        assert_eq!(
            tricky,
            "malformed job: `job.config_snapshot` is a string; it must be a JSON object"
        );
        assert_eq!(
            reason(json!({"id": "j1", "job_type": "PLAN", "plan_job_id": false})),
            "malformed job: `job.plan_job_id` is a boolean; it must be a string"
        );
        assert_eq!(
            reason(json!({"job_type": "PLAN"})),
            "malformed job: `job.id` is missing"
        );
        let job = json!({"id": "j1", "job_type": "PLAN"});
        assert_eq!(
            malformed_reason(job.clone(), json!({"provider": "aws", "role_arn": 5})),
            "malformed cloud identity: `cloud_identity.role_arn` is a number; it must be a string"
        );
        // A secret's value is never quoted, whatever its type.
        for secret in [
            json!(987_654_321),
            json!(["s3cr3t-in-a-list"]),
            json!({"k": "s3cr3t"}),
        ] {
            let reason = malformed_reason(
                job.clone(),
                json!({"provider": "gcp", "wif_config": secret.clone(), "external_id": secret}),
            );
            assert!(
                reason.starts_with("malformed cloud identity: `cloud_identity."),
                "{reason}"
            );
            for leak in ["987", "654", "s3cr3t"] {
                assert!(!reason.contains(leak), "{reason}");
            }
        }
    }

    #[test]
    fn status_updates_omit_empty_fields() {
        let body = serde_json::to_value(StatusUpdate::processing()).unwrap();
        assert_eq!(body, json!({"status": "PROCESSING"}));
        let body = serde_json::to_value(StatusUpdate::success(Map::new())).unwrap();
        assert_eq!(body, json!({"status": "SUCCESS"}));
    }

    #[test]
    fn job_types_round_trip() {
        for job_type in JobType::KNOWN {
            let name = job_type.as_str().to_string();
            assert_eq!(JobType::parse(&name), Some(job_type.clone()));
            assert_eq!(
                serde_json::from_value::<JobType>(json!(name)).unwrap(),
                job_type
            );
        }
        assert_eq!(JobType::parse("MAKE_COFFEE"), None);
        let unknown = serde_json::from_value::<JobType>(json!("MAKE_COFFEE")).unwrap();
        assert_eq!(unknown, JobType::Unknown("MAKE_COFFEE".into()));
        assert_eq!(unknown.as_str(), "MAKE_COFFEE");
        assert_eq!(unknown.label(), "unknown");
        assert_eq!(
            JobType::known_list(),
            "PLAN, DEPLOY, DESTROY, BOOTSTRAP, DEPLOY_WORKER, UPDATE_WORKER, DESTROY_WORKER, \
             CONNECTION_TEST and FETCH_RESOURCES"
        );
    }

    #[test]
    fn providers_are_read_without_regard_to_case_and_empty_is_none() {
        let identity = |provider: Value| {
            serde_json::from_value::<CloudIdentity>(json!({ "provider": provider }))
                .unwrap()
                .provider
        };
        assert_eq!(identity(json!("GCP")), Some(Provider::Gcp));
        assert_eq!(identity(json!("Oci")), Some(Provider::Other("oci".into())));
        assert_eq!(identity(json!("")), None);
        assert_eq!(identity(Value::Null), None);
    }

    #[test]
    fn a_row_status_tendril_does_not_know_is_none() {
        assert_eq!(
            JobStatus::of_row(&json!({"status": "CANCELLED"})),
            Some(JobStatus::Cancelled)
        );
        assert_eq!(JobStatus::of_row(&json!({"status": "ARCHIVED"})), None);
        let job: Job =
            serde_json::from_value(json!({"id": "j", "job_type": "PLAN", "status": "ARCHIVED"}))
                .unwrap();
        assert_eq!(job.status, None);
    }
}
