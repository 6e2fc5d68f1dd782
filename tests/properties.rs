//! Fuzzing on stable Rust: property tests of the parts of Tendril that read
//! what they do not control, a claimed job's JSON, a log spool left on disk
//! by an earlier run, and the text tools print (masking). Each property runs
//! a bounded number of generated cases on every `cargo test` (proptest
//! shrinks a failure to a small case and keeps its seed in
//! `proptest-regressions/`), and every input of `tests/corpus/<target>/`,
//! the ones generators found and the ones written by hand, is replayed each
//! time. The tfvars mapping's properties live beside it (its functions are
//! private), in `src/jobs/tfvars/properties.rs`.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// A property's bounded run: `cases` generated inputs (`PROPTEST_CASES`
/// for a longer hunt), a failure's seed kept in the repository.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// The inputs of `tests/corpus/<target>/`, by file name, sorted.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read a corpus file"))
        })
        .collect()
}

/// Any character: controls and NUL, quotes and backslashes, every width of
/// UTF-8, and the edges of Unicode (proptest leans towards those).
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

mod claim {
    //! A claimed job: `Claim` from any bytes or JSON, then `into_job`.

    use super::*;
    use serde_json::{Map, Value};
    use tendril::trellis::{Claim, JobType};

    /// The fields of a job row Tendril reads, so that generated jobs hit
    /// them (with the wrong types too); the optional ones after the first
    /// three.
    const JOB_FIELDS: &[&str] = &[
        "id",
        "job_type",
        "config_snapshot",
        "vineyard_id",
        "vine_id",
        "cloud_identity_id",
        "plan_job_id",
        "assigned_worker_id",
        "configuration_hash",
        "status",
        "worker_id",
    ];

    /// The identity's fields, as the fake Trellis fills them in a claim.
    const IDENTITY_FIELDS: &[&str] = &crate::support::fake_trellis::IDENTITY_KEYS;

    const JOB_TYPES: &[&str] = &[
        "PLAN",
        "DEPLOY",
        "DESTROY",
        "BOOTSTRAP",
        "DEPLOY_WORKER",
        "UPDATE_WORKER",
        "DESTROY_WORKER",
        "CONNECTION_TEST",
        "FETCH_RESOURCES",
        "plan",
        "MAKE_COFFEE",
        "",
    ];

    /// A string: a known job type, a short word, or anything at all.
    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(JOB_TYPES).prop_map(String::from),
            "[a-z0-9-]{1,12}",
            any_text(16),
        ]
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
                serde_json::Number::from_f64(f).map(Value::Number)
            }),
            string().prop_map(Value::from),
        ]
    }

    /// Any JSON value, its object keys mostly taken from `keys`.
    fn json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            3 => prop::sample::select(keys).prop_map(String::from),
            1 => string(),
        ];
        scalar().prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// A job row: anything, or an object whose fields have any type, with
    /// (mostly) a string id.
    fn job() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => json(JOB_FIELDS),
            3 => (
                proptest::option::of(string()),
                prop::collection::vec((prop::sample::select(JOB_FIELDS), json(JOB_FIELDS)), 0..6),
            )
                .prop_map(|(id, fields)| {
                    let mut job: Map<String, Value> = fields
                        .into_iter()
                        .map(|(key, value)| (key.to_string(), value))
                        .collect();
                    if let Some(id) = id {
                        job.insert("id".into(), Value::from(id));
                    }
                    Value::Object(job)
                }),
        ]
    }

    fn identity() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), json(IDENTITY_FIELDS)]
    }

    /// A job row Tendril must accept: a string id and job type, every
    /// optional field absent, null or a string, unknown fields of any type.
    fn well_formed_job() -> impl Strategy<Value = (Value, String, String)> {
        let optional = prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            string().prop_map(|s| Some(Value::from(s)))
        ];
        (
            string(),
            string(),
            prop::collection::vec(optional, JOB_FIELDS.len() - 3),
            prop_oneof![
                Just(None),
                Just(Some(Value::Null)),
                json(&["region", "project_name"])
                    .prop_filter("an object", Value::is_object)
                    .prop_map(Some)
            ],
            prop::collection::vec((any_text(10), json(JOB_FIELDS)), 0..4),
        )
            .prop_map(|(id, job_type, optional, snapshot, unknown)| {
                let mut job = Map::new();
                for (name, value) in unknown {
                    job.insert(format!("unknown_{name}"), value);
                }
                for (name, value) in JOB_FIELDS[3..].iter().zip(optional) {
                    if let Some(value) = value {
                        job.insert(name.to_string(), value);
                    }
                }
                if let Some(snapshot) = snapshot {
                    job.insert("config_snapshot".into(), snapshot);
                }
                job.insert("id".into(), Value::from(id.clone()));
                job.insert("job_type".into(), Value::from(job_type.clone()));
                (Value::Object(job), id, job_type)
            })
    }

    /// What `into_job` must do with any claim: no job for a null job; else
    /// the job with its id and type, or an error that keeps the id the job
    /// has as a string.
    fn check(claim: Claim) -> Result<(), TestCaseError> {
        let job = claim.job.clone();
        let id = job.get("id").and_then(Value::as_str).map(String::from);
        match claim.into_job() {
            Ok(None) => prop_assert!(job.is_null(), "no job from {job}"),
            Ok(Some(claimed)) => {
                prop_assert_eq!(Some(claimed.job.id), id);
                prop_assert_eq!(
                    Some(claimed.job.job_type.as_str()),
                    job.get("job_type").and_then(Value::as_str)
                );
            }
            Err(malformed) => {
                prop_assert_eq!(malformed.id, id, "the id is kept");
                prop_assert!(
                    malformed.reason.starts_with("malformed job")
                        || malformed.reason.starts_with("malformed cloud identity"),
                    "{}",
                    malformed.reason
                );
            }
        }
        Ok(())
    }

    /// Decodes a claim's bytes as the Trellis client does; a claim that
    /// decodes is checked.
    fn check_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
        match serde_json::from_slice::<Claim>(bytes) {
            Ok(claim) => check(claim),
            Err(_) => Ok(()),
        }
    }

    /// The JSON of a claim, then cut, a byte changed, or a byte put in.
    fn damaged_claim_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            job(),
            identity(),
            any::<prop::sample::Index>(),
            any::<u8>(),
            0..4u8,
        )
            .prop_map(|(job, identity, at, byte, how)| {
                let mut bytes = serde_json::to_vec(
                    &serde_json::json!({"job": job, "cloud_identity": identity}),
                )
                .unwrap();
                let at = at.index(bytes.len() + 1);
                match how {
                    0 => bytes.truncate(at),
                    1 if at < bytes.len() => bytes[at] = byte,
                    2 => bytes.insert(at, byte),
                    _ => {}
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn any_bytes_decode_or_fail_without_a_panic(
            bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..256), damaged_claim_bytes()]
        ) {
            check_bytes(&bytes)?;
        }

        #[test]
        fn any_claim_gives_its_job_or_an_error_that_keeps_its_id(job in job(), identity in identity()) {
            let text = serde_json::to_vec(&serde_json::json!({"job": job, "cloud_identity": identity})).unwrap();
            let decoded: Claim = serde_json::from_slice(&text).expect("any object decodes as a claim");
            check(decoded)?;
            check(Claim { job, cloud_identity: identity })?;
        }

        #[test]
        fn a_job_of_any_type_decodes_and_fails_later_if_unknown(
            (job, id, job_type) in well_formed_job(),
            identity in prop_oneof![Just(Value::Null), json(IDENTITY_FIELDS).prop_filter("an object", Value::is_object)
                .prop_map(|identity| Value::Object(identity.as_object().unwrap().iter()
                    .map(|(k, v)| (k.clone(), if v.is_string() { v.clone() } else { Value::Null })).collect()))],
        ) {
            let claimed = Claim { job, cloud_identity: identity.clone() }
                .into_job()
                .map_err(|e| TestCaseError::fail(format!("refused: {}", e.reason)))?
                .expect("a job");
            prop_assert_eq!(claimed.job.id, id);
            prop_assert_eq!(claimed.job.job_type.as_str(), job_type.as_str());
            prop_assert_eq!(claimed.identity.is_some(), !identity.is_null());
            let known = JobType::parse(&job_type);
            prop_assert_eq!(known.is_some(), JOB_TYPES[..9].contains(&job_type.as_str()));
        }
    }

    #[test]
    fn the_claim_corpus_decodes_or_fails_without_a_panic() {
        for (name, bytes) in corpus("claim") {
            check_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

mod spool {
    //! A log spool: `chunks.jsonl` of any bytes recovered as delivery
    //! recovers one an earlier run left (`live = false`), and the chunks
    //! that any pushes and closes make.

    use super::*;
    use crate::support::TempDir;
    use std::fs;
    use std::path::PathBuf;
    use tendril::delivery::spool::{ChunkReader, Record, Spool};
    use tendril::delivery::{Outbox, OutboxEntry};
    use tendril::logs::{MAX_CHUNK_BYTES, MAX_LINE_BYTES};
    use tendril::trellis::{LogChunk, StreamType};

    /// A job's outbox entry in a scratch work dir.
    struct Scratch {
        _root: TempDir,
        entry: OutboxEntry,
    }

    impl Scratch {
        fn new() -> Scratch {
            let root = TempDir::new("tendril-properties-spool");
            let entry = Outbox::open(root.path())
                .unwrap()
                .create_entry("job-1")
                .unwrap();
            Scratch { _root: root, entry }
        }

        fn chunks(&self) -> PathBuf {
            self.entry.dir().join("chunks.jsonl")
        }

        fn offset(&self) -> PathBuf {
            self.entry.dir().join("chunks.offset")
        }

        /// The committed offset, 0 when there is none.
        fn committed(&self) -> u64 {
            fs::read_to_string(self.offset())
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0)
        }
    }

    fn stream() -> impl Strategy<Value = StreamType> {
        prop_oneof![
            Just(StreamType::Stdout),
            Just(StreamType::Stderr),
            Just(StreamType::System)
        ]
    }

    /// A chunk as the spool writes one: whole lines of any characters.
    fn chunk() -> impl Strategy<Value = LogChunk> {
        (stream(), prop::collection::vec(any_text(24), 1..4)).prop_map(|(stream_type, lines)| {
            let lines: Vec<String> = lines.into_iter().map(|l| l.replace('\n', " ")).collect();
            LogChunk {
                log_chunk: lines.iter().map(|l| format!("{l}\n")).collect(),
                stream_type,
            }
        })
    }

    fn record_bytes(chunk: &LogChunk) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(chunk).unwrap();
        bytes.push(b'\n');
        bytes
    }

    /// Lines that are no log chunk.
    const WRONG_RECORDS: &[&[u8]] = &[
        b"{\"log_chunk\":\"x\\n\",\"stream_type\":\"BOGUS\"}\n",
        b"{\"log_chunk\":7,\"stream_type\":\"STDOUT\"}\n",
        b"{}\n",
        b"null\n",
        b"[\"x\\n\",\"STDOUT\"]\n",
        b"\r\n",
        b"\0\n",
    ];

    /// Spool-like bytes: whole and cut records, lone newlines, records of
    /// the wrong shape and plain noise, in any order.
    fn spool_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            3 => chunk().prop_map(|c| record_bytes(&c)),
            2 => (chunk(), any::<prop::sample::Index>()).prop_map(|(c, at)| {
                let bytes = record_bytes(&c);
                bytes[..at.index(bytes.len())].to_vec()
            }),
            1 => (1..4usize).prop_map(|n| vec![b'\n'; n]),
            1 => prop::sample::select(WRONG_RECORDS).prop_map(<[u8]>::to_vec),
            2 => prop::collection::vec(any::<u8>(), 0..24),
        ];
        prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
    }

    /// What recovery must return for `bytes` read from `start`: a record
    /// for every whole line, in order, with the offset after it (a lone
    /// newline, a failed write's fresh start, is none).
    fn expected_records(bytes: &[u8], start: usize) -> Vec<(Record, u64)> {
        let mut records = Vec::new();
        let mut at = start;
        for line in bytes[start.min(bytes.len())..].split_inclusive(|b| *b == b'\n') {
            if !line.ends_with(b"\n") {
                break;
            }
            at += line.len();
            if line == b"\n" {
                continue;
            }
            let record = match serde_json::from_slice::<LogChunk>(line) {
                Ok(chunk) => Record::Chunk(chunk),
                Err(_) => Record::Damaged(line.len()),
            };
            records.push((record, at as u64));
        }
        records
    }

    /// Where the whole lines from `start` end: a partial last record is cut there.
    fn whole_end(bytes: &[u8], start: usize) -> usize {
        if start >= bytes.len() {
            return bytes.len();
        }
        start
            + bytes[start..]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
    }

    /// Reads a spool left by an earlier run to the end, committing each
    /// record; fails if an offset does not move forward or reading does
    /// not end.
    fn recover(
        entry: &OutboxEntry,
        from: u64,
        most: usize,
    ) -> Result<Vec<(Record, u64)>, TestCaseError> {
        let Some(mut reader) = ChunkReader::open(entry, false).unwrap() else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        let mut last = from;
        while let Some((record, next)) = reader.next_record().unwrap() {
            prop_assert!(next > last, "offset {next} after {last}");
            last = next;
            reader.commit(next).unwrap();
            records.push((record, next));
            prop_assert!(records.len() <= most, "recovery does not end");
        }
        Ok(records)
    }

    /// Recovers `bytes` written as the spool, delivery having committed
    /// `offset` (as text: it may be anything), and checks what recovery
    /// must do: every whole line in order, the partial last record cut,
    /// everything committed, and a spool that goes on cleanly after.
    fn check_recovery(
        bytes: &[u8],
        offset: Option<&str>,
    ) -> Result<Vec<(Record, u64)>, TestCaseError> {
        let scratch = Scratch::new();
        fs::write(scratch.chunks(), bytes).unwrap();
        if let Some(offset) = offset {
            fs::write(scratch.offset(), offset).unwrap();
        }
        let start = scratch.committed() as usize;
        let records = recover(&scratch.entry, start as u64, bytes.len() + 1)?;
        prop_assert_eq!(&records, &expected_records(bytes, start));

        let end = whole_end(bytes, start);
        let left = fs::read(scratch.chunks()).unwrap();
        prop_assert_eq!(left.len(), end, "cut after the last whole record");
        prop_assert!(left == bytes[..end], "what is left is what was there");
        if start > bytes.len() {
            return Ok(records);
        }
        prop_assert_eq!(
            scratch.committed() as usize,
            end.max(start),
            "all committed"
        );
        prop_assert!(
            recover(&scratch.entry, end as u64, 1)?.is_empty(),
            "nothing twice"
        );

        let spool = Spool::create(&scratch.entry).unwrap();
        spool.push(StreamType::Stderr, "after recovery");
        spool.close();
        let next = recover(&scratch.entry, end as u64, 1)?;
        let after = LogChunk {
            log_chunk: "after recovery\n".into(),
            stream_type: StreamType::Stderr,
        };
        prop_assert_eq!(next.len(), 1);
        prop_assert_eq!(&next[0].0, &Record::Chunk(after));
        Ok(records)
    }

    /// How a spool's bytes are damaged: bytes from `at` on replaced (a
    /// crash's cut when nothing comes in their place and all are gone).
    #[derive(Debug, Clone)]
    struct Damage {
        at: prop::sample::Index,
        removed: usize,
        inserted: Vec<u8>,
    }

    fn damage() -> impl Strategy<Value = Damage> {
        prop_oneof![
            any::<prop::sample::Index>().prop_map(|at| Damage {
                at,
                removed: usize::MAX,
                inserted: Vec::new()
            }),
            (
                any::<prop::sample::Index>(),
                0..40usize,
                prop::collection::vec(any::<u8>(), 0..12)
            )
                .prop_map(|(at, removed, inserted)| Damage {
                    at,
                    removed,
                    inserted
                }),
        ]
    }

    proptest! {
        // Each case makes an outbox entry and syncs a spool: slow disks.
        #![proptest_config(config(64))]

        #[test]
        fn any_bytes_are_recovered_line_by_line(bytes in spool_bytes()) {
            check_recovery(&bytes, None)?;
        }

        #[test]
        fn recovery_starts_at_any_committed_offset(
            bytes in spool_bytes(),
            at in any::<prop::sample::Index>(),
            noise in prop_oneof![Just(None), any_text(6).prop_map(Some)],
        ) {
            let offset = noise.unwrap_or_else(|| at.index(bytes.len() + 1).to_string());
            check_recovery(&bytes, Some(&offset))?;
        }

        #[test]
        fn good_records_before_and_after_damage_are_all_returned_in_order(
            chunks in prop::collection::vec(chunk(), 0..8),
            damage in damage(),
        ) {
            let records: Vec<Vec<u8>> = chunks.iter().map(record_bytes).collect();
            let mut bytes = records.concat();
            let from = damage.at.index(bytes.len() + 1);
            let to = from.saturating_add(damage.removed).min(bytes.len());
            bytes.splice(from..to, damage.inserted.iter().copied());
            let shift = damage.inserted.len() as i64 - (to - from) as i64;

            let returned: Vec<(Record, u64)> = check_recovery(&bytes, None)?;
            let (mut before, mut after) = (Vec::new(), Vec::new());
            let mut end = 0;
            for (chunk, record) in chunks.iter().zip(&records) {
                let start = end;
                end += record.len();
                if end <= from {
                    before.push((Record::Chunk(chunk.clone()), end as u64));
                } else if start > to {
                    after.push((Record::Chunk(chunk.clone()), (end as i64 + shift) as u64));
                }
            }
            prop_assert!(returned.starts_with(&before), "before the damage: {:?}", before);
            prop_assert!(returned.ends_with(&after), "after the damage: {:?}", after);
        }
    }

    /// A line of at most `MAX_LINE_BYTES`: short, at the limit, or any
    /// length, of a repeated piece of any characters but a newline.
    fn line() -> impl Strategy<Value = String> {
        let length = prop_oneof![
            4 => 0..80usize,
            1 => (MAX_LINE_BYTES - 8)..=MAX_LINE_BYTES,
            1 => 0..=MAX_LINE_BYTES,
        ];
        (length, any_text(6)).prop_map(|(length, piece)| {
            let piece = piece.replace('\n', "");
            let piece = if piece.is_empty() {
                "x".to_string()
            } else {
                piece
            };
            let mut line = piece.repeat(length / piece.len() + 1);
            let mut cut = length;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line
        })
    }

    #[derive(Debug, Clone)]
    enum Step {
        Push(StreamType, String),
        Close,
        /// Tendril starts again on the entry (after a close: an unsealed
        /// chunk is lost with its process, by design).
        Restart,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            8 => (stream(), line()).prop_map(|(stream, line)| Step::Push(stream, line)),
            1 => Just(Step::Close),
            1 => Just(Step::Restart),
        ];
        prop::collection::vec(step, 0..24)
    }

    proptest! {
        #![proptest_config(config(24))]

        #[test]
        fn the_chunks_of_any_pushes_hold_the_lines_pushed(steps in steps()) {
            let scratch = Scratch::new();
            let mut spool = Spool::create(&scratch.entry).unwrap();
            let mut pushed = Vec::new();
            for step in &steps {
                match step {
                    Step::Push(stream, line) => {
                        spool.push(*stream, line);
                        pushed.push((*stream, line.as_str()));
                    }
                    Step::Close => spool.close(),
                    Step::Restart => {
                        spool.close();
                        spool = Spool::create(&scratch.entry).unwrap();
                    }
                }
            }
            spool.close();
            let records = recover(&scratch.entry, 0, pushed.len())?;
            let mut read = Vec::new();
            for (record, _) in &records {
                let Record::Chunk(chunk) = record else {
                    return Err(TestCaseError::fail(format!("a damaged record: {record:?}")));
                };
                prop_assert!(chunk.log_chunk.len() <= MAX_CHUNK_BYTES, "a chunk of {}", chunk.log_chunk.len());
                prop_assert!(chunk.log_chunk.ends_with('\n'));
                let text = &chunk.log_chunk[..chunk.log_chunk.len() - 1];
                read.extend(text.split('\n').map(|line| (chunk.stream_type, line)));
            }
            prop_assert!(read == pushed, "{} lines read, {} pushed", read.len(), pushed.len());
        }
    }

    #[test]
    fn the_spool_corpus_is_recovered_line_by_line() {
        for (name, bytes) in corpus("spool") {
            check_recovery(&bytes, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

mod masking {
    //! Masking: any secrets registered, any text holding them anywhere,
    //! whole (`mask`) and cut into any pieces (`LineMasker`).
    //!
    //! The register is the process's: other tests here register their own
    //! secrets at the same time. Secrets are drawn from one set of
    //! characters, and text that must come through unchanged from another
    //! that no registered value (nor its base64, URL or JSON form, all
    //! ASCII) can hold, so no test's secrets touch another's assertions.

    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::Deserialize;
    use tendril::secrets::{self, LineMasker, SecretGuard, MASK};

    /// A character a secret may hold: printable ASCII (but for `*` when
    /// `star` is false), and two-, three- and four-byte UTF-8.
    ///
    /// A value that holds `*` can be made anew by the mask's own stars and
    /// the text beside them (`*abc` in `x*abcabc` gives `x***abc`): none of
    /// the secret's characters are shown, but the value is in the output,
    /// so the property that no value is left is checked without `*`, and
    /// the one that each occurrence becomes the mask with it.
    fn secret_char(star: bool) -> impl Strategy<Value = char> {
        prop_oneof![
            6 => (0x20u8..0x7f)
                .prop_filter("a star", move |c| star || *c != b'*')
                .prop_map(char::from),
            1 => prop::char::range('À', 'ÿ'),
            1 => prop::char::range('α', 'ω'),
            1 => prop::char::range('一', '龥'),
            1 => prop::char::range('😀', '🙏'),
        ]
    }

    /// A character no registered value holds: controls and NUL (no
    /// newline: masking is per line), Cyrillic, combining marks, Hangul and
    /// other emoji.
    fn clean_char() -> impl Strategy<Value = char> {
        prop_oneof![
            prop::char::range('\0', '\t'),
            prop::char::range('\u{b}', '\u{1f}'),
            Just('\u{7f}'),
            prop::char::range('А', 'я'),
            prop::char::range('\u{300}', '\u{36f}'),
            prop::char::range('가', '힣'),
            prop::char::range('🌀', '🗿'),
        ]
    }

    fn secret(star: bool) -> impl Strategy<Value = String> {
        prop::collection::vec(secret_char(star), 4..24)
            .prop_map(|chars| String::from_iter(chars).trim().to_string())
            .prop_filter("masked values are 4 bytes or more", |s| s.len() >= 4)
    }

    fn clean_text(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(clean_char(), 0..max).prop_map(String::from_iter)
    }

    /// How a secret appears in text: as itself or in base64 (a Kubernetes
    /// secret's data).
    fn form(secret: &str, base64: bool) -> String {
        if base64 {
            STANDARD.encode(secret)
        } else {
            secret.to_string()
        }
    }

    /// A piece of text: a registered secret (by index, in a form), text
    /// that cannot hold one, or text of the secrets' own characters.
    #[derive(Debug, Clone)]
    enum Piece {
        Secret(prop::sample::Index, bool),
        Clean(String),
        Near(String),
    }

    fn pieces(near: bool) -> impl Strategy<Value = Vec<Piece>> {
        let near_weight = if near { 2 } else { 0 };
        let piece = prop_oneof![
            3 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, b)| Piece::Secret(i, b)),
            2 => clean_text(8).prop_map(Piece::Clean),
            near_weight => prop::collection::vec(secret_char(false), 0..8).prop_map(|c| Piece::Near(String::from_iter(c))),
        ];
        prop::collection::vec(piece, 0..12)
    }

    /// A text cut at the character boundaries at or before the byte
    /// offsets `at`.
    fn cut(text: &str, at: impl IntoIterator<Item = usize>) -> Vec<String> {
        let mut cuts: Vec<usize> = at
            .into_iter()
            .map(|at| {
                let mut at = at.min(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                at
            })
            .collect();
        cuts.sort();
        cuts.push(text.len());
        let mut from = 0;
        cuts.into_iter()
            .map(|to| {
                let piece = text[from..to].to_string();
                from = to;
                piece
            })
            .collect()
    }

    /// The line as a LineMasker writes it, fed in `pieces`.
    fn masked_in_pieces(pieces: &[String]) -> String {
        let mut masker = LineMasker::default();
        let last = pieces.len() - 1;
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| masker.feed(piece, i == last))
            .collect()
    }

    fn register(values: &[String]) -> Vec<SecretGuard> {
        values
            .iter()
            .map(|value| secrets::register(value))
            .collect()
    }

    /// Fails if `out` holds any of `values`, as itself or in base64.
    fn holds_none(out: &str, values: &[String]) -> Result<(), TestCaseError> {
        for value in values {
            for base64 in [false, true] {
                let form = form(value, base64);
                prop_assert!(!out.contains(&form), "{form:?} is in {out:?}");
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn no_registered_secret_survives_masking(
            values in prop::collection::vec(secret(false), 1..4),
            pieces in pieces(true),
            at in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let _guards = register(&values);
            let text: String = pieces.iter().map(|piece| match piece {
                Piece::Secret(i, base64) => form(i.get::<String>(&values), *base64),
                Piece::Clean(text) | Piece::Near(text) => text.clone(),
            }).collect();
            holds_none(&secrets::mask(&text), &values)?;
            holds_none(&masked_in_pieces(&cut(&text, at.iter().map(|i| i.index(text.len() + 1)))), &values)?;
        }

        #[test]
        fn each_secret_between_clean_text_becomes_the_mask(
            values in prop::collection::vec(secret(true), 1..4),
            pieces in pieces(false),
            at in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let _guards = register(&values);
            let (mut text, mut expected) = (String::new(), String::new());
            for piece in &pieces {
                match piece {
                    Piece::Secret(i, base64) => {
                        // Clean text on both sides, so that no two secrets touch.
                        text.push('я');
                        expected.push('я');
                        text.push_str(&form(i.get::<String>(&values), *base64));
                        expected.push_str(MASK);
                    }
                    Piece::Clean(clean) | Piece::Near(clean) => {
                        text.push_str(clean);
                        expected.push_str(clean);
                    }
                }
            }
            prop_assert_eq!(&secrets::mask(&text), &expected);
            prop_assert_eq!(&masked_in_pieces(&cut(&text, at.iter().map(|i| i.index(text.len() + 1)))), &expected);
        }

        #[test]
        fn text_without_secrets_comes_through_unchanged(
            values in prop::collection::vec(secret(true), 1..4),
            text in clean_text(64),
            at in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let _guards = register(&values);
            prop_assert!(matches!(secrets::mask(&text), std::borrow::Cow::Borrowed(_)));
            prop_assert_eq!(&masked_in_pieces(&cut(&text, at.iter().map(|i| i.index(text.len() + 1)))), &text);
        }
    }

    /// A corpus case: secrets, a text, where it is cut, and (for some) the
    /// exact masked text.
    #[derive(Deserialize)]
    struct Case {
        secrets: Vec<String>,
        text: String,
        #[serde(default)]
        cuts: Vec<usize>,
        #[serde(default)]
        masked: Option<String>,
    }

    #[test]
    fn the_masking_corpus_leaves_no_secret() {
        for (name, bytes) in corpus("masking") {
            let case: Case =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let _guards = register(&case.secrets);
            let whole = secrets::mask(&case.text);
            let in_pieces = masked_in_pieces(&cut(&case.text, case.cuts.iter().copied()));
            for out in [whole.as_ref(), in_pieces.as_str()] {
                holds_none(out, &case.secrets).unwrap_or_else(|e| panic!("{name}: {e}"));
                if let Some(masked) = &case.masked {
                    assert_eq!(out, masked, "{name}");
                }
            }
        }
    }
}
